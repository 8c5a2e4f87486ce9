//! Stage threads: a reader run on a thread of its own, handing the next stage chunks of
//! [`STAGE_CHUNK`] bytes through a short queue, so that the stages of a restore overlap.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::Scope;

/// Bytes one stage of a restore hands to the next at a time.
pub const STAGE_CHUNK: usize = 256 * 1024;

/// Chunks queued between two stages, beyond the one each side holds.
const STAGE_QUEUE: usize = 4;

/// What a stage sends: a buffer and how many of its bytes are data, or the error that
/// ended the stage.
type Piece = io::Result<(Vec<u8>, usize)>;

/// Runs `inner` on a thread of `scope`, read [`STAGE_CHUNK`] bytes at a time into a short
/// queue; the returned reader yields the same bytes and errors in the same order. Dropping
/// the reader stops the thread at its next chunk.
pub(crate) fn stage<'scope, R: Read + Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    mut inner: R,
) -> StageReader {
    let (tx, rx) = sync_channel::<Piece>(STAGE_QUEUE);
    let (back, spare) = channel::<Vec<u8>>();
    scope.spawn(move || fill_stage(&mut inner, &tx, &spare));
    StageReader {
        rx,
        back,
        current: Vec::new(),
        len: 0,
        pos: 0,
    }
}

/// The thread of a stage: reads `inner` to its end or first error into `tx`, reusing the
/// buffers the reader gave back.
fn fill_stage<R: Read>(inner: &mut R, tx: &SyncSender<Piece>, spare: &Receiver<Vec<u8>>) {
    loop {
        let mut buf = spare.try_recv().unwrap_or_else(|_| vec![0; STAGE_CHUNK]);
        let mut len = 0;
        while len < buf.len() {
            match inner.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // What came before the error goes first, as a reader in line would
                    // have yielded it.
                    if len > 0 && tx.send(Ok((buf, len))).is_err() {
                        return;
                    }
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        if len == 0 || tx.send(Ok((buf, len))).is_err() {
            return; // the end, or the reader is gone
        }
    }
}

/// The reading end of a [`stage`].
pub(crate) struct StageReader {
    rx: Receiver<Piece>,
    back: Sender<Vec<u8>>,
    current: Vec<u8>,
    len: usize,
    pos: usize,
}

impl Read for StageReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pos == self.len {
            if !self.current.is_empty() {
                let _ = self.back.send(std::mem::take(&mut self.current));
            }
            match self.rx.recv() {
                Ok(Ok((chunk, len))) => (self.current, self.len, self.pos) = (chunk, len, 0),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.len - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A reader that hands out one byte per read, as a slow network stream may.
    pub(crate) struct Trickle<'a>(pub(crate) &'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    /// Yields `data`, then fails.
    struct FailsAfter<'a>(&'a [u8]);

    impl Read for FailsAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "broken here"));
            }
            let n = buf.len().min(self.0.len()).min(1000);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_stage_passes_every_byte_then_the_error_in_order() {
        let data: Vec<u8> = (0..3 * STAGE_CHUNK + 17).map(|i| (i % 251) as u8).collect();
        std::thread::scope(|scope| {
            let mut out = Vec::new();
            let mut reader = stage(scope, FailsAfter(&data));
            // An empty read neither waits nor takes a chunk.
            assert_eq!(reader.read(&mut []).unwrap(), 0);
            let err = reader.read_to_end(&mut out).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(out == data, "{} bytes of {}", out.len(), data.len());

            let mut out = Vec::new();
            stage(scope, Trickle(&data[..5000]))
                .read_to_end(&mut out)
                .unwrap();
            assert!(out == data[..5000]);

            // A reader dropped half-way stops its thread (the scope would hang otherwise).
            let mut first = [0u8; 10];
            let mut reader = stage(scope, io::repeat(7).take(64 * STAGE_CHUNK as u64));
            reader.read_exact(&mut first).unwrap();
            drop(reader);
        });
    }
}
