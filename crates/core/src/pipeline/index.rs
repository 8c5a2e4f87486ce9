//! Recording the archive's index while the tar stream is written
//! (`spec/archive-format.md`, section 15): each entry is encoded as soon as it is appended,
//! into a buffer of at most [`SPILL_AT`] bytes that moves to a temporary file whenever it
//! fills, so that memory stays flat whatever the number of files.

use std::fs::File;
use std::io::{self, Read, Seek, Write};

use crate::format::index::{EntryEncoder, IndexEntry, encode_head};

/// Bytes of encoded entries kept in memory before they move to a temporary file (about
/// 250,000 entries of the usual 15 bytes).
pub const SPILL_AT: usize = 4 << 20;

/// The entries recorded so far, encoded.
#[derive(Debug, Default)]
pub struct IndexRecorder {
    encoder: EntryEncoder,
    buf: Vec<u8>,
    spill: Option<File>,
    count: u64,
    spilled: u64,
}

impl IndexRecorder {
    /// Records `entry`, which follows the one recorded before in the tar stream.
    pub fn record(&mut self, entry: &IndexEntry) -> io::Result<()> {
        self.encoder.encode(entry, &mut self.buf);
        self.count += 1;
        if self.buf.len() >= SPILL_AT {
            let file = match &mut self.spill {
                Some(file) => file,
                None => self.spill.insert(tempfile::tempfile()?),
            };
            file.write_all(&self.buf)?;
            self.spilled += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Entries recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Bytes of encoded entries moved to the temporary file so far.
    pub fn spilled(&self) -> u64 {
        self.spilled
    }

    /// The whole body, for a tar stream of `tar_len` bytes cut into blocks of `block_size`
    /// that compressed to `blocks` bytes each.
    pub fn into_body(self, block_size: u64, blocks: &[u32], tar_len: u64) -> io::Result<Body> {
        let head = encode_head(block_size, blocks, tar_len, self.count);
        let spill = match self.spill {
            Some(mut file) => {
                file.rewind()?;
                Some(io::BufReader::with_capacity(256 * 1024, file))
            }
            None => None,
        };
        Ok(Body {
            head: io::Cursor::new(head),
            spill,
            tail: io::Cursor::new(self.buf),
        })
    }
}

/// An index body read in order: its head, the spilled entries, the entries in memory.
pub struct Body {
    head: io::Cursor<Vec<u8>>,
    spill: Option<io::BufReader<File>>,
    tail: io::Cursor<Vec<u8>>,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.head.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        if let Some(spill) = &mut self.spill {
            let n = spill.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
        }
        self.tail.read(buf)
    }
}

/// A writer that counts the bytes written through it: the tar stream's offsets.
pub struct Counting<W> {
    /// The writer underneath.
    pub inner: W,
    /// Bytes written so far.
    pub count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::{ArchiveIndex, EntryKind};

    #[test]
    fn entries_past_the_bound_spill_to_a_file_and_read_back_in_order() {
        let mut recorder = IndexRecorder::default();
        let n = 400_000u64;
        for i in 0..n {
            recorder
                .record(&IndexEntry {
                    path: format!("data/dir{:04}/file{i:07}.bin", i / 1000),
                    kind: EntryKind::File,
                    mode: 0o644,
                    size: 100,
                    mtime: 1_700_000_000,
                    link: None,
                    tar_start: i * 1024,
                    header_blocks: 1,
                })
                .unwrap();
            // Memory never holds more than the bound and one entry.
            assert!(recorder.buf.len() < SPILL_AT + 4096);
        }
        assert!(recorder.spilled() > 0, "nothing spilled");
        let tar_len = n * 1024 + 1024;
        let blocks = vec![10u32; usize::try_from(tar_len.div_ceil(1 << 20)).unwrap()];
        let mut body = Vec::new();
        recorder
            .into_body(1 << 20, &blocks, tar_len)
            .unwrap()
            .read_to_end(&mut body)
            .unwrap();
        let index = ArchiveIndex::decode(body, blocks.len() as u64 * 10).unwrap();
        let mut seen = 0u64;
        for entry in index.entries() {
            let entry = entry.unwrap();
            assert_eq!(entry.tar_start, seen * 1024);
            seen += 1;
        }
        assert_eq!(seen, n);
    }
}
