//! Safe extraction of tar entries: no absolute paths, no `..`, no links that leave the
//! target, no devices or FIFOs; every refusal names the entry.
//!
//! Regular files are written here rather than by tar's `unpack_in`, which canonicalizes
//! the target and the entry's folder for every file: a `readlink` per component, most of
//! the system calls of a restore of many small files. The checks above make that
//! unneeded: the path is lexical and relative, every folder on the way is checked not to be
//! a symlink (once per folder while entries stay in it, again after any link is made), and
//! a file is created with `O_CREAT | O_EXCL`, which never follows a symlink.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

use filetime::FileTime;

use crate::error::{Error, ErrorKind, Result};
use crate::format::from_io;

/// What an extraction counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractStats {
    /// Entries extracted or checked.
    pub entries: u64,
    /// Bytes of regular file content.
    pub bytes: u64,
}

/// Extracts entries below a root directory, or only checks them when there is none.
pub struct Extractor {
    root: Option<PathBuf>,
    /// Directories get their mode and time last, deepest first, once their content exists.
    dirs: Vec<(PathBuf, u32, FileTime)>,
    /// The folder, relative to the root, of the last file written: it exists and no
    /// symlink is on its way, until a link is made.
    ready_parent: Option<PathBuf>,
    /// File content passes through here, [`COPY_BUFFER`] bytes at a time.
    buffer: Vec<u8>,
    stats: ExtractStats,
}

/// Bytes of file content read from the archive and written at a time.
const COPY_BUFFER: usize = 256 * 1024;

impl Extractor {
    /// An extractor writing below `root` (an existing, empty directory).
    pub fn into_dir(root: &Path) -> Self {
        Self {
            root: Some(root.to_path_buf()),
            dirs: Vec::new(),
            ready_parent: None,
            buffer: vec![0; COPY_BUFFER],
            stats: ExtractStats::default(),
        }
    }

    /// An extractor that writes nothing and checks every entry (for `verify`).
    pub fn check_only() -> Self {
        Self {
            root: None,
            dirs: Vec::new(),
            ready_parent: None,
            buffer: Vec::new(),
            stats: ExtractStats::default(),
        }
    }

