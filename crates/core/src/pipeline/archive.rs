//! Source folder → tar → gzip or zstd → (encrypt) → a writer.
//!
//! tar runs on the calling (blocking) thread; compression runs on a few threads of its own (see
//! [`super::compress`]), and the encryption, hashing and writing on one more, so the
//! stages overlap.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::format::{
    BackupContext, EncryptingWriter, Key, PassphraseRecipient, Recipient, from_io,
};
use crate::progress::Progress;

use super::compress::{BLOCK_SIZE, ParallelCompressor, compression_threads};
use super::hashing::HashingWriter;
use super::index::{Counting, IndexRecorder};
use super::staging::WORK_PREFIX;
use crate::compression::Algorithm;
use crate::format::index::{EntryKind, IndexEntry};
use std::os::unix::fs::MetadataExt as _;

/// What to archive and how.
#[derive(Debug, Clone)]
pub struct ArchiveSpec {
    /// The folder whose content is archived (the folder itself is not an entry).
    pub source: PathBuf,
    /// How the tar stream is compressed.
    pub compression: Algorithm,
    /// The level of `compression`, within its levels.
    pub compression_level: u32,
    /// The key to encrypt for; `None`, with no recipient, writes a plain `.tar.gz` (or
    /// `.tar.zst`).
    pub key: Option<Key>,
    /// Public-key recipients to encrypt for as well (or alone, with no key).
    pub recipients: Vec<Recipient>,
    /// The backup password's public half: a password stanza opens the archive as well.
    pub passphrase: Option<PassphraseRecipient>,
}

impl ArchiveSpec {
    /// Whether the archive is encrypted: for a key, a recipient, a password, or several.
    pub fn encrypted(&self) -> bool {
        self.key.is_some() || !self.recipients.is_empty() || self.passphrase.is_some()
    }
}

/// What writing an archive counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Entries archived: files, directories and symlinks.
    pub file_count: u64,
    /// Bytes of regular file content archived.
    pub plain_bytes: u64,
    /// Bytes written to the output.
    pub stored_bytes: u64,
    /// SHA-256 of the bytes written to the output.
    pub sha256: [u8; 32],
    /// Files whose size changed while they were read (their archived copy is padded or cut).
    pub changed_files: Vec<String>,
}

/// The encryption layer, present or not.
enum Sealer<W: Write> {
    Plain(W),
    Encrypted(Box<EncryptingWriter<W>>),
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(w) => w.write(data),
            Self::Encrypted(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(w) => w.flush(),
            Self::Encrypted(w) => w.flush(),
        }
    }
}

/// Writes the archive of `spec.source` to `out`; returns what it counted and `out`.
///
/// Regular files, directories and symlinks are archived with their modes and times;
/// sockets, FIFOs and devices are skipped with a warning, and so are the work folders of
/// restores (`.service-backup-*`), at any depth. An unreadable entry fails the
/// whole archive with an error naming it.
pub fn write_archive<W: Write + Send>(
    spec: &ArchiveSpec,
    out: W,
    progress: &dyn Progress,
) -> Result<(ArchiveStats, W)> {
    write_bound_archive(spec, None, out, progress)
}

