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

/// Where an extraction stands: everything before a point of the tar stream is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mark {
    /// Offset in the tar stream of the first byte not yet restored: an entry's first
    /// header, or a byte of a file's content.
    pub tar_offset: u64,
    /// The entries written whole before it.
    pub stats: ExtractStats,
    /// The file whose content it falls in, if it does.
    pub in_file: Option<InFile>,
}

/// A file partly written at a [`Mark`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InFile {
    /// Offset in the tar stream of its content.
    pub data_start: u64,
    /// Bytes of its content written.
    pub written: u64,
}

/// What receives the marks of an extraction, every so many bytes of the tar stream.
struct Marks {
    every: u64,
    last: u64,
    sink: Box<dyn FnMut(Mark) -> Result<()> + Send>,
}

impl Marks {
    /// Hands on a mark at `tar_offset` if it is far enough from the last one.
    fn reached(
        &mut self,
        tar_offset: u64,
        stats: ExtractStats,
        in_file: Option<InFile>,
    ) -> Result<()> {
        if tar_offset < self.last + self.every {
            return Ok(());
        }
        self.last = tar_offset;
        (self.sink)(Mark {
            tar_offset,
            stats,
            in_file,
        })
    }
}

/// A file a stopped extraction left partly written, to be finished first.
struct Unfinished {
    file: File,
    path: PathBuf,
    name: String,
    size: u64,
    mode: u32,
    mtime: FileTime,
    data_start: u64,
    written: u64,
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
    /// Offset in the whole tar stream of the first byte this extraction reads.
    base: u64,
    marks: Option<Marks>,
    /// A file to finish before the first entry.
    unfinished: Option<Unfinished>,
    /// The path errors show for the root, when it is reached through another one.
    shown: Option<PathBuf>,
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
            base: 0,
            marks: None,
            unfinished: None,
            shown: None,
        }
    }

    /// An extractor writing into the staging folder of a restore, through the path the
    /// restore holds it by, its errors naming the staging folder's own path.
    pub fn into_staging(staging: &super::staging::Staging) -> Self {
        let mut extractor = Self::into_dir(staging.extract_dir());
        if staging.extract_dir() != staging.dir() {
            extractor.shown = Some(staging.dir().to_path_buf());
        }
        extractor
    }

    /// Its errors with the root written as the path its user knows.
    fn shows(&self) -> impl Fn(Error) -> Error + use<> {
        let paths = self.root.clone().zip(self.shown.clone());
        move |e| match &paths {
            Some((root, shown)) => e.with_path_shown(root, shown),
            None => e,
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
            base: 0,
            marks: None,
            unfinished: None,
            shown: None,
        }
    }

    /// Refuses the archive once its regular files hold more than `max_bytes` in total
    /// (the manifest's `plain_bytes`), before writing the file that would pass it.
    #[must_use]
    pub fn with_byte_limit(mut self, max_bytes: Option<u64>) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Hands `sink` a [`Mark`] after each entry that ends at least `every` bytes of the
    /// tar stream after the last mark, once the entry is written: a restore stopped after
    /// it can go on from there ([`Self::resumed`]).
    #[must_use]
    pub fn with_marks(
        mut self,
        every: u64,
        sink: impl FnMut(Mark) -> Result<()> + Send + 'static,
    ) -> Self {
        self.marks = Some(Marks {
            every,
            last: self.base,
            sink: Box::new(sink),
        });
        self
    }

    /// Goes on with an extraction into the same root that stopped at `mark`: the tar stream
    /// this one reads starts at `mark.tar_offset`, the counts go on from the mark's, and
    /// `before`, the entries before the mark (from the archive's index), give back what is
    /// done only at the end: folders' modes and times, and symlinks (any a stopped end made
    /// already are made again). A mark inside a file's content needs that file's entry,
    /// `partial`: its content is cut back to the mark and finished first. Refuses to go on
    /// when a file before the mark is not in the root with its size (the machine stopped
    /// before it reached the disk).
    pub fn resumed(
        self,
        mark: Mark,
        before: impl Iterator<Item = Result<crate::format::index::IndexEntry>>,
        partial: Option<crate::format::index::IndexEntry>,
    ) -> Result<Self> {
        let shows = self.shows();
        self.resumed_shown(mark, before, partial).map_err(shows)
    }

    fn resumed_shown(
        mut self,
        mark: Mark,
        before: impl Iterator<Item = Result<crate::format::index::IndexEntry>>,
        partial: Option<crate::format::index::IndexEntry>,
    ) -> Result<Self> {
        use crate::format::index::EntryKind;
        self.base = mark.tar_offset;
        self.stats = mark.stats;
        if let Some(marks) = &mut self.marks {
            marks.last = mark.tar_offset;
        }
        let Some(root) = self.root.clone() else {
            return Err(Error::new(
                ErrorKind::Usage,
                "only an extraction into a folder resumes",
            ));
        };
        for entry in before {
            let entry = entry?;
            let rel = checked_path(Path::new(&entry.path))?;
            if rel.as_os_str().is_empty() {
                continue;
            }
            let mtime = FileTime::from_unix_time(entry.mtime, 0);
            match entry.kind {
                EntryKind::File => {
                    let path = root.join(&rel);
                    let meta = std::fs::symlink_metadata(&path)
                        .map_err(|e| Error::io("read", &path, e))?;
                    if !meta.is_file() || meta.len() != entry.size {
                        return Err(not_as_left(&path, entry.size));
                    }
                }
                EntryKind::Dir => {
                    // A folder, never a link to one: what comes after the mark is written
                    // below it.
                    let path = root.join(&rel);
                    if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
                        return Err(not_as_left(&path, 0));
                    }
                    make_dir(&path)?;
                    self.dirs.record(&rel, entry.mode, mtime, &entry.path)?;
                }
                EntryKind::Symlink => {
                    let target = PathBuf::from(entry.link.clone().unwrap_or_default());
                    let path = root.join(&rel);
                    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink()) {
                        std::fs::remove_file(&path).map_err(|e| Error::io("replace", &path, e))?;
                    }
                    self.links
                        .add(Some(&root), rel, target, mtime, &entry.path)?;
                }
            }
        }
        if let (Some(at), Some(entry)) = (mark.in_file, partial) {
            let rel = checked_path(Path::new(&entry.path))?;
            let path = root.join(&rel);
            let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io("read", &path, e))?;
            if !meta.is_file() || meta.len() < at.written || at.written > entry.size {
                return Err(not_as_left(&path, at.written));
            }
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| write_failure(e, &path))?;
            file.set_len(at.written)
                .map_err(|e| write_failure(e, &path))?;
            let mut file = file;
            io::Seek::seek(&mut file, io::SeekFrom::End(0)).map_err(|e| write_failure(e, &path))?;
            self.unfinished = Some(Unfinished {
                file,
                path,
                name: entry.path.clone(),
                size: entry.size,
                mode: entry.mode,
                mtime: FileTime::from_unix_time(entry.mtime, 0),
                data_start: at.data_start,
                written: at.written,
            });
        }
        Ok(self)
    }

    /// Finishes the file a stopped extraction left partly written: the rest of its content
    /// from `tar`, then its padding; the tar stream goes on after it.
    fn finish_unfinished<R: Read>(&mut self, tar: &mut R) -> Result<()> {
        let Some(mut u) = self.unfinished.take() else {
            return Ok(());
        };
        if let Some(limit) = self.max_bytes
            && self.stats.bytes.saturating_add(u.size) > limit
        {
            return Err(Error::corrupt(format!(
                "the archive is corrupt: its files hold more than the {limit} bytes its manifest records; refusing it"
            )));
        }
        let before = self.stats;
        while u.written < u.size {
            let want = usize::try_from((u.size - u.written).min(self.buffer.len() as u64))
                .expect("a buffer's length");
            let n = match tar.read(&mut self.buffer[..want]) {
                Ok(0) => {
                    return Err(Error::corrupt(format!(
                        "the tar stream ends inside entry {:?} ({} of {} bytes)",
                        u.name, u.written, u.size
                    )));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(tar_error(&e, Some(&u.name))),
            };
            u.file
                .write_all(&self.buffer[..n])
                .map_err(|e| write_failure(e, &u.path))?;
            u.written += n as u64;
            if let Some(marks) = &mut self.marks {
                let at = InFile {
                    data_start: u.data_start,
                    written: u.written,
                };
                marks.reached(u.data_start + u.written, before, Some(at))?;
            }
        }
        let pad = u.size.next_multiple_of(512) - u.size;
        if drain_exact(tar, pad)? != pad {
            return Err(Error::corrupt(format!(
                "the tar stream ends inside entry {:?}",
                u.name
            )));
        }
        u.file
            .set_permissions(std::fs::Permissions::from_mode(u.mode & 0o777))
            .map_err(|e| Error::io("set the mode of", &u.path, e))?;
        filetime::set_file_handle_times(&u.file, Some(u.mtime), Some(u.mtime))
            .map_err(|e| Error::io("set the time of", &u.path, e))?;
        self.stats.entries += 1;
        self.stats.bytes += u.size;
        self.base = u.data_start + u.size + pad;
        Ok(())
    }

    /// Extracts or checks every entry of the tar stream `tar`.
    pub fn run<R: Read>(self, tar: R) -> Result<ExtractStats> {
        let shows = self.shows();
        self.run_shown(tar).map_err(shows)
    }

    fn run_shown<R: Read>(mut self, mut tar: R) -> Result<ExtractStats> {
        self.finish_unfinished(&mut tar)?;
        let mut archive = tar::Archive::new(HeaderLimit::new(tar));
        let entries = archive
            .entries()
            .map_err(|e| from_io(e, "read the tar stream"))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| tar_error(&e, None))?;
            self.entry(&mut entry)?;
            if let Some(marks) = &mut self.marks {
                let end = self.base + entry.raw_file_position() + entry.size().div_ceil(512) * 512;
                marks.reached(end, self.stats, None)?;
            }
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
                        // Marks inside a large file, with the counts of the entries before it.
                        let data_start = self.base + entry.raw_file_position();
                        let before = ExtractStats {
                            entries: self.stats.entries - 1,
                            bytes: self.stats.bytes - size,
                        };
                        let marks = &mut self.marks;
                        write_file(
                            &mut self.buffer,
                            &path,
                            &name,
                            entry,
                            mode,
                            mtime,
                            |written| match marks {
                                Some(m) => m.reached(
                                    data_start + written,
                                    before,
                                    Some(InFile {
                                        data_start,
                                        written,
                                    }),
                                ),
                                None => Ok(()),
                            },
                        )?;
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
            Component::Normal(part)
                if out.as_os_str().is_empty()
                    && part
                        .as_encoded_bytes()
                        .starts_with(super::staging::WORK_PREFIX.as_bytes()) =>
            {
                return Err(unsafe_entry(
                    &name,
                    &format!(
                        "its name is one the agent keeps for its own work folders in a target ({}…), which no backup holds",
                        super::staging::WORK_PREFIX
                    ),
                ));
            }
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
    mut progress: impl FnMut(u64) -> Result<()>,
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
        progress(written)?;
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

/// Reads and drops `n` bytes of `r`, or fewer at its end; returns how many.
fn drain_exact<R: Read>(r: &mut R, n: u64) -> Result<u64> {
    io::copy(&mut r.take(n), &mut io::sink()).map_err(|e| tar_error(&e, None))
}

/// What a resumed extraction finds when an entry written before the stop is not as it
/// was: a file not of `size` bytes, or (with no size) a folder that is not one.
fn not_as_left(path: &Path, size: u64) -> Error {
    let what = if size == 0 {
        "the folder or empty file".to_string()
    } else {
        format!("the file of {size} bytes")
    };
    Error::new(
        ErrorKind::Io,
        format!("{} is not {what} written before the stop", path.display()),
    )
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
