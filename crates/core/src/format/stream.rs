//! The payload: STREAM-BE32 over AES-256-GCM in chunks of 64 KiB
//! (`spec/archive-format.md`, "Payload").
//!
//! Every chunk is full but the last, which carries the last-chunk flag in its nonce and is
//! empty only when the whole payload is. The decryptor reads one byte past each chunk to
//! know whether it is the last, so truncation at a chunk boundary is detected too.

use std::io::{self, Read, Write};

use aead_stream::{NewStream as _, StreamBE32, StreamPrimitive as _};
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit as _;

use super::keys::{KEY_LEN, TAG_LEN};
use crate::error::Error;

/// Plaintext bytes in every chunk but the last.
pub const CHUNK_LEN: usize = 64 * 1024;
/// Stored bytes of a full chunk: plaintext plus tag.
pub const SEALED_CHUNK_LEN: usize = CHUNK_LEN + TAG_LEN;

/// The STREAM nonce prefix: zero, as the payload key is unique to one archive.
const NONCE_PREFIX: [u8; 7] = [0u8; 7];

pub(super) fn stream(payload_key: &[u8; KEY_LEN]) -> StreamBE32<Aes256Gcm> {
    let aead = Aes256Gcm::new(payload_key.into());
    StreamBE32::from_aead(aead, &NONCE_PREFIX.into())
}

/// Encrypts what is written to it into sealed chunks written to `inner`.
pub(crate) struct StreamEncryptor<W: Write> {
    inner: W,
    stream: StreamBE32<Aes256Gcm>,
    counter: u32,
    buf: Vec<u8>,
    /// Set once a write failed: the stream is broken and every later call fails.
    failed: bool,
}

impl<W: Write> StreamEncryptor<W> {
    /// An encryptor under `payload_key` writing to `inner`.
    pub fn new(inner: W, payload_key: &[u8; KEY_LEN]) -> Self {
        Self {
            inner,
            stream: stream(payload_key),
            counter: 0,
            buf: Vec::with_capacity(SEALED_CHUNK_LEN),
            failed: false,
        }
    }