/// Like [`write_archive`], with an encrypted archive's header bound to the backup
/// `context` (a plain archive has no header to bind it in).
pub fn write_bound_archive<W: Write + Send>(
    spec: &ArchiveSpec,
    context: Option<&BackupContext>,
    out: W,
    progress: &dyn Progress,
) -> Result<(ArchiveStats, W)> {
    let source = &spec.source;
    check_source(source)?;
    let hashing = HashingWriter::new(out);
    let sealer = if spec.encrypted() {
        Sealer::Encrypted(Box::new(EncryptingWriter::sealed_for(
            hashing,
            spec.key.as_ref(),
            &spec.recipients,
            spec.passphrase.as_ref(),
            context,
        )?))
    } else {
        Sealer::Plain(hashing)
    };
    let (mut stats, sealer) = std::thread::scope(|scope| {
        let compressor = ParallelCompressor::new(
            sealer,
            spec.compression,
            spec.compression_level,
            compression_threads(),
            scope,
        )
        .map_err(|e| from_io(e, "start the compression threads"))?;
        let mut tar = tar::Builder::new(Counting {
            inner: compressor,
            count: 0,
        });
        let mut index = IndexRecorder::default();
        let stats = append_tree(&mut tar, source, progress, &mut index)?;
        let counted = tar
            .into_inner()
            .map_err(|e| from_io(e, "finish the tar stream"))?;
        let (mut sealer, blocks) = counted
            .inner
            .finish_with_blocks()
            .map_err(|e| from_io(e, "finish the compressed stream"))?;
        write_index(&mut sealer, index, spec.compression, &blocks, counted.count)?;
        Ok::<_, Error>((stats, sealer))
    })?;
    let hashing = match sealer {
        Sealer::Plain(w) => w,
        Sealer::Encrypted(w) => w.finish().map_err(|e| from_io(e, "seal the archive"))?,
    };
    let (mut out, stored, sha) = hashing.finish();
    out.flush().map_err(|e| from_io(e, "write the archive"))?;
    stats.stored_bytes = stored;
    stats.sha256 = sha;
    Ok((stats, out))
}

/// Writes the index of a tar stream of `tar_len` bytes, whose blocks compressed to
/// `blocks` bytes each, after the compressed stream (`spec/archive-format.md`, section 15).
fn write_index<W: Write>(
    out: &mut W,
    index: IndexRecorder,
    compression: Algorithm,
    blocks: &[u32],
    tar_len: u64,
) -> Result<()> {
    if blocks.is_empty() {
        return Ok(());
    }
    let compressed: u64 = blocks.iter().map(|&b| u64::from(b)).sum();
    let body = index
        .into_body(BLOCK_SIZE as u64, blocks, tar_len)
        .map_err(|e| from_io(e, "read the archive's index back from its temporary file"))?;
    crate::format::index::carrier::write_index(compression, body, compressed, out)
        .map_err(|e| from_io(e, "write the archive's index"))?;
    Ok(())
}

/// Appends the content of `source` to `tar`, in a stable order, recording each entry in
/// `index`.
fn append_tree<W: Write>(
    tar: &mut tar::Builder<Counting<W>>,
    source: &Path,
    progress: &dyn Progress,
    index: &mut IndexRecorder,
) -> Result<ArchiveStats> {
    tar.mode(tar::HeaderMode::Complete);
    tar.follow_symlinks(false);
    let mut stats = ArchiveStats::default();

    let walk = walkdir::WalkDir::new(source)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| {
            let work = is_work_folder(e);
            if work {
                tracing::warn!(path = %e.path().display(), "not archiving a restore's work folder (.service-backup-*); if a stopped restore left it, see its log lines");
            }
            !work
        });
    for entry in walk {
        let entry = entry.map_err(|e| walk_error(source, e))?;
        let path = entry.path();
        let rel = path.strip_prefix(source).expect("walked below the source");
        let meta = entry.metadata().map_err(|e| walk_error(source, e))?;
        let kind = meta.file_type();
        let tar_start = tar.get_ref().count;
        let mut link = None;
        let entry_kind = if kind.is_dir() {
            EntryKind::Dir
        } else if kind.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::File
        };
        if kind.is_dir() {
            tar.append_dir(rel, path)
                .map_err(|e| write_error(e, path))?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(path).map_err(|e| Error::io("read link", path, e))?;
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            tar.append_link(&mut header, rel, &target)
                .map_err(|e| write_error(e, path))?;
            link = Some(target.to_string_lossy().into_owned());
        } else if kind.is_file() {
            let file = File::open(path).map_err(|e| Error::io("read", path, e))?;
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            let size = meta.len();
            let mut reader = ExactReader::new(file, size, progress);
            tar.append_data(&mut header, rel, &mut reader)
                .map_err(|e| write_error(e, path))?;
            if reader.changed || modified_since(reader.inner.get_ref(), &meta) {
                tracing::warn!(
                    file = %path.display(),
                    archived_bytes = size,
                    "file changed as we read it; its archived copy may mix old and new content"
                );
                stats.changed_files.push(rel.display().to_string());
            }
            stats.plain_bytes += size;
        } else {
            tracing::warn!(file = %path.display(), "skipping a special file (socket, FIFO or device)");
            continue;
        }
        let size = if entry_kind == EntryKind::File {
            meta.len()
        } else {
            0
        };
        let tar_end = tar.get_ref().count;
        let record = IndexEntry {
            path: rel.to_string_lossy().into_owned(),
            kind: entry_kind,
            mode: meta.mode() & 0o7777,
            size,
            mtime: meta.mtime(),
            link,
            tar_start,
            header_blocks: (tar_end - tar_start - size.div_ceil(512) * 512) / 512,
        };
        index
            .record(&record)
            .map_err(|e| from_io(e, "record the archive's index in a temporary file"))?;
        stats.file_count += 1;
    }

    Ok(stats)
}

