//! A reader that can look a few bytes ahead, for the boundary finder: it peeks at a member's
//! or frame's header before deciding what to do with it, and moves whole members into a
//! block's buffer with as few copies as it can.

use std::io::{self, BufRead, Read};

/// Bytes read from the inner reader at a time when filling the look-ahead buffer.
const READ_AHEAD: usize = 64 * 1024;

/// A reader with a buffer in front that [`Lookahead::peek`] fills as far as asked.
pub(crate) struct Lookahead<R> {
    inner: R,
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    start: usize,
}

impl<R: Read> Lookahead<R> {
    /// Reads `inner` through a look-ahead buffer.
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            start: 0,
        }
    }

    /// The next `n` bytes without consuming them, or fewer at the end of the input.
    pub(crate) fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.buf.len() - self.start < n {
            self.buf.drain(..self.start);
            self.start = 0;
            while self.buf.len() < n {
                let at = self.buf.len();
                self.buf.resize(at + (n - at).max(READ_AHEAD), 0);
                match read_some(&mut self.inner, &mut self.buf[at..]) {
                    Ok(k) => {
                        self.buf.truncate(at + k);
                        if k == 0 {
                            break;
                        }
                    }
                    Err(e) => {
                        self.buf.truncate(at);
                        return Err(e);
                    }
                }
            }
        }
        let end = self.buf.len().min(self.start + n);
        Ok(&self.buf[self.start..end])
    }

    /// Moves the next `n` bytes to the end of `out`; fewer only at the end of the input.
    /// Returns how many were moved.
    pub(crate) fn move_into(&mut self, n: usize, out: &mut Vec<u8>) -> io::Result<usize> {
        let buffered = n.min(self.buf.len() - self.start);
        out.extend_from_slice(&self.buf[self.start..self.start + buffered]);
        self.start += buffered;
        let mut moved = buffered;
        if moved < n {
            // Straight from the inner reader into `out`, past the look-ahead buffer.
            let at = out.len();
            out.resize(at + (n - moved), 0);
            let mut filled = at;
            while filled < out.len() {
                match read_some(&mut self.inner, &mut out[filled..]) {
                    Ok(0) => break,
                    Ok(k) => filled += k,
                    Err(e) => {
                        out.truncate(filled);
                        return Err(e);
                    }
                }
            }
            out.truncate(filled);
            moved += filled - at;
        }
        Ok(moved)
    }
}

/// One read, retried when interrupted.
fn read_some<R: Read>(inner: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match inner.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

impl<R: Read> Read for Lookahead<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.buf.len() {
            return read_some(&mut self.inner, out);
        }
        let n = out.len().min(self.buf.len() - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

impl<R: Read> BufRead for Lookahead<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            self.peek(READ_AHEAD)
        } else {
            Ok(&self.buf[self.start..])
        }
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::stage::tests::Trickle;

    #[test]
    fn peeks_take_and_reads_see_the_bytes_once_in_order() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let mut la = Lookahead::new(Trickle(&data));
        assert_eq!(la.peek(3).unwrap(), &data[..3]);
        assert_eq!(la.peek(10).unwrap(), &data[..10], "a peek consumes nothing");
        let mut out = vec![9];
        assert_eq!(la.move_into(5, &mut out).unwrap(), 5);
        assert_eq!(out, [&[9][..], &data[..5]].concat());
        // More than is buffered: the rest comes straight from the inner reader.
        out.clear();
        assert_eq!(la.move_into(100_000, &mut out).unwrap(), 100_000);
        assert!(out == data[5..100_005]);
        let mut rest = Vec::new();
        la.read_to_end(&mut rest).unwrap();
        assert!(rest == data[100_005..]);
        // At the end: short peeks and takes.
        assert!(la.peek(4).unwrap().is_empty());
        assert_eq!(la.move_into(4, &mut out).unwrap(), 0);
    }
}
