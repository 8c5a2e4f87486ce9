//! Reading parts of a backup through its index (`spec/archive-format.md`, section 15):
//! listing its entries (`ls`) and restoring some of them (`restore --include`), fetching
//! only the byte ranges that hold the header, the index and the blocks needed.
//!
//! Everything here runs on a blocking thread and fetches with the runtime's handle: the
//! chunks are authenticated and the blocks decompressed as they arrive.

use std::io::{self, Read};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt as _;
use tokio::runtime::Handle;

use crate::blocking;
use crate::catalog::BackupEntry;
use crate::compression::Algorithm;
use crate::destination::Destination;
use crate::error::{Error, ErrorKind, Result};
use crate::format::index::{ArchiveIndex, EntryKind, Footer, IndexEntry, carrier};
use crate::format::{
    ArchiveKind, CHUNK_LEN, ChunkOpener, KeyId, MAX_HEADER_LEN, SEALED_CHUNK_LEN, from_io,
};
use crate::pipeline::extract::Extractor;
use crate::pipeline::read::{Binding, Decryption, ReadStats};
use crate::pipeline::staging::Staging;
use crate::progress::Progress;

mod rest;
mod select;
#[cfg(test)]
mod tests;

pub(crate) use rest::ResumePoint;
pub use select::{Picked, Selection};

/// Bytes read first: enough for the usual header, and for the kind of a plain archive.
const FIRST_READ: u64 = 4096;

/// How the payload is stored.
enum Payload {
    /// Sealed in chunks after a header.
    Encrypted {
        header_len: u64,
        opener: Box<ChunkOpener>,
        chunks: u64,
        key_id: KeyId,
    },
    /// Stored as it is.
    Plain,
}

/// A backup opened for reading parts of it: its header authenticated, its index read if it
/// has one.
pub struct IndexedBackup {
    dest: Arc<dyn Destination>,
    key: String,
    name: String,
    payload: Payload,
    /// Bytes of the plaintext payload.
    payload_len: u64,
    compression: Option<Algorithm>,
    index: Option<ArchiveIndex>,
    fetched: Arc<AtomicU64>,
    handle: Handle,
}

impl IndexedBackup {
    /// The index, or `None` for an archive made before archives carried one.
    pub fn index(&self) -> Option<&ArchiveIndex> {
        self.index.as_ref()
    }

    /// Bytes fetched from the destination so far.
    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// The key that opened it, if it is encrypted.
    pub fn key_id(&self) -> Option<KeyId> {
        match &self.payload {
            Payload::Encrypted { key_id, .. } => Some(*key_id),
            Payload::Plain => None,
        }
    }

    /// The bytes `range` of the stored object, all of them.
    fn fetch(&self, range: Range<u64>) -> Result<Vec<u8>> {
        let want = range.end - range.start;
        let (dest, key) = (self.dest.clone(), self.key.clone());
        let fetched = self.fetched.clone();
        let bytes = self.handle.block_on(async move {
            let mut object = dest.get_range(&key, range).await?;
            let mut out = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
            while let Some(chunk) = object.chunks.next().await {
                let chunk = chunk?;
                fetched.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                if out.len() + chunk.len() > usize::try_from(want).unwrap_or(usize::MAX) {
                    return Err(Error::corrupt(format!(
                        "{key} returned more bytes than asked for"
                    )));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(out)
        })?;
        if bytes.len() as u64 != want {
            return Err(Error::corrupt(format!(
                "the archive of backup {} is shorter than its manifest says",
                self.name
            )));
        }
        Ok(bytes)
    }

    /// The plaintext payload bytes `range`, each chunk authenticated.
    fn read_plain(&self, range: Range<u64>) -> Result<Vec<u8>> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let Payload::Encrypted {
            header_len,
            opener,
            chunks,
            ..
        } = &self.payload
        else {
            return self.fetch(range);
        };
        let chunk = CHUNK_LEN as u64;
        let sealed = SEALED_CHUNK_LEN as u64;
        let (first, last) = (range.start / chunk, (range.end - 1) / chunk);
        let stored_end = (header_len + (last + 1) * sealed).min(header_len + self.sealed_len());
        let raw = self.fetch(header_len + first * sealed..stored_end)?;
        let mut plain = Vec::with_capacity(raw.len());
        for (i, piece) in raw.chunks(SEALED_CHUNK_LEN).enumerate() {
            let n = first + i as u64;
            let counter = u32::try_from(n).map_err(|_| Error::corrupt("too many chunks"))?;
            plain.extend_from_slice(&opener.open(counter, n + 1 == *chunks, piece)?);
        }
        let from = usize::try_from(range.start - first * chunk).expect("within a read");
        let to = usize::try_from(range.end - first * chunk).expect("within a read");
        plain
            .get(from..to)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::corrupt("the archive's payload is shorter than its index says"))
    }

