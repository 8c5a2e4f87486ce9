//! Decompression of a restore or verify, on every core: the decrypted payload is cut into
//! blocks of whole gzip members or zstd frames where they end ([`split`]), a fixed pool of
//! workers decompresses the blocks ([`inflate`]), and a reader hands the tar stream on in
//! order ([`pool`]). Decryption stays in order on the thread that cuts the blocks (the
//! AEAD stream is sequential), and tar and the file writes on the caller's.
//!
//! A stream whose first member or frame cannot be walked without decompressing it (every
//! gzip archive written before members recorded their length, a stream of another tool)
//! is decompressed as before: by one decoder on a stage thread of its own. So is every
//! stream when [`THREADS_ENV`] is 1, a diagnostic to compare against.

mod inflate;
mod lookahead;
mod pool;
mod split;
#[cfg(test)]
mod tests;

use std::io::{self, BufReader, Read};
use std::thread::Scope;

use flate2::read::MultiGzDecoder;

use super::compress::BLOCK_SIZE;
use super::stage::{StageReader, stage};
use crate::compression::Algorithm;

/// The environment variable that sets how many threads decompress a restore or verify;
/// `1` is the single-thread decompression of before (a diagnostic).
pub const THREADS_ENV: &str = "SERVICE_BACKUP_RESTORE_THREADS";

/// Most decompression workers, whatever the machine offers: memory grows with them.
const MAX_THREADS: usize = 16;

/// The most bytes a member or frame may hold to be decompressed by a worker; larger ones
/// (never written by our backups) are decompressed in sequence.
pub(crate) const MAX_PART_BYTES: usize = 2 * BLOCK_SIZE + BLOCK_SIZE / 16;

/// The most bytes a member or frame may decompress to, to be decompressed by a worker.
pub(crate) const MAX_PART_PLAIN: usize = 2 * BLOCK_SIZE;

/// What a block's buffer is first made to hold.
const GROUP_CAPACITY: usize = BLOCK_SIZE + BLOCK_SIZE / 16;

/// The largest zstd window read, as a power of two: twice a compression block.
pub(crate) const ZSTD_WINDOW_LOG_MAX: u32 = 21;

/// The largest zstd window read, in bytes.
const MAX_WINDOW: u64 = 1 << ZSTD_WINDOW_LOG_MAX;

/// How many threads decompress a restore: [`THREADS_ENV`] when it is a positive number,
/// otherwise one per core (at most a few more than most machines have).
pub fn restore_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    std::env::var(THREADS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(cores)
        .min(MAX_THREADS)
}

/// The decompressed tar stream of a restore.
pub(crate) enum Decompressed<'scope> {
    /// Decompressed by one decoder on a stage thread.
    Staged(StageReader),
    /// Decompressed in blocks by a pool of workers.
    Parallel(pool::OrderedReader<'scope>),
}

impl Read for Decompressed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Staged(r) => r.read(buf),
            Self::Parallel(r) => r.read(buf),
        }
    }
}

/// Decompresses `input`, a stream of `algorithm` whose first bytes are `first` (already
/// read from it), on `threads` threads of `scope`: in blocks on a pool of workers when its
/// first member or frame can be walked and `threads` is more than one, else by one decoder
/// on a stage thread, reading `input` on another.
pub(crate) fn decompress<'scope, R: Read + Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    algorithm: Algorithm,
    first: Vec<u8>,
    input: R,
    threads: usize,
) -> io::Result<Decompressed<'scope>> {
    let parallel = threads > 1 && split::splittable(algorithm, &first);
    let input = io::Cursor::new(first).chain(input);
    if parallel {
        let inflaters = (0..threads).map(|_| inflate::Inflater::new()).collect();
        let source = split::Splitter::new(input, algorithm);
        return pool::start(scope, source, inflaters).map(Decompressed::Parallel);
    }
    let decoder = serial_decoder(algorithm, stage(scope, input))?;
    Ok(Decompressed::Staged(stage(scope, decoder)))
}

/// Bytes of a stream [`decompress`] wants to have read first: enough for the header of a
/// member or frame.
pub(crate) const FIRST_LEN: usize = 32;

/// The decoder of the single-thread restore: every member of a gzip stream, each with its
/// CRC-32 and length checked, or every frame of a zstd stream, each with its checksum.
pub(crate) fn serial_decoder<'a, R: Read + Send + 'a>(
    algorithm: Algorithm,
    input: R,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match algorithm {
        Algorithm::Gzip => Box::new(MultiGzDecoder::new(input)),
        Algorithm::Zstd => Box::new(ZstdReader::new(input)?),
    })
}

/// A zstd decoder whose own errors (a bad checksum, a damaged or cut frame) read as
/// damaged data, while those of its input pass as they are.
struct ZstdReader<'a, R: Read> {
    decoder: zstd::stream::read::Decoder<'a, BufReader<Watched<R>>>,
}

impl<R: Read> ZstdReader<'_, R> {
    fn new(input: R) -> io::Result<Self> {
        let mut decoder = zstd::stream::read::Decoder::new(Watched {
            inner: input,
            failed: false,
        })?;
        // Our frames hold a block each and need a window of at most that; refusing a
        // larger one keeps a foreign or forged frame from taking more memory.
        decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
        Ok(Self { decoder })
    }
}

impl<R: Read> Read for ZstdReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.decoder.read(buf).map_err(|e| {
            if self.decoder.get_ref().get_ref().failed || e.kind() != io::ErrorKind::Other {
                e
            } else {
                io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}"))
            }
        })
    }
}

/// A reader that remembers whether it ever failed.
struct Watched<R> {
    inner: R,
    failed: bool,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf);
        self.failed |= read.is_err();
        read
    }
}
