//! Readers and writers that count and hash (SHA-256) the bytes passing through them: the
//! stored object's size and checksum, on backup and on restore.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::progress::Progress;

/// Counts and hashes what passes through to the inner writer.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The inner writer, the byte count and the SHA-256 of what was written.
    pub fn finish(self) -> (W, u64, [u8; 32]) {
        (self.inner, self.count, self.hasher.finalize().into())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hasher.update(&data[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts and hashes what is read through it, and reports progress.
pub struct HashingReader<'a, R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    progress: &'a dyn Progress,
}

impl<'a, R: Read> HashingReader<'a, R> {
    /// Wraps `inner`, reporting every byte read to `progress`.
    pub fn new(inner: R, progress: &'a dyn Progress) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
            progress,
        }
    }

    /// The byte count and the SHA-256 of what was read.
    pub fn finish(self) -> (u64, [u8; 32]) {
        (self.count, self.hasher.finalize().into())
    }
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }
}