    fn sealed_len(&self) -> u64 {
        match &self.payload {
            Payload::Encrypted { chunks, .. } => self.payload_len + chunks * 16,
            Payload::Plain => self.payload_len,
        }
    }

    /// Reads the footer and, if there is one, the index.
    fn read_index(&mut self) -> Result<()> {
        let tail_len = carrier::footer_carrier_len(Algorithm::Gzip)
            .max(carrier::footer_carrier_len(Algorithm::Zstd))
            .min(self.payload_len);
        let tail = self.read_plain(self.payload_len - tail_len..self.payload_len)?;
        let found = Algorithm::ALL
            .into_iter()
            .find_map(|a| carrier::footer_in(a, &tail).map(|raw| (a, raw)));
        let Some((algorithm, raw)) = found else {
            return Ok(());
        };
        let Some(footer) = Footer::decode(
            raw,
            self.payload_len,
            carrier::footer_carrier_len(algorithm),
        )?
        else {
            return Ok(());
        };
        let carriers =
            self.read_plain(footer.index_start..footer.index_start + footer.carriers_len)?;
        let body = carrier::body_of(algorithm, &carriers, &footer)?;
        self.index = Some(ArchiveIndex::decode(body, footer.index_start)?);
        self.compression = Some(algorithm);
        Ok(())
    }

    /// The decompressed bytes of block `b`, checked by its gzip CRCs or zstd checksum.
    fn block(&self, b: usize) -> Result<Vec<u8>> {
        let index = self.index.as_ref().expect("read with an index");
        let compression = self.compression.expect("read with an index");
        let compressed = self.read_plain(index.block_starts[b]..index.block_starts[b + 1])?;
        let want = index.block_plain_len(b);
        let mut decoder =
            crate::pipeline::decompress::serial_decoder(compression, io::Cursor::new(compressed))
                .map_err(|e| from_io(e, "start the decompression"))?;
        let mut out = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
        (&mut decoder)
            .take(want + 1)
            .read_to_end(&mut out)
            .map_err(|e| Error::corrupt(format!("block {b} of the archive is damaged: {e}")))?;
        if out.len() as u64 != want {
            return Err(Error::corrupt(format!(
                "block {b} of the archive holds {} bytes, but its index says {want}",
                out.len()
            )));
        }
        Ok(out)
    }
}

/// Opens the backup `entry` in `dest` for reading parts of it: reads and authenticates its
/// header (refusing a wrong key, or an archive of another backup, as a restore does), then
/// its footer and index. A backup without an index opens with [`IndexedBackup::index`]
/// `None`.
pub async fn open_backup(
    dest: Arc<dyn Destination>,
    entry: &BackupEntry,
    decryption: &Decryption,
) -> Result<IndexedBackup> {
    let handle = Handle::current();
    let (entry, decryption) = (entry.clone(), decryption.clone());
    blocking(move || open_blocking(dest, &entry, &decryption, handle)).await
}