    /// Extracts or checks every entry of `archive`.
    pub fn run<R: Read>(mut self, archive: &mut tar::Archive<R>) -> Result<ExtractStats> {
        let entries = archive
            .entries()
            .map_err(|e| from_io(e, "read the tar stream"))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| tar_error(e, None))?;
            self.entry(&mut entry)?;
        }
        self.finish_dirs()?;
        Ok(self.stats)
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path().map_err(|e| tar_error(e, None))?.into_owned();
        let name = raw.display().to_string();
        let rel = checked_path(&raw)?;
        let kind = entry.header().entry_type();
        let regular = matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous);
        if let Some(root) = &self.root {
            // In the folder of the last file, only the entry itself is left to check, and
            // not even that for a file: `create_file` never follows a link.
            let parent = rel.parent().unwrap_or(Path::new(""));
            let depth = rel.components().count();
            let checked = if self.ready_parent.as_deref() != Some(parent) {
                0
            } else if regular {
                depth
            } else {
                depth - 1
            };
            no_link_on_the_way(root, &rel, checked, &name)?;
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        let mtime = FileTime::from_unix_time(
            i64::try_from(entry.header().mtime().unwrap_or(0)).unwrap_or(0),
            0,
        );
        self.stats.entries += 1;
        match kind {
            _ if regular => {
                self.stats.bytes += entry.size();
                match &self.root {
                    Some(root) => {
                        let path = root.join(&rel);
                        let parent = rel.parent().unwrap_or(Path::new(""));
                        if self.ready_parent.as_deref() != Some(parent) {
                            make_parent(&path)?;
                            self.ready_parent = Some(parent.to_path_buf());
                        }
                        write_file(&mut self.buffer, &path, &name, entry, mode, mtime)?;
                    }
                    None => {
                        io::copy(entry, &mut io::sink()).map_err(|e| tar_error(e, Some(&name)))?;
                    }
                }
            }
            tar::EntryType::Directory => {
                if let Some(root) = &self.root {
                    let path = root.join(&rel);
                    std::fs::create_dir_all(&path).map_err(|e| Error::io("create", &path, e))?;
                    self.dirs.push((path, mode, mtime));
                }
            }
            tar::EntryType::Symlink => {
                let target = link_target(entry, &name)?;
                if !link_stays_inside(&rel, &target) {
                    return Err(unsafe_entry(
                        &name,
                        &format!("it is a symlink to {} outside the target", target.display()),
                    ));
                }
                if let Some(root) = &self.root {
                    let path = root.join(&rel);
                    make_parent(&path)?;
                    self.ready_parent = None;
                    std::os::unix::fs::symlink(&target, &path)
                        .map_err(|e| Error::io("create symlink", &path, e))?;
                    let _ = filetime::set_symlink_file_times(&path, mtime, mtime);
                }
            }
            tar::EntryType::Link => {
                let target = link_target(entry, &name)?;
                let target = checked_path(&target).map_err(|_| {
                    unsafe_entry(
                        &name,
                        &format!(
                            "it is a hard link to {} outside the target",
                            target.display()
                        ),
                    )
                })?;
                if let Some(root) = &self.root {
                    no_link_on_the_way(root, &target, 0, &name)?;
                    let path = root.join(&rel);
                    make_parent(&path)?;
                    // A hard link to a symlink is a symlink.
                    self.ready_parent = None;
                    std::fs::hard_link(root.join(&target), &path)
                        .map_err(|e| Error::io("create hard link", &path, e))?;
                }
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {
                self.stats.entries -= 1;
            }
            other => {
                return Err(unsafe_entry(
                    &name,
                    &format!("entries of type {other:?} (devices, FIFOs) are not restored"),
                ));
            }
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<()> {
        self.dirs.sort_by(|a, b| b.0.cmp(&a.0));
        for (path, mode, mtime) in self.dirs.drain(..) {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o777 | 0o700))
                .map_err(|e| Error::io("set the mode of", &path, e))?;
            filetime::set_file_mtime(&path, mtime)
                .map_err(|e| Error::io("set the time of", &path, e))?;
        }
        Ok(())
    }
}

/// The relative path of an entry, refusing absolute paths and `..`.
fn checked_path(raw: &Path) -> Result<PathBuf> {
    let name = raw.display().to_string();
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_entry(&name, "its path contains `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry(&name, "its path is absolute"));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(unsafe_entry(&name, "its path is empty"));
    }
    Ok(out)
}

/// Refuses an entry whose path passes through (or ends on) a symlink already extracted:
/// following it could lead outside the root. Archives written by service-backup never do
/// this, as the source is walked without following links. The first `checked` components
/// are known to be folders already.
fn no_link_on_the_way(root: &Path, rel: &Path, checked: usize, name: &str) -> Result<()> {
    let mut path = root.to_path_buf();
    for (i, part) in rel.components().enumerate() {
        path.push(part);
        if i < checked {
            continue;
        }
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let via = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                return Err(unsafe_entry(
                    name,
                    &format!("its path passes through the symlink {via}"),
                ));
            }
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// Whether a symlink at `rel` pointing to `target` resolves inside the root, lexically.
fn link_stays_inside(rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = i64::try_from(rel.components().count()).unwrap_or(i64::MAX) - 1;
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>, name: &str) -> Result<PathBuf> {
    entry
        .link_name()
        .map_err(|e| tar_error(e, Some(name)))?
        .map(std::borrow::Cow::into_owned)
        .ok_or_else(|| Error::corrupt(format!("link entry {name} has no target")))
}

/// Writes the content of `entry` into a new file at `path` through `buffer`, then sets its
/// mode (without set-id bits) and its modification time.
fn write_file<R: Read>(
    buffer: &mut [u8],
    path: &Path,
    name: &str,
    entry: &mut tar::Entry<'_, R>,
    mode: u32,
    mtime: FileTime,
) -> Result<()> {
    let mut file = create_file(path, name)?;
    let expected = entry.size();
    let mut written = 0u64;
    loop {
        let n = match entry.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(tar_error(e, Some(name))),
        };
        file.write_all(&buffer[..n])
            .map_err(|e| write_failure(e, path))?;
        written += n as u64;
    }
    if written != expected {
        return Err(Error::corrupt(format!(
            "the tar stream ends inside entry {name:?} ({written} of {expected} bytes)"
        )));
    }
    file.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))
        .map_err(|e| Error::io("set the mode of", path, e))?;
    filetime::set_file_handle_times(&file, Some(mtime), Some(mtime))
        .map_err(|e| Error::io("set the time of", path, e))?;
    Ok(())
}

