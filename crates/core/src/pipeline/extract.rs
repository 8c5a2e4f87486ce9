//! Safe extraction of tar entries: no absolute paths, no `..`, no entry written through a
//! symlink, no hard link out of the target, no devices or FIFOs; every refusal names the
//! entry.
//!
//! # Symlinks
//!
//! Symlinks are made last, once every other entry is on disk, so that while files and
//! folders are written no symlink exists below the root: nothing can be written through
//! one. An entry whose path passes through (or ends on) a symlink of the archive is
//! refused, whenever that link came; so is a link whose path was already extracted, and a
//! hard link to or through a symlink (it would be a copy of the link elsewhere).
//!
//! A symlink's target is only text, and is made as the archive says, as tar does: absolute,
//! leaving the root, through other links or to nothing. Nothing follows it while the
//! restore runs: the links are the last thing made, folders get their modes by paths that
//! pass through none, and the staging folder is swapped into place without entering them.
//!
//! # Speed
//!
//! Regular files are written here rather than by tar's `unpack_in`, which canonicalizes
//! the target and the entry's folder for every file: a `readlink` per component, most of
//! the system calls of a restore of many small files. With no symlink on disk, a path
//! checked lexically (relative, no `..`) and one lookup per component in the set of the
//! archive's links are enough; a file is created with `O_CREAT | O_EXCL`, which never
//! follows a symlink, and the folder of the last file is not made again.
//!
//! # Limits
//!
//! Extension entries (long names, PAX headers) over 64 KiB and GNU sparse entries are
//! refused before the tar crate reads them ([`headers`]), and with a limit from the
//! manifest, regular files may not hold more bytes in total than the manifest records.
//! Folders are recorded once per distinct path, at most [`MAX_DIRS`] of them.
//!
//! Folders are created with mode 0700 and get their own mode (and time) at the end,
//! deepest first; a folder made only because an entry lies below it keeps 0700.

mod headers;
mod links;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

use filetime::FileTime;

pub(crate) use headers::HeaderLimit;
pub use headers::MAX_EXTENSION_LEN;

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

/// The longest entry path restored: the kernel's `PATH_MAX`.
const MAX_PATH_LEN: usize = 4096;