/// [`open_backup`] on a blocking thread, fetching with `handle`.
pub(crate) fn open_blocking(
    dest: Arc<dyn Destination>,
    entry: &BackupEntry,
    decryption: &Decryption,
    handle: Handle,
) -> Result<IndexedBackup> {
    let size = entry.manifest.stored_bytes;
    if !entry.is_sound() {
        return Err(Error::corrupt(format!(
            "the archive of backup {} is {} bytes, but its manifest says {size}",
            entry.manifest.name, entry.archive_size
        )));
    }
    let mut backup = IndexedBackup {
        dest,
        key: entry.archive_key.clone(),
        name: entry.manifest.name.clone(),
        payload: Payload::Plain,
        payload_len: size,
        compression: None,
        index: None,
        fetched: Arc::new(AtomicU64::new(0)),
        handle,
    };
    let mut prefix = backup.fetch(0..size.min(FIRST_READ))?;
    let keys = decryption.keyring.as_ref().filter(|k| !k.is_empty());
    match ArchiveKind::sniff(&prefix)? {
        ArchiveKind::Plain(_) if keys.is_some() && !decryption.allow_unencrypted => {
            return Err(Error::new(
                ErrorKind::Corrupt,
                "the archive is not encrypted although a key is configured, so it may have been replaced",
            )
            .with_hint("if it is an old backup made before encryption was set up, pass --allow-unencrypted"));
        }
        ArchiveKind::Plain(_) => {}
        ArchiveKind::Encrypted => {
            let Some(keyring) = keys else {
                return Err(Error::new(
                    ErrorKind::WrongKey,
                    "the archive is encrypted and no key was given",
                )
                .with_hint("pass --key-file, or configure encryption.key_file"));
            };
            let header_len = if let Some(n) = crate::format::header_len(&prefix)? {
                n
            } else {
                prefix = backup.fetch(0..size.min(MAX_HEADER_LEN as u64))?;
                crate::format::header_len(&prefix)?
                    .ok_or_else(|| Error::corrupt("the archive header is truncated"))?
            };
            let (info, opener) = crate::format::open_for_ranges(&prefix[..header_len], keyring)?;
            Binding::Backup(entry.manifest.context()).check(info.context.as_ref())?;
            let sealed = size - header_len as u64;
            let chunks = sealed.div_ceil(SEALED_CHUNK_LEN as u64).max(1);
            let last = sealed - (chunks - 1) * SEALED_CHUNK_LEN as u64;
            if last < 16 || (chunks > 1 && last == 16) {
                return Err(Error::corrupt(
                    "the archive is truncated (its final chunk is shorter than a tag)",
                ));
            }
            backup.payload_len = sealed - chunks * 16;
            backup.payload = Payload::Encrypted {
                header_len: header_len as u64,
                opener: Box::new(opener),
                chunks,
                key_id: info.key_id,
            };
        }
    }
    backup.read_index()?;
    Ok(backup)
}

/// The message for a backup without an index.
pub fn no_index(name: &str) -> Error {
    Error::new(
        ErrorKind::Usage,
        format!("backup {name} has no index: it was made by a version before archives carried one, so its files cannot be fetched one by one"),
    )
    .with_hint("restore it whole (without --include); `ls` lists it by reading the whole archive")
}

/// Restores only the entries of `backup` that `selection` picks (and the folders above
/// them) into `target`, fetching only the blocks that hold them. Everything is extracted
/// and checked in a staging folder first; then each of the shallowest restored paths is
/// put in place in the target alone, replacing only what is at its own path (which, unless
/// `replace`, must not exist): the rest of the target stays as it is. A pattern that
/// matches nothing, or a restored path that exists without `replace`, is an error naming
/// it, before anything is written.
pub async fn restore_selected(
    backup: IndexedBackup,
    selection: Selection,
    target: std::path::PathBuf,
    replace: bool,
    plain_bytes: Option<u64>,
    progress: Arc<dyn Progress>,
) -> Result<ReadStats> {
    blocking(move || {
        let Some(index) = backup.index() else {
            return Err(no_index(&backup.name));
        };
        let picked = selection.pick(index, &backup.name)?;
        crate::pipeline::staging::check_merge(&target, &picked.tops, replace)?;
        // The target's other content is never replaced: only the restored paths are.
        let staging = Staging::prepare(&target, true)?;
        let need: u64 = picked
            .ranges()
            .into_iter()
            .flat_map(|r| index.blocks_of(r.start, r.end))
            .map(|b| index.block_starts[b + 1] - index.block_starts[b])
            .sum();
        progress.set_total(need);
        let reader = SelectedTar {
            backup: &backup,
            entries: picked.entries.into_iter(),
            pending: io::Cursor::new(Vec::new()),
            current: 0..0,
            block: None,
            end_left: 1024,
            progress: &*progress,
        };
        let extractor = Extractor::into_staging(&staging).with_byte_limit(plain_bytes);
        match extractor.run(reader) {
            Ok(extracted) => {
                staging.merge(&picked.tops, replace)?;
                Ok(ReadStats {
                    extracted,
                    stored_bytes: backup.fetched(),
                    sha256: String::new(),
                    key_id: backup.key_id(),
                })
            }
            Err(e) => {
                staging.discard();
                Err(e)
            }
        }
    })
    .await
}