/// A new file at `path`, writable by its owner only until its mode is set: never through a
/// symlink (`O_EXCL`), replacing a regular file of an earlier entry of the same path as tar
/// does, refusing to replace anything else.
fn create_file(path: &Path, name: &str) -> Result<File> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    };
    match open() {
        Ok(file) => Ok(file),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io("read", path, e))?;
            if !meta.file_type().is_file() {
                return Err(unsafe_entry(
                    name,
                    "it would replace a folder or link extracted before it",
                ));
            }
            std::fs::remove_file(path).map_err(|e| Error::io("replace", path, e))?;
            open().map_err(|e| write_failure(e, path))
        }
        Err(e) => Err(write_failure(e, path)),
    }
}

/// A failure to create or write a restored file: the OS's reason, the path, and for a
/// full disk what to do about it.
fn write_failure(e: io::Error, path: &Path) -> Error {
    let full = e.kind() == io::ErrorKind::StorageFull;
    let err = Error::io("write the restore into", path, e);
    if full {
        err.with_hint(
            "free space where the target is, or restore elsewhere with --target; the target was left as it was",
        )
    } else {
        err
    }
}

fn make_parent(path: &Path) -> Result<()> {
    let parent = path.parent().expect("below the root");
    std::fs::create_dir_all(parent).map_err(|e| Error::io("create", parent, e))
}

fn unsafe_entry(name: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::UnsafeEntry,
        format!("refusing archive entry {name:?}: {why}"),
    )
    .with_hint("the archive was not made by service-backup or was altered; nothing was restored")
}