/// Extracts entries below a root directory, or only checks them when there is none.
pub struct Extractor {
    root: Option<PathBuf>,
    /// Directories get their mode and time last, deepest first, once their content exists.
    dirs: Dirs,
    /// The folder, relative to the root, of the last file written: it exists.
    ready_parent: Option<PathBuf>,
    /// The symlinks, made last.
    links: links::Links,
    /// The most bytes of regular file content accepted, if known (from the manifest).
    max_bytes: Option<u64>,
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
            dirs: Dirs::default(),
            ready_parent: None,
            links: links::Links::default(),
            max_bytes: None,
            buffer: vec![0; COPY_BUFFER],
            stats: ExtractStats::default(),
        }
    }

    /// An extractor that writes nothing and checks every entry (for `verify`).
    pub fn check_only() -> Self {
        Self {
            root: None,
            dirs: Dirs::default(),
            ready_parent: None,
            links: links::Links::default(),
            max_bytes: None,
            buffer: Vec::new(),
            stats: ExtractStats::default(),
        }
    }

    /// Refuses the archive once its regular files hold more than `max_bytes` in total
    /// (the manifest's `plain_bytes`), before writing the file that would pass it.
    #[must_use]
    pub fn with_byte_limit(mut self, max_bytes: Option<u64>) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Extracts or checks every entry of the tar stream `tar`.
    pub fn run<R: Read>(mut self, tar: R) -> Result<ExtractStats> {
        let mut archive = tar::Archive::new(HeaderLimit::new(tar));
        let entries = archive
            .entries()
            .map_err(|e| from_io(e, "read the tar stream"))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| tar_error(&e, None))?;
            self.entry(&mut entry)?;
        }
        self.links.finish(self.root.as_deref())?;
        self.finish_dirs()?;
        Ok(self.stats)
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path().map_err(|e| tar_error(&e, None))?.into_owned();
        let name = raw.display().to_string();
        let rel = checked_path(&raw)?;
        let kind = entry.header().entry_type();
        self.stats.entries += 1;
        if rel.as_os_str().is_empty() {
            // `./`, as `tar -C dir .` writes first: the target itself. Its mode and time
            // are not applied: the target's belong to whoever made it, not to the archive.
            if kind == tar::EntryType::Directory {
                return Ok(());
            }
            return Err(unsafe_entry(
                &name,
                "it names the target folder itself, and is not a folder",
            ));
        }
        if let Some(via) = self.links.on_the_way(&rel) {
            let why = if via == rel {
                "it would replace a symlink extracted before it".to_string()
            } else {
                format!("its path passes through the symlink {}", via.display())
            };
            return Err(unsafe_entry(&name, &why));
        }
        let regular = matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous);
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        let mtime = FileTime::from_unix_time(
            i64::try_from(entry.header().mtime().unwrap_or(0)).unwrap_or(0),
            0,
        );
        match kind {
            _ if regular => {
                let size = entry.size();
                if let Some(limit) = self.max_bytes
                    && self.stats.bytes.saturating_add(size) > limit
                {
                    return Err(Error::corrupt(format!(
                        "the archive is corrupt: its files hold more than the {limit} bytes its manifest records (entry {name:?} of {size} bytes goes beyond); refusing it"
                    )));
                }
                self.stats.bytes += size;
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
                        io::copy(entry, &mut io::sink()).map_err(|e| tar_error(&e, Some(&name)))?;
                    }
                }
            }
            tar::EntryType::Directory => {
                if let Some(root) = &self.root {
                    let path = root.join(&rel);
                    make_dir(&path)?;
                    self.dirs.record(&rel, mode, mtime, &name)?;
                }
            }
            tar::EntryType::Symlink => {
                let target = link_target(entry, &name)?;
                self.links
                    .add(self.root.as_deref(), rel, target, mtime, &name)?;
            }
            tar::EntryType::Link => {
                let target = link_target(entry, &name)?;
                let outside = || {
                    unsafe_entry(
                        &name,
                        &format!(
                            "it is a hard link to {} outside the target",
                            target.display()
                        ),
                    )
                };
                let target = checked_path(&target).map_err(|_| outside())?;
                if target.as_os_str().is_empty() {
                    return Err(outside());
                }
                if let Some(via) = self.links.on_the_way(&target) {
                    return Err(unsafe_entry(
                        &name,
                        &format!(
                            "it is a hard link to {}, which is or passes through the symlink {}",
                            target.display(),
                            via.display()
                        ),
                    ));
                }
                if let Some(root) = &self.root {
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
        let Some(root) = &self.root else {
            return Ok(());
        };
        self.dirs.finish(root)
    }
}

/// The most distinct folders a restore records for their mode and time. Each costs about
/// 100 bytes here (at most about 400 MiB) and an inode on disk, which the archive has to
/// make first: only a real tree of that many folders reaches it, far more than any backup
/// of a service holds. Repeated entries of a folder cost nothing.
pub(crate) const MAX_DIRS: usize = 4 << 20;

/// The folder entries of an archive, one record per distinct path (the last entry of a
/// path wins, as on disk), kept as a tree: a folder costs its own name, not its whole path,
/// however deep it lies.
#[derive(Default)]
struct Dirs {
    /// Every folder at or above a folder entry, parents before their children.
    nodes: Vec<DirNode>,
    /// The index in `nodes` of each folder, by (index of its parent, hashed with its name).
    /// Keys are random per run, so no archive can make two folders collide on purpose.
    index: std::collections::HashMap<u64, u32>,
    keys: std::hash::RandomState,
}