/// A tar stream of only the picked entries: their bytes cut from the blocks that hold
/// them, each entry's headers checked against its index entry, then tar's end-of-archive
/// marker.
struct SelectedTar<'a> {
    backup: &'a IndexedBackup,
    entries: std::vec::IntoIter<IndexEntry>,
    /// The current entry's headers, checked, not yet read.
    pending: io::Cursor<Vec<u8>>,
    /// The rest of the current entry: its data and padding.
    current: Range<u64>,
    /// The block last decompressed: its number and bytes.
    block: Option<(usize, Vec<u8>)>,
    end_left: usize,
    progress: &'a dyn Progress,
}

impl SelectedTar<'_> {
    /// Copies bytes of the tar stream from offset `at` into `buf` (within one block).
    fn copy_at(&mut self, at: u64, buf: &mut [u8]) -> io::Result<usize> {
        let index = self.backup.index().expect("read with an index");
        let b = usize::try_from(at / index.block_size).expect("a block number");
        if self.block.as_ref().is_none_or(|(n, _)| *n != b) {
            let before = self.backup.fetched();
            let bytes = self.backup.block(b).map_err(io::Error::other)?;
            self.progress.advance(self.backup.fetched() - before);
            self.block = Some((b, bytes));
        }
        let (_, bytes) = self.block.as_ref().expect("just read");
        let from = usize::try_from(at - b as u64 * index.block_size).expect("in a block");
        let n = buf.len().min(bytes.len().saturating_sub(from));
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::other(Error::corrupt(
                "the archive's index points past the end of a block",
            )));
        }
        buf[..n].copy_from_slice(&bytes[from..from + n]);
        Ok(n)
    }

    /// The headers of `entry` (a long name's or PAX header's included), read and checked
    /// against it.
    fn headers(&mut self, entry: &IndexEntry) -> io::Result<Vec<u8>> {
        let len = usize::try_from(entry.header_blocks * 512).expect("a few header blocks");
        let mut head = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            filled += self.copy_at(entry.tar_start + filled as u64, &mut head[filled..])?;
        }
        check_headers(&head, entry).map_err(io::Error::other)?;
        Ok(head)
    }
}

impl Read for SelectedTar<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.pending.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            if !self.current.is_empty() {
                let left =
                    usize::try_from(self.current.end - self.current.start).unwrap_or(usize::MAX);
                let len = buf.len().min(left);
                let n = self.copy_at(self.current.start, &mut buf[..len])?;
                self.current.start += n as u64;
                return Ok(n);
            }
            let Some(entry) = self.entries.next() else {
                let n = buf.len().min(self.end_left);
                buf[..n].fill(0);
                self.end_left -= n;
                return Ok(n);
            };
            let head = self.headers(&entry)?;
            self.current = entry.tar_start + head.len() as u64..entry.tar_end();
            self.pending = io::Cursor::new(head);
        }
    }
}

/// Checks that the tar headers `head`, read where the index says `entry` starts, are that
/// entry's: its path, type and size, and no more header blocks than the index counts. Only
/// the tar stream of an encrypted archive is authenticated with its index; in a plain one,
/// an index that lists an entry at another entry's offset would restore one under the
/// other's name.
fn check_headers(head: &[u8], entry: &IndexEntry) -> Result<()> {
    let mismatch = |found: &str| {
        Error::corrupt(format!(
            "the archive's index does not match its tar stream: it lists {} {:?} at offset {}, but the tar header there {found}",
            entry.kind.name(),
            entry.path,
            entry.tar_start
        ))
    };
    let mut tar = tar::Archive::new(head);
    let item = tar
        .entries()
        .ok()
        .and_then(|mut items| items.next())
        .ok_or_else(|| mismatch("is missing"))?
        .map_err(|e| mismatch(&format!("cannot be read ({e})")))?;
    let path = item.path_bytes();
    let path = String::from_utf8_lossy(&path);
    let path = path.trim_end_matches('/');
    let kind = match item.header().entry_type() {
        tar::EntryType::Directory => Some(EntryKind::Dir),
        tar::EntryType::Symlink => Some(EntryKind::Symlink),
        tar::EntryType::Regular | tar::EntryType::Continuous => Some(EntryKind::File),
        _ => None,
    };
    let size = item.size();
    if path != entry.path || kind != Some(entry.kind) || size != entry.size {
        return Err(mismatch(&format!(
            "names {} {path:?} of {size} bytes",
            kind.map_or("another kind of entry", EntryKind::name)
        )));
    }
    if item.raw_file_position() != head.len() as u64 {
        return Err(mismatch(&format!(
            "takes {} bytes, not the {} the index counts",
            item.raw_file_position(),
            head.len()
        )));
    }
    Ok(())
}