    fn seal_chunk(&mut self, last: bool) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(
                "the archive stream was already broken by an earlier error",
            ));
        }
        let sealed = self.seal_chunk_inner(last);
        if sealed.is_err() {
            self.failed = true;
            self.buf.clear();
        }
        sealed
    }

    fn seal_chunk_inner(&mut self, last: bool) -> io::Result<()> {
        // The last counter value is left for the final chunk, as the reader expects.
        if !last && self.counter == u32::MAX {
            return Err(io::Error::other(Error::new(
                crate::ErrorKind::Usage,
                "the archive is larger than the format's limit of 2^32 chunks (256 TiB)",
            )));
        }
        self.stream
            .encrypt_in_place(self.counter, last, &[], &mut self.buf)
            .map_err(|_| io::Error::other("AES-GCM encryption failed"))?;
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        self.counter = self.counter.wrapping_add(1);
        Ok(())
    }

    /// Seals the last chunk and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.seal_chunk(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for StreamEncryptor<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other(
                "the archive stream was already broken by an earlier error",
            ));
        }
        if data.is_empty() {
            return Ok(0);
        }
        // A full buffer is sealed only once more data arrives: it may be the last chunk.
        if self.buf.len() == CHUNK_LEN {
            self.seal_chunk(false)?;
        }
        let n = data.len().min(CHUNK_LEN - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts sealed chunks read from `inner`; yields plaintext only once authenticated.
pub(crate) struct StreamDecryptor<R: Read> {
    inner: R,
    stream: StreamBE32<Aes256Gcm>,
    counter: u32,
    /// Sealed bytes read ahead (at most one chunk and one byte).
    sealed: Vec<u8>,
    /// Authenticated plaintext not yet handed out.
    plain: Vec<u8>,
    pos: usize,
    done: bool,
    end_checked: bool,
    /// The error that broke the stream: every later read returns it again, and the
    /// buffers were wiped, so nothing unauthenticated can come out after it.
    poisoned: Option<io::Error>,
}

impl<R: Read> StreamDecryptor<R> {
    /// A decryptor under `payload_key` reading from `inner`.
    pub fn new(inner: R, payload_key: &[u8; KEY_LEN]) -> Self {
        Self {
            inner,
            stream: stream(payload_key),
            counter: 0,
            sealed: Vec::with_capacity(SEALED_CHUNK_LEN + 1),
            plain: Vec::with_capacity(SEALED_CHUNK_LEN),
            pos: 0,
            done: false,
            end_checked: false,
            poisoned: None,
        }
    }

    /// Reads until `sealed` holds one chunk and one byte more, or the input ends.
    fn fill(&mut self) -> io::Result<()> {
        let want = SEALED_CHUNK_LEN + 1;
        let mut tmp = [0u8; 16 * 1024];
        while self.sealed.len() < want {
            let room = (want - self.sealed.len()).min(tmp.len());
            match self.inner.read(&mut tmp[..room]) {
                Ok(0) => break,
                Ok(n) => self.sealed.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn open_next(&mut self) -> io::Result<()> {
        self.fill()?;
        let last = self.sealed.len() <= SEALED_CHUNK_LEN;
        let take = self.sealed.len().min(SEALED_CHUNK_LEN);
        if take < TAG_LEN {
            return Err(corrupt(if self.counter == 0 && take == 0 {
                "the archive has a header but no payload (it is truncated)".to_string()
            } else {
                format!(
                    "the archive is truncated in chunk {} ({take} bytes, less than a tag)",
                    self.counter
                )
            }));
        }
        self.plain.clear();
        self.plain.extend_from_slice(&self.sealed[..take]);
        self.sealed.drain(..take);
        self.pos = 0;
        if self
            .stream
            .decrypt_in_place(self.counter, last, &[], &mut self.plain)
            .is_err()
        {
            return Err(corrupt(self.diagnose(last, take)));
        }
        if last {
            if self.plain.is_empty() && self.counter > 0 {
                return Err(corrupt(format!(
                    "chunk {} is an empty final chunk after full ones (the archive was altered)",
                    self.counter
                )));
            }
            self.done = true;
        } else {
            self.counter = self.counter.checked_add(1).ok_or_else(|| {
                corrupt("the archive has more chunks than the format allows".to_string())
            })?;
        }
        Ok(())
    }

    /// Tells truncation at a chunk boundary from damage: the chunk opens as a middle one.
    fn diagnose(&self, last: bool, take: usize) -> String {
        if last && take == SEALED_CHUNK_LEN {
            let mut probe = zeroize::Zeroizing::new(self.plain.clone());
            if self
                .stream
                .decrypt_in_place(self.counter, false, &[], &mut *probe)
                .is_ok()
            {
                return format!(
                    "the archive is truncated after chunk {} (its final chunk is missing)",
                    self.counter
                );
            }
        }
        format!(
            "chunk {} of the archive fails authentication (it was modified, reordered, truncated or belongs to another archive)",
            self.counter
        )
    }
}

impl<R: Read> Read for StreamDecryptor<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.poisoned {
            return Err(again(e));
        }
        while self.pos == self.plain.len() {
            let step = if self.done {
                self.expect_end().map(|()| true)
            } else {
                self.open_next().map(|()| false)
            };
            match step {
                Ok(true) => return Ok(0),
                Ok(false) => {}
                Err(e) => return Err(self.poison(e)),
            }
        }
        let n = out.len().min(self.plain.len() - self.pos);
        out[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl<R: Read> StreamDecryptor<R> {
    /// Breaks the stream for good after `e`: wipes what the buffers hold (ciphertext, or
    /// a chunk decrypted but not authenticated) and keeps `e` for every later read.
    fn poison(&mut self, e: io::Error) -> io::Error {
        use zeroize::Zeroize as _;
        self.plain.zeroize();
        self.sealed.zeroize();
        self.pos = 0;
        let first = again(&e);
        self.poisoned = Some(e);
        first
    }

    /// After the final chunk: refuses any byte that follows it.
    fn expect_end(&mut self) -> io::Result<()> {
        if self.end_checked {
            return Ok(());
        }
        self.end_checked = true;
        self.fill()?;
        if self.sealed.is_empty() {
            Ok(())
        } else {
            Err(corrupt(
                "the archive has data after its final chunk (it was altered)".to_string(),
            ))
        }
    }
}

/// A copy of `e`, with our error inside it if it carries one.
fn again(e: &io::Error) -> io::Error {
    match crate::error::find_in_io(e) {
        Some(ours) => io::Error::new(e.kind(), ours),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

fn corrupt(message: String) -> io::Error {
    io::Error::other(Error::corrupt(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_chunk_wipes_the_buffers_and_every_later_read_fails_the_same() {
        let key = [7u8; KEY_LEN];
        let plain: Vec<u8> = (0..3 * CHUNK_LEN).map(|i| (i % 251) as u8).collect();
        let mut enc = StreamEncryptor::new(Vec::new(), &key);
        enc.write_all(&plain).unwrap();
        let mut sealed = enc.finish().unwrap();
        sealed[SEALED_CHUNK_LEN + 100] ^= 1;
        let mut dec = StreamDecryptor::new(&sealed[..], &key);
        let mut out = vec![0u8; CHUNK_LEN];
        dec.read_exact(&mut out).unwrap();
        assert_eq!(out, plain[..CHUNK_LEN]);
        let first = dec.read(&mut out).unwrap_err().to_string();
        assert!(
            first.contains("chunk 1 of the archive fails authentication"),
            "{first}"
        );
        assert!(dec.plain.is_empty() && dec.sealed.is_empty());
        // Before, the next read handed out the chunk that failed.
        for _ in 0..3 {
            let again = dec.read(&mut out[..1]).unwrap_err();
            assert_eq!(again.to_string(), first);
            assert!(crate::error::find_in_io(&again).is_some());
        }

        // A failure of the input poisons the same way.
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "reset by peer",
                ))
            }
        }
        let mut dec = StreamDecryptor::new(Broken, &key);
        let err = dec.read(&mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        let again = dec.read(&mut out).unwrap_err();
        assert_eq!(
            (again.kind(), again.to_string()),
            (err.kind(), err.to_string())
        );
    }
}
