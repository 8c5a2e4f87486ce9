//! Safe extraction of tar entries: no absolute paths, no `..`, no links that leave the
//! target, no devices or FIFOs; every refusal names the entry.

use std::io::{self, Read};
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
    stats: ExtractStats,
}

impl Extractor {
    /// An extractor writing below `root` (an existing, empty directory).
    pub fn into_dir(root: &Path) -> Self {
        Self {
            root: Some(root.to_path_buf()),
            dirs: Vec::new(),
            stats: ExtractStats::default(),
        }
    }

    /// An extractor that writes nothing and checks every entry (for `verify`).
    pub fn check_only() -> Self {
        Self {
            root: None,
            dirs: Vec::new(),
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
        if let Some(root) = &self.root {
            no_link_on_the_way(root, &rel, &name)?;
        }
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        let mtime = FileTime::from_unix_time(
            i64::try_from(entry.header().mtime().unwrap_or(0)).unwrap_or(0),
            0,
        );
        self.stats.entries += 1;
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.stats.bytes += entry.size();
                match &self.root {
                    Some(root) => {
                        entry.set_preserve_mtime(true);
                        entry.set_preserve_permissions(false);
                        let unpacked = entry
                            .unpack_in(root)
                            .map_err(|e| tar_error(e, Some(&name)))?;
                        if !unpacked {
                            return Err(unsafe_entry(&name, "its path leaves the target"));
                        }
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
                    no_link_on_the_way(root, &target, &name)?;
                    let path = root.join(&rel);
                    make_parent(&path)?;
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
        use std::os::unix::fs::PermissionsExt as _;
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
/// this, as the source is walked without following links.
fn no_link_on_the_way(root: &Path, rel: &Path, name: &str) -> Result<()> {
    let mut path = root.to_path_buf();
    for part in rel.components() {
        path.push(part);
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
fn tar_error(e: io::Error, entry: Option<&str>) -> Error {
    if let Some(ours) = crate::error::find_in_io(&e) {
        return ours;
    }
    let at = entry
        .map(|n| format!(" at entry {n:?}"))
        .unwrap_or_default();
    if matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::PermissionDenied
    ) {
        // tar's error says which file into which folder; the OS's reason is its source.
        let mut cause: &dyn std::error::Error = &e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        let reason = cause.to_string();
        let reason = reason
            .find(" (os error")
            .map_or(reason.as_str(), |i| &reason[..i]);
        let hint = if e.kind() == io::ErrorKind::StorageFull {
            "free space where the target is, or restore elsewhere with --target; the target was left as it was"
        } else {
            "check the owner and mode of the target, and the user the agent runs as"
        };
        let outer = e.to_string();
        let text = if outer.contains(reason) {
            outer
        } else {
            format!("{outer}: {reason}")
        };
        return Error::new(
            ErrorKind::Io,
            format!("cannot write the restore{at}: {text}"),
        )
        .with_hint(hint);
    }
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