/// Lists the entries of a backup without an index by reading its whole archive: decrypted
/// (the header checked as a restore checks it), decompressed, its tar headers read and its
/// contents skipped. `each` sees the entries in tar order.
pub async fn list_whole(
    dest: Arc<dyn Destination>,
    entry: &BackupEntry,
    decryption: &Decryption,
    each: impl FnMut(IndexEntry) + Send + 'static,
) -> Result<()> {
    let object = dest.get(&entry.archive_key).await?;
    let reader = crate::pipeline::ObjectReader::new(object);
    let mut decryption = decryption.clone();
    decryption.bound_to = Binding::Backup(entry.manifest.context());
    blocking(move || list_tar(reader, &decryption, each)).await
}

fn list_tar<R: Read + Send>(
    input: R,
    decryption: &Decryption,
    mut each: impl FnMut(IndexEntry),
) -> Result<()> {
    let mut input = io::BufReader::with_capacity(256 * 1024, input);
    let first = io::BufRead::fill_buf(&mut input)
        .map_err(|e| from_io(e, "read the archive"))?
        .to_vec();
    let plain: Box<dyn Read + Send + '_> = match ArchiveKind::sniff(&first)? {
        ArchiveKind::Encrypted => {
            let Some(keyring) = decryption.keyring.as_ref().filter(|k| !k.is_empty()) else {
                return Err(Error::new(
                    ErrorKind::WrongKey,
                    "the archive is encrypted and no key was given",
                ));
            };
            let reader = crate::format::DecryptingReader::new(input, keyring)?;
            decryption.bound_to.check(reader.context())?;
            Box::new(reader)
        }
        ArchiveKind::Plain(_) => Box::new(input),
    };
    let mut plain = io::BufReader::new(plain);
    let head = io::BufRead::fill_buf(&mut plain)
        .map_err(|e| from_io(e, "read the archive"))?
        .to_vec();
    let compression = Algorithm::sniff(&head).ok_or_else(|| {
        Error::corrupt("the archive's content is neither a gzip nor a zstd stream")
    })?;
    let decoder = crate::pipeline::decompress::serial_decoder(compression, plain)
        .map_err(|e| from_io(e, "start the decompression"))?;
    // Long names and PAX headers are read whole by the tar crate: limited as a restore
    // limits them.
    let mut tar = tar::Archive::new(crate::pipeline::extract::HeaderLimit::new(decoder));
    let entries = tar
        .entries()
        .map_err(|e| from_io(e, "read the tar stream"))?;
    for item in entries {
        let item = item.map_err(|e| from_io(e, "read the tar stream"))?;
        let header = item.header();
        let kind = match header.entry_type() {
            tar::EntryType::Directory => crate::format::index::EntryKind::Dir,
            tar::EntryType::Symlink => crate::format::index::EntryKind::Symlink,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                crate::format::index::EntryKind::File
            }
            _ => continue,
        };
        let path = item.path_bytes();
        let path = String::from_utf8_lossy(&path)
            .trim_end_matches('/')
            .to_string();
        each(IndexEntry {
            path,
            kind,
            mode: header.mode().unwrap_or(0) & 0o7777,
            size: if kind == crate::format::index::EntryKind::File {
                header.size().unwrap_or(0)
            } else {
                0
            },
            mtime: i64::try_from(header.mtime().unwrap_or(0)).unwrap_or(0),
            link: item
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned()),
            tar_start: item.raw_header_position(),
            header_blocks: 1,
        });
    }
    Ok(())
}