/// Whether `entry`, below the source, is a restore's work folder (or any name of that
/// prefix), which a backup never archives: a restore into the source folder, or into a
/// folder inside it, stages there, and a stopped one leaves its folders there. At any depth,
/// as a target may be any folder inside the source.
fn is_work_folder(entry: &walkdir::DirEntry) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    entry.depth() > 0
        && entry
            .file_name()
            .as_bytes()
            .starts_with(WORK_PREFIX.as_bytes())
}

/// Checks that the source folder exists and is a folder, before anything is uploaded.
pub fn check_source(source: &Path) -> Result<()> {
    match std::fs::metadata(source) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::new(
            ErrorKind::Config,
            format!("source folder {} is not a directory", source.display()),
        )),
        Err(e) => Err(Error::io("read source folder", source, e)),
    }
}

fn walk_error(source: &Path, e: walkdir::Error) -> Error {
    let path = e.path().unwrap_or(source).to_path_buf();
    match e.into_io_error() {
        Some(io) => Error::io("read", &path, io),
        None => Error::new(
            ErrorKind::Io,
            format!("cannot walk {}: a link loop", path.display()),
        ),
    }
}

/// An error while appending `path`: one of ours from the output side, or reading the file.
fn write_error(e: io::Error, path: &Path) -> Error {
    if let Some(ours) = crate::error::find_in_io(&e) {
        return ours;
    }
    Error::io("archive", path, e)
}

/// Whether the open `file` was written to since `before` was taken (its size, its content
/// or its inode change time differ), as GNU tar checks for "file changed as we read it".
fn modified_since(file: &File, before: &std::fs::Metadata) -> bool {
    file.metadata().is_ok_and(|after| {
        (
            after.len(),
            after.mtime(),
            after.mtime_nsec(),
            after.ctime(),
            after.ctime_nsec(),
        ) != (
            before.len(),
            before.mtime(),
            before.mtime_nsec(),
            before.ctime(),
            before.ctime_nsec(),
        )
    })
}

/// Reads exactly `size` bytes of a file: cut if it grew, zero-padded if it shrank, so
/// the tar stream stays valid whatever happens to the file meanwhile.
struct ExactReader<'a> {
    inner: BufReader<File>,
    left: u64,
    changed: bool,
    progress: &'a dyn Progress,
}

impl<'a> ExactReader<'a> {
    fn new(file: File, size: u64, progress: &'a dyn Progress) -> Self {
        Self {
            inner: BufReader::with_capacity(256 * 1024, file),
            left: size,
            changed: false,
            progress,
        }
    }
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            if !self.changed {
                let mut probe = [0u8; 1];
                if self.inner.read(&mut probe)? > 0 {
                    self.changed = true;
                }
            }
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let mut n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            self.changed = true;
            buf[..want].fill(0);
            n = want;
        }
        self.left -= n as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// The total size of the regular files under `source`, for a progress bar's total.
pub fn source_size(source: &Path) -> u64 {
    walkdir::WalkDir::new(source)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| !is_work_folder(e))
        .filter_map(std::result::Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}
