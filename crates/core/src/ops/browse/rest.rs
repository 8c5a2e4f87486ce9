//! The rest of a backup's tar stream after a point where a restore stopped: found through
//! the index, fetched from the block that holds it to the end, its chunks authenticated
//! one by one as they arrive.

use std::io::{self, Read};

use super::{IndexedBackup, Payload};
use crate::error::{Error, Result};
use crate::format::index::{EntryKind, IndexEntry};
use crate::format::{CHUNK_LEN, ChunkOpener, SEALED_CHUNK_LEN};
use crate::pipeline::ObjectReader;
use crate::pipeline::extract::Mark;
use crate::pipeline::ranged::RangedRead;
use crate::progress::Progress;

/// Where a restore that stopped at a point of the tar stream goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResumePoint {
    /// The tar offset it stopped at: where an entry's first header starts, or a byte of a
    /// file's content.
    pub tar_offset: u64,
    /// Where the entries not to replay start: the tar offset, or the start of the file it
    /// falls in.
    replay_before: u64,
    /// Bytes of the tar stream before it in the block that holds it.
    pub tar_skip: u64,
    /// The first chunk to fetch.
    chunk: u64,
    /// Plaintext bytes of that chunk before the block starts.
    chunk_skip: u64,
    /// Compressed bytes from the block's start to the end of the compressed tar stream.
    compressed_left: u64,
    /// Offset in the stored object of the first chunk to fetch.
    pub stored_start: u64,
}

impl IndexedBackup {
    /// Where a restore stopped at `mark` goes on, and the entry of the file it stopped
    /// inside, if it did; `None` when it cannot: the archive is not encrypted (nothing but
    /// the whole archive's hash would check what is fetched), has no index, or the mark is
    /// neither where an entry starts nor inside a file's content.
    pub(crate) fn resume_point(
        &self,
        mark: &Mark,
    ) -> Result<Option<(ResumePoint, Option<IndexEntry>)>> {
        let (Payload::Encrypted { header_len, .. }, Some(index)) = (&self.payload, &self.index)
        else {
            return Ok(None);
        };
        let tar_offset = mark.tar_offset;
        let mut found = false;
        let mut partial = None;
        let mut replay_before = tar_offset;
        let mut last_end = 0;
        for entry in index.entries() {
            let entry = entry?;
            if let Some(at) = mark.in_file {
                let data_start = entry.tar_start + entry.header_blocks * 512;
                if data_start == at.data_start {
                    found = entry.kind == EntryKind::File
                        && at.written <= entry.size
                        && at.data_start + at.written == tar_offset;
                    replay_before = entry.tar_start;
                    partial = Some(entry);
                    break;
                }
                if data_start > at.data_start {
                    break;
                }
                continue;
            }
            if entry.tar_start >= tar_offset {
                found = entry.tar_start == tar_offset;
                break;
            }
            last_end = entry.tar_end();
        }
        // Past the last entry: only the end-of-archive marker is left.
        if mark.in_file.is_none() && !found {
            found = last_end == tar_offset && tar_offset <= index.tar_len;
        }
        if !found {
            return Ok(None);
        }
        let blocks = index.block_starts.len() - 1;
        let b = usize::try_from(tar_offset / index.block_size)
            .unwrap_or(usize::MAX)
            .min(blocks.saturating_sub(1));
        let start = index.block_starts[b];
        let chunk = start / CHUNK_LEN as u64;
        let point = ResumePoint {
            tar_offset,
            replay_before,
            tar_skip: tar_offset - b as u64 * index.block_size,
            chunk,
            chunk_skip: start - chunk * CHUNK_LEN as u64,
            compressed_left: index.block_starts[blocks] - start,
            stored_start: header_len + chunk * SEALED_CHUNK_LEN as u64,
        };
        Ok(Some((point, partial)))
    }

    /// The entries before `point` (before the file it falls in, if it does), from the
    /// index, in tar order.
    pub(crate) fn entries_before(
        &self,
        point: ResumePoint,
    ) -> impl Iterator<Item = Result<IndexEntry>> + '_ {
        self.index
            .iter()
            .flat_map(crate::format::index::ArchiveIndex::entries)
            .take_while(move |e| {
                e.as_ref()
                    .map_or(true, |e| e.tar_start < point.replay_before)
            })
    }

    /// The decrypted compressed tar stream from the block of `point` to its end, fetched
    /// in ranges, several at once; each chunk is authenticated before its bytes are handed
    /// on, and `progress` advances with the bytes fetched.
    pub(crate) fn rest<'a>(
        &'a self,
        point: ResumePoint,
        progress: &'a dyn Progress,
    ) -> Result<impl Read + Send + 'a> {
        let Payload::Encrypted { opener, chunks, .. } = &self.payload else {
            return Err(Error::corrupt(
                "a restore resumes only an encrypted archive",
            ));
        };
        let size = self.payload_len + chunks * 16 + self.header_len();
        let object = self.handle.block_on(RangedRead::default().read_from(
            self.dest.clone(),
            &self.key,
            size,
            point.stored_start,
        ))?;
        let _entered = self.handle.enter();
        Ok(Opened {
            inner: Counted {
                inner: ObjectReader::new(object),
                progress,
            },
            opener,
            next: point.chunk,
            chunks: *chunks,
            sealed_left: size - point.stored_start,
            plain: Vec::new(),
            at: 0,
            skip: point.chunk_skip,
            left: point.compressed_left,
        })
    }

    fn header_len(&self) -> u64 {
        match &self.payload {
            Payload::Encrypted { header_len, .. } => *header_len,
            Payload::Plain => 0,
        }
    }
}

/// A reader that tells `progress` how many bytes passed.
struct Counted<'a, R> {
    inner: R,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// The plaintext of sealed chunks read in order from `inner`, starting at chunk `next`.
struct Opened<'a, R> {
    inner: R,
    opener: &'a ChunkOpener,
    next: u64,
    chunks: u64,
    /// Sealed bytes of the object from the current chunk on.
    sealed_left: u64,
    plain: Vec<u8>,
    at: usize,
    /// Plaintext bytes still to drop before the first handed on.
    skip: u64,
    /// Plaintext bytes still to hand on.
    left: u64,
}

impl<R: Read> Read for Opened<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.left == 0 || buf.is_empty() {
                return Ok(0);
            }
            if self.at < self.plain.len() {
                let n = buf
                    .len()
                    .min(self.plain.len() - self.at)
                    .min(usize::try_from(self.left).unwrap_or(usize::MAX));
                buf[..n].copy_from_slice(&self.plain[self.at..self.at + n]);
                self.at += n;
                self.left -= n as u64;
                return Ok(n);
            }
            if self.next >= self.chunks {
                return Err(io::Error::other(Error::corrupt(
                    "the archive's payload is shorter than its index says",
                )));
            }
            let want = self.sealed_left.min(SEALED_CHUNK_LEN as u64);
            let mut sealed = vec![0; usize::try_from(want).expect("a chunk")];
            self.inner.read_exact(&mut sealed).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    io::Error::other(Error::corrupt(
                        "the archive is shorter than its manifest says",
                    ))
                } else {
                    e
                }
            })?;
            let counter = u32::try_from(self.next)
                .map_err(|_| io::Error::other(Error::corrupt("too many chunks")))?;
            self.plain = self
                .opener
                .open(counter, self.next + 1 == self.chunks, &sealed)
                .map_err(io::Error::other)?;
            self.next += 1;
            self.sealed_left -= want;
            let drop = usize::try_from(self.skip.min(self.plain.len() as u64)).expect("a chunk");
            self.skip -= drop as u64;
            self.at = drop;
        }
    }
}
