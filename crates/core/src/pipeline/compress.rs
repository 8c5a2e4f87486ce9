//! gzip on several threads: one standard gzip member whose deflate stream is cut into
//! independent blocks, each deflated on a small thread pool and written in order.
//!
//! Each block ends with a sync flush, so the blocks simply follow each other in one deflate
//! stream; the CRC-32 and length of the whole input are combined into the one trailer. Any
//! gzip reader (`gzip -d`, `tar xz`, a single-member decoder) reads the result. Blocks do
//! not share a dictionary, which costs a fraction of a percent of ratio at 1 MiB blocks.
//!
//! Memory is bounded: the writer keeps one block being filled, and at most
//! `2 × threads` blocks queued for compression and `2 × threads` results waiting to be
//! written, so about `block size × threads × 4` bytes at most.

use std::io::{self, Write};
use std::thread::Scope;

use gzp::deflate::Gzip;
use gzp::par::compress::{ParCompress, ParCompressBuilder};
use gzp::{Compression, ZWriter as _};

/// Bytes of input deflated as one independent block.
pub const BLOCK_SIZE: usize = 1024 * 1024;

/// Most compression threads used, whatever the machine offers.
const MAX_THREADS: usize = 4;

/// How many threads to compress on: the available cores, at least one, at most a few.
pub fn compression_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, MAX_THREADS)
}

/// A gzip writer that compresses on `threads` threads of `scope`, plus one thread that
/// writes the compressed blocks, in order, to the inner writer.
///
/// `flush` does nothing (a flush would cut a short block and cost ratio); call
/// [`ParallelGzip::finish`] to end the stream and get the inner writer back. After an
/// error every later write fails with the same kind of error, and `finish` reports it.
pub struct ParallelGzip<'scope, W: Write + Send + 'scope> {
    inner: Option<ParCompress<'scope, Gzip, W>>,
    failed: Option<io::ErrorKind>,
}

impl<'scope, W: Write + Send + 'scope> ParallelGzip<'scope, W> {
    /// Starts the threads; `level` is the gzip level, clamped to 1..=9.
    pub fn new<'env>(
        out: W,
        level: u32,
        threads: usize,
        scope: &'scope Scope<'scope, 'env>,
    ) -> io::Result<Self> {
        let inner = ParCompressBuilder::<Gzip>::new()
            .num_threads(threads.max(1))
            .and_then(|b| b.buffer_size(BLOCK_SIZE))
            .map_err(io::Error::other)?
            .compression_level(Compression::new(level.clamp(1, 9)))
            .from_borrowed_writer(out, scope);
        Ok(Self {
            inner: Some(inner),
            failed: None,
        })
    }

    /// Compresses what is buffered, writes the trailer, waits for the threads and returns
    /// the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if let Some(kind) = self.failed {
            return Err(io::Error::new(kind, "the gzip stream failed earlier"));
        }
        let mut inner = self.inner.take().expect("finish is called once");
        inner.finish().map_err(gzp_error)
    }
}

impl<'scope, W: Write + Send + 'scope> Write for ParallelGzip<'scope, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(kind) = self.failed {
            return Err(io::Error::new(kind, "the gzip stream failed earlier"));
        }
        let inner = self.inner.as_mut().expect("not written after finish");
        inner
            .write(data)
            .inspect_err(|e| self.failed = Some(e.kind()))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'scope, W: Write + Send + 'scope> Drop for ParallelGzip<'scope, W> {
    fn drop(&mut self) {
        // After a failed write the pipeline is already torn down. Otherwise (an error
        // elsewhere ended the archive early) end it here and ignore how that goes, rather
        // than let the library's own drop panic on an error.
        if self.failed.is_none()
            && let Some(mut inner) = self.inner.take()
        {
            let _ = inner.finish();
        }
    }
}

fn gzp_error(e: gzp::GzpError) -> io::Error {
    match e {
        gzp::GzpError::Io(e) => e,
        other => io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::process::{Command, Stdio};

    use super::*;

    fn compress(data: &[u8], level: u32, threads: usize) -> Vec<u8> {
        std::thread::scope(|scope| {
            let mut gz = ParallelGzip::new(Vec::new(), level, threads, scope).unwrap();
            // Odd-sized writes, as tar makes them.
            for piece in data.chunks(10_007) {
                gz.write_all(piece).unwrap();
            }
            gz.finish().unwrap()
        })
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Text that compresses, then bytes that do not: spans many blocks.
    fn mixed(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut n = 0u64;
        while out.len() < len / 2 {
            out.extend_from_slice(
                format!("INSERT INTO t VALUES ({n}, 'row {n}', {});\n", n * 7).as_bytes(),
            );
            n += 1;
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    #[test]
    fn round_trip_at_levels_1_6_9() {
        let data = mixed(3 * BLOCK_SIZE + 12_345);
        for level in [1, 6, 9] {
            let gz = compress(&data, level, 2);
            assert_eq!(gunzip(&gz), data, "level {level}");
        }
    }

    #[test]
    fn empty_input_is_a_valid_gzip_stream() {
        let gz = compress(b"", 6, 2);
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        assert!(gunzip(&gz).is_empty());
    }

    #[test]
    fn many_blocks_on_one_or_several_threads() {
        let data = mixed(20 * BLOCK_SIZE + 1);
        for threads in [1, 3] {
            let gz = compress(&data, 6, threads);
            assert_eq!(gunzip(&gz), data, "{threads} threads");
        }
        // One member: a multi-member reader sees nothing more than the single-member one.
        let gz = compress(&data, 6, 2);
        let mut multi = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut multi)
            .unwrap();
        assert_eq!(multi, data);
    }

    #[test]
    fn ratio_is_close_to_a_single_stream() {
        let data = mixed(8 * BLOCK_SIZE);
        let par = compress(&data, 6, 2).len();
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap().len();
        assert!(
            par * 100 <= single * 101,
            "parallel {par} vs single {single}"
        );
    }

    #[test]
    fn system_gzip_accepts_the_output() {
        let data = mixed(5 * BLOCK_SIZE + 77);
        for gz in [compress(&data, 6, 2), compress(b"", 6, 2)] {
            let mut child = match Command::new("gzip")
                .args(["-t", "-"])
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
            {
                Ok(child) => child,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    eprintln!("no gzip on this machine: skipped");
                    return;
                }
                Err(e) => panic!("cannot run gzip: {e}"),
            };
            child.stdin.take().unwrap().write_all(&gz).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "gzip -t: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn a_failing_writer_fails_the_stream_without_panicking() {
        struct Failing;
        impl io::Write for Failing {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "gone"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let data = mixed(16 * BLOCK_SIZE);
        let failed = std::thread::scope(|scope| {
            let mut gz = ParallelGzip::new(Failing, 6, 2, scope).unwrap();
            let written = gz.write_all(&data);
            let second = gz.write_all(b"more");
            let finished = gz.finish();
            (written.is_err() || finished.is_err()) && (written.is_ok() || second.is_err())
        });
        assert!(failed);
    }
}