/// A tar-level failure: one of ours from below (decryption, hash) or a damaged tar stream.
/// Failures to write the restore are [`write_failure`]s.
fn tar_error(e: io::Error, entry: Option<&str>) -> Error {
    if let Some(ours) = crate::error::find_in_io(&e) {
        return ours;
    }
    let at = entry
        .map(|n| format!(" at entry {n:?}"))
        .unwrap_or_default();
    Error::corrupt(format!("the tar stream is damaged{at}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_dotdot_or_root_are_refused() {
        assert!(checked_path(Path::new("a/b")).is_ok());
        assert!(checked_path(Path::new("./a")).is_ok());
        for bad in ["../x", "a/../../x", "/etc/passwd", "", "."] {
            let err = checked_path(Path::new(bad)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::UnsafeEntry, "{bad}");
        }
    }

    #[test]
    fn entries_through_an_extracted_symlink_are_refused() {
        // a -> .   a/b -> ..   b/c -> ..   then b/c/escaped: lexically inside, really outside.
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut link = |name: &str, to: &str| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            builder.append_link(&mut h, name, to).unwrap();
        };
        link("a", ".");
        link("a/b", "..");
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_size(0);
        dir.set_mode(0o755);
        builder
            .append_data(&mut dir, "b/c/escaped", &[][..])
            .unwrap();
        let bytes = builder.into_inner().unwrap();
        let err = Extractor::into_dir(&root)
            .run(&mut tar::Archive::new(&bytes[..]))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnsafeEntry, "{err}");
        assert!(
            err.to_string().contains("passes through the symlink"),
            "{err}"
        );
        assert!(!tmp.path().join("escaped").exists());
        assert!(!tmp.path().join("c").exists());
    }

    /// A tar of `entries`: (path, Some(content)) for a file of mode 0o4755 and mtime
    /// 1,000,000,000, (path, None) for a symlink to "target" beside it.
    fn archive(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(1_000_000_000);
            match content {
                Some(bytes) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o4755);
                    h.set_size(bytes.len() as u64);
                    builder.append_data(&mut h, path, *bytes).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    builder.append_link(&mut h, path, "target").unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    fn extract(entries: &[(&str, Option<&[u8]>)]) -> (tempfile::TempDir, PathBuf, Result<()>) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let bytes = archive(entries);
        let done = Extractor::into_dir(&root)
            .run(&mut tar::Archive::new(&bytes[..]))
            .map(|_| ());
        (tmp, root, done)
    }

    #[test]
    fn files_get_their_content_mode_without_set_id_bits_and_time() {
        use std::os::unix::fs::MetadataExt as _;
        let big: Vec<u8> = (0..3 * COPY_BUFFER + 17).map(|i| (i % 251) as u8).collect();
        let (_tmp, root, done) = extract(&[
            ("a/b/one", Some(b"one")),
            ("a/b/two", Some(&big[..])),
            ("a/c/three", Some(b"")),
            ("top", Some(b"top")),
        ]);
        done.unwrap();
        assert_eq!(std::fs::read(root.join("a/b/one")).unwrap(), b"one");
        assert_eq!(std::fs::read(root.join("a/b/two")).unwrap(), big);
        assert_eq!(std::fs::read(root.join("a/c/three")).unwrap(), b"");
        assert_eq!(std::fs::read(root.join("top")).unwrap(), b"top");
        let meta = std::fs::metadata(root.join("a/b/two")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o755);
        assert_eq!(meta.mtime(), 1_000_000_000);
    }

    #[test]
    fn a_file_entry_twice_keeps_the_last_one() {
        let (_tmp, root, done) = extract(&[("d/f", Some(b"first")), ("d/f", Some(b"second"))]);
        done.unwrap();
        assert_eq!(std::fs::read(root.join("d/f")).unwrap(), b"second");

        // A file entry where a folder was made is refused, and the folder kept.
        let (_tmp, root, done) = extract(&[("d/sub/keep", Some(b"k")), ("d/sub", Some(b"f"))]);
        let err = done.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnsafeEntry, "{err}");
        assert!(err.to_string().contains("would replace a folder"), "{err}");
        assert_eq!(std::fs::read(root.join("d/sub/keep")).unwrap(), b"k");
    }

    #[test]
    fn a_file_entry_never_writes_through_a_symlink() {
        // "d/link" -> "target", then a file "d/link": it must not land in "d/target".
        let (_tmp, root, done) = extract(&[
            ("d/first", Some(b"x")),
            ("d/link", None),
            ("d/link", Some(b"through the link")),
        ]);
        let err = done.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnsafeEntry, "{err}");
        assert!(!root.join("d/target").exists());
    }

    #[test]
    fn a_file_under_a_symlink_made_in_its_folder_is_refused() {
        // Files in "d" first (the folder is then known), then "d/s" -> "target" and "d/s/f".
        let (_tmp, root, done) = extract(&[
            ("d/target/keep", Some(b"k")),
            ("d/a", Some(b"a")),
            ("d/s", None),
            ("d/s/f", Some(b"through the link")),
        ]);
        let err = done.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnsafeEntry, "{err}");
        assert!(
            err.to_string().contains("passes through the symlink"),
            "{err}"
        );
        assert!(!root.join("d/target/f").exists());
    }

    #[test]
    fn symlinks_may_not_leave_the_root() {
        let ok = [
            ("a", "b"),
            ("d/a", "../b"),
            ("d/e/a", "../../b"),
            ("a", "./x/../y"),
        ];
        for (at, to) in ok {
            assert!(
                link_stays_inside(Path::new(at), Path::new(to)),
                "{at} -> {to}"
            );
        }
        let bad = [
            ("a", "../b"),
            ("d/a", "../../b"),
            ("a", "/etc"),
            ("a", "x/../../y"),
        ];
        for (at, to) in bad {
            assert!(
                !link_stays_inside(Path::new(at), Path::new(to)),
                "{at} -> {to}"
            );
        }
    }
}
