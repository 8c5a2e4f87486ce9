//! A limit on the tar extension entries that the tar crate reads whole into memory.
//!
//! Before it hands out an entry, the tar crate reads the data of the GNU long name and
//! long link entries (`L`, `K`) and of the PAX extended header (`x`) that describe it,
//! whole and with no limit: a 1.5 GiB long name compresses to a few MB. [`HeaderLimit`]
//! sits between the decompressed stream and the tar reader and follows the stream's
//! framing as the tar crate does (the same header parser, the same checksum, a PAX `size`
//! overriding the next entry's size). The read that completes a header announcing an
//! extension entry (`L`, `K`, `x` or `g`) of more than [`MAX_EXTENSION_LEN`] bytes fails,
//! before the tar crate reads a byte of that entry; so does one that completes any GNU sparse
//! header, whose map of extension blocks the tar crate also reads with no limit.

use std::io::{self, Read};

use crate::error::Error;

/// The largest extension entry read: long names and PAX records of real archives are a
/// few hundred bytes.
pub const MAX_EXTENSION_LEN: u64 = 64 * 1024;

const BLOCK: usize = 512;

/// Passes a tar stream through unchanged, refusing extension entries over
/// [`MAX_EXTENSION_LEN`].
pub(crate) struct HeaderLimit<R> {
    inner: R,
    header: [u8; BLOCK],
    state: State,
    /// The data of the PAX extended header that describes the next entry: its `size`
    /// record is that entry's size, for the tar crate too.
    pax: Option<Vec<u8>>,
    /// The data of the PAX extended header being read.
    capture: Option<Vec<u8>>,
}

enum State {
    /// This many bytes of a header are in `header`.
    Header(usize),
    /// Bytes of an entry's data and padding still to come; the first `capture` of them
    /// go to `capture`.
    Data { left: u64, capture: u64 },
    /// Past the end-of-archive block or a header the tar crate refuses: the tar reader
    /// reads no further header.
    Off,
}

impl<R: Read> HeaderLimit<R> {
    /// The tar stream `inner`, read through the limit.
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            header: [0; BLOCK],
            state: State::Header(0),
            pax: None,
            capture: None,
        }
    }

    /// Follows the framing over `bytes`, the next bytes of the stream.
    fn feed(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.state {
                State::Off => return Ok(()),
                State::Header(n) => {
                    let k = (BLOCK - n).min(bytes.len());
                    self.header[n..n + k].copy_from_slice(&bytes[..k]);
                    bytes = &bytes[k..];
                    self.state = if n + k < BLOCK {
                        State::Header(n + k)
                    } else {
                        self.after_header()?
                    };
                }
                State::Data { left, capture } => {
                    let k = bytes.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let kept = k.min(usize::try_from(capture).unwrap_or(usize::MAX));
                    if let Some(c) = &mut self.capture {
                        c.extend_from_slice(&bytes[..kept]);
                    }
                    bytes = &bytes[k..];
                    let left = left - k as u64;
                    self.state = if left == 0 {
                        self.pax = self.capture.take().or(self.pax.take());
                        State::Header(0)
                    } else {
                        State::Data {
                            left,
                            capture: capture - kept as u64,
                        }
                    };
                }
            }
        }
        Ok(())
    }

    /// What follows the header now in `header`, as the tar crate reads it.
    fn after_header(&mut self) -> io::Result<State> {
        if self.header.iter().all(|b| *b == 0) {
            return Ok(State::Off);
        }
        let header = tar::Header::from_byte_slice(&self.header);
        let sum = self.header[..148]
            .iter()
            .chain(&self.header[156..])
            .fold(8 * 32, |a, b| a + u32::from(*b));
        if header.cksum().ok() != Some(sum) {
            return Ok(State::Off);
        }
        let kind = header.entry_type();
        let extension = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        let Ok(mut size) = header.entry_size() else {
            return Ok(State::Off);
        };
        if extension && size > MAX_EXTENSION_LEN {
            return Err(io::Error::other(Error::corrupt(format!(
                "the archive is corrupt: its tar stream holds a {} of {size} bytes, over the limit of {MAX_EXTENSION_LEN} bytes; refusing it",
                describe(kind)
            ))));
        }
        // The tar crate reads these whole and keeps them for the entry they describe, only
        // in a ustar or GNU header; any other header takes the pending PAX records with it.
        let recognized = header.as_gnu().is_some() || header.as_ustar().is_some();
        let read_whole = recognized
            && (kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions());
        if !extension && let Some(pax_size) = self.pax.as_deref().and_then(pax_size) {
            size = pax_size;
        }
        if !read_whole {
            self.pax = None;
        }
        if kind.is_gnu_sparse() {
            // The tar crate reads the sparse map of such an entry (its header and any
            // number of extension blocks after it) into memory before handing it out, and
            // a restore does not restore sparse files: refused here, before it is parsed.
            let name = String::from_utf8_lossy(&header.path_bytes()).into_owned();
            return Err(io::Error::other(Error::corrupt(format!(
                "the archive is corrupt: its entry {name:?} is a GNU sparse file, which a restore does not read (service-backup never writes one); refusing it"
            ))));
        }
        let capture = if recognized && kind.is_pax_local_extensions() {
            // At most MAX_EXTENSION_LEN, checked above.
            self.capture = Some(Vec::with_capacity(usize::try_from(size).unwrap_or(0)));
            size
        } else {
            0
        };
        let Some(padded) = size.checked_add(BLOCK as u64 - 1) else {
            return Ok(State::Off);
        };
        let left = padded & !(BLOCK as u64 - 1);
        if left == 0 {
            self.pax = self.capture.take().or(self.pax.take());
            return Ok(State::Header(0));
        }
        Ok(State::Data { left, capture })
    }
}

/// The `size` record of PAX extended header data, read as the tar crate reads it: the
/// first `size` record, if every record before it parses.
fn pax_size(data: &[u8]) -> Option<u64> {
    for record in tar::PaxExtensions::new(data) {
        let record = record.ok()?;
        if record.key() == Ok("size") {
            return record.value().ok()?.parse().ok();
        }
    }
    None
}

fn describe(kind: tar::EntryType) -> &'static str {
    if kind.is_gnu_longname() {
        "GNU long name entry"
    } else if kind.is_gnu_longlink() {
        "GNU long link name entry"
    } else if kind.is_pax_local_extensions() {
        "PAX extended header"
    } else {
        "PAX global header"
    }
}

impl<R: Read> Read for HeaderLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.feed(&buf[..n])?;
        Ok(n)
    }
}