/// One folder in [`Dirs`].
struct DirNode {
    /// The index of its parent in `nodes`; `u32::MAX` for a folder at the root.
    parent: u32,
    name: Box<std::ffi::OsStr>,
    /// The mode and time of its last entry; none for a folder made only because an entry
    /// lies below it.
    meta: Option<(u32, FileTime)>,
}

impl Dirs {
    /// Records the folder entry `name` at `rel` (not empty) with its mode and time.
    fn record(&mut self, rel: &Path, mode: u32, mtime: FileTime, name: &str) -> Result<()> {
        use std::hash::BuildHasher as _;
        let mut parent = u32::MAX;
        for part in rel.components() {
            let part = part.as_os_str();
            let key = self.keys.hash_one((parent, part));
            parent = if let Some(i) = self.index.get(&key) {
                *i
            } else {
                if self.nodes.len() >= MAX_DIRS {
                    return Err(unsafe_entry(
                        name,
                        &format!(
                            "the archive holds more than {MAX_DIRS} folders, more than a restore keeps track of"
                        ),
                    ));
                }
                let i = u32::try_from(self.nodes.len()).expect("below MAX_DIRS");
                self.nodes.push(DirNode {
                    parent,
                    name: part.into(),
                    meta: None,
                });
                self.index.insert(key, i);
                i
            };
        }
        self.nodes[parent as usize].meta = Some((mode, mtime));
        Ok(())
    }

    /// Sets the mode and time of every folder recorded, children before their parents
    /// (setting a child's changes no parent's time).
    fn finish(&mut self, root: &Path) -> Result<()> {
        let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
        for node in self.nodes.iter().rev() {
            let Some((mode, mtime)) = node.meta else {
                continue;
            };
            parts.clear();
            parts.push(&node.name);
            let mut up = node.parent;
            while up != u32::MAX {
                let above = &self.nodes[up as usize];
                parts.push(&above.name);
                up = above.parent;
            }
            let mut path = root.to_path_buf();
            path.extend(parts.iter().rev());
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o777 | 0o700))
                .map_err(|e| Error::io("set the mode of", &path, e))?;
            filetime::set_file_mtime(&path, mtime)
                .map_err(|e| Error::io("set the time of", &path, e))?;
        }
        self.nodes = Vec::new();
        self.index = std::collections::HashMap::new();
        Ok(())
    }
}

/// The relative path of an entry, refusing absolute paths, `..`, and paths too long for
/// the kernel; empty for `.` and `./` (the root itself).
fn checked_path(raw: &Path) -> Result<PathBuf> {
    let name = raw.display().to_string();
    if raw.as_os_str().is_empty() {
        return Err(unsafe_entry(&name, "its path is empty"));
    }
    if raw.as_os_str().len() > MAX_PATH_LEN {
        return Err(unsafe_entry(
            &name,
            &format!("its path is longer than {MAX_PATH_LEN} bytes"),
        ));
    }
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
    Ok(out)
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>, name: &str) -> Result<PathBuf> {
    entry
        .link_name()
        .map_err(|e| tar_error(&e, Some(name)))?
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
            Err(e) => return Err(tar_error(&e, Some(name))),
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

/// Makes the folder of `path` and the folders above it, as [`make_dir`] does.
fn make_parent(path: &Path) -> Result<()> {
    make_dir(path.parent().expect("below the root"))
}

/// Makes the folder `path` and the folders above it that are missing, with mode 0700:
/// nobody else may enter them before their own mode is set, at the end.
fn make_dir(path: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io("create", path, e))
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
fn tar_error(e: &io::Error, entry: Option<&str>) -> Error {
    if let Some(ours) = crate::error::find_in_io(e) {
        return ours;
    }
    let at = entry
        .map(|n| format!(" at entry {n:?}"))
        .unwrap_or_default();
    Error::corrupt(format!("the tar stream is damaged{at}: {e}"))
}
