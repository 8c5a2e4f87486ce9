//! What a worker does with a block: each gzip member inflated by libdeflate, each zstd
//! frame by a zstd context of the worker's, into one buffer of the block's decompressed
//! size. A block that fails is decoded again by the decoder of the single-thread restore,
//! so that its bytes before the damage and its error are the ones that restore gives.

use std::io::{self, Read};

use super::split::{Codec, Job, Part};
use super::{MAX_PART_PLAIN, ZSTD_WINDOW_LOG_MAX, serial_decoder};
use crate::compression::Algorithm;

/// Decompresses blocks into buffers; one per worker.
pub(crate) trait Inflate: Send {
    /// Writes what `job` decompresses to into `out`, which is empty; on an error, `out`
    /// holds the bytes that come before it.
    fn inflate(&mut self, job: &Job, out: &mut Vec<u8>) -> io::Result<()>;
}

/// The decompressors of one worker.
pub(crate) struct Inflater {
    gzip: libdeflater::Decompressor,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl Inflater {
    /// A worker's decompressors (zstd's context is made on its first frame).
    pub(crate) fn new() -> Self {
        Self {
            gzip: libdeflater::Decompressor::new(),
            zstd: None,
        }
    }

    /// Decompresses every part into `out`, sized to hold them; `false` at the first one
    /// that does not decompress to exactly what it says.
    fn inflate_parts(&mut self, job: &Job, out: &mut [u8]) -> io::Result<bool> {
        let (mut src, mut dst) = (&job.data[..], out);
        for &Part { len, plain } in &job.parts {
            let (part, rest_in) = src.split_at(len);
            let (into, rest_out) = dst.split_at_mut(plain);
            let ok = match job.codec {
                Codec::Gzip => self.gunzip(part, into),
                Codec::Zstd => self.unzstd(part, into)?,
                Codec::Plain => false,
            };
            if !ok {
                return Ok(false);
            }
            (src, dst) = (rest_in, rest_out);
        }
        Ok(true)
    }

    /// Inflates one member into `into`, exactly its size. libdeflate checks the CRC-32
    /// and length that follow the member's deflate data, wherever it ends; they must also
    /// be the ones at the end its length field gives, so that a field that runs past the
    /// member (whose bytes libdeflate would skip) reads as damage, as the CRC-32 makes any
    /// other damage read.
    fn gunzip(&mut self, member: &[u8], into: &mut [u8]) -> bool {
        let Some(trailer) = member.len().checked_sub(8).and_then(|at| member.get(at..)) else {
            return false;
        };
        let crc = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
        match self.gzip.gzip_decompress(member, into) {
            Ok(n) if n == into.len() => crc32fast::hash(into) == crc,
            _ => false,
        }
    }

    /// Decompresses one frame into `into`, exactly its content size; zstd checks its
    /// checksum.
    fn unzstd(&mut self, frame: &[u8], into: &mut [u8]) -> io::Result<bool> {
        if self.zstd.is_none() {
            let mut z = zstd::bulk::Decompressor::new()?;
            z.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            self.zstd = Some(z);
        }
        let zstd = self.zstd.as_mut().expect("made above");
        Ok(matches!(zstd.decompress_to_buffer(frame, into), Ok(n) if n == into.len()))
    }
}

impl Inflate for Inflater {
    fn inflate(&mut self, job: &Job, out: &mut Vec<u8>) -> io::Result<()> {
        if job.codec == Codec::Plain {
            out.extend_from_slice(&job.data);
            return Ok(());
        }
        out.resize(job.plain_len(), 0);
        if self.inflate_parts(job, out)? {
            return Ok(());
        }
        out.clear();
        Err(decode_in_sequence(job, out))
    }
}

/// Decodes a block that failed with the decoder of the single-thread restore, into `out`
/// up to its error; returns that error.
fn decode_in_sequence(job: &Job, out: &mut Vec<u8>) -> io::Error {
    let algorithm = match job.codec {
        Codec::Zstd => Algorithm::Zstd,
        Codec::Gzip | Codec::Plain => Algorithm::Gzip,
    };
    let mut decoder = match serial_decoder(algorithm, &job.data[..]) {
        Ok(d) => d,
        Err(e) => return e,
    };
    // The block's damage may make more than it says; past its parts' size and one more
    // part's worth, the rest would only be thrown away with it.
    let limit = job.plain_len() + MAX_PART_PLAIN;
    match (&mut decoder).take(limit as u64).read_to_end(out) {
        Err(e) => e,
        Ok(_) => io::Error::new(
            io::ErrorKind::InvalidData,
            "a gzip member's or zstd frame's recorded length does not match its data",
        ),
    }
}
