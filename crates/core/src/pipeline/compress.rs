//! gzip or zstd on several threads: the input is cut into blocks, each compressed on a small
//! pool of threads into gzip members or a zstd frame of its own, and these are written in
//! order by one more thread.
//!
//! A gzip file may hold several members one after the other (RFC 1952, section 2.2), and
//! every gzip reader (`gzip -d`, `tar xz`, flate2's `MultiGzDecoder`) reads them as one
//! stream. Each member carries its own CRC-32 and length, so the threads need nothing from
//! each other: a block is compressed with libdeflate, a whole buffer at a time, without the
//! previous block as a dictionary. That costs a little ratio at the start of each block
//! (see [`BLOCK_SIZE`]) and buys libdeflate, a third faster than zlib at the same level and
//! a few percent smaller.
//!
//! Data that does not compress (media, archives, encrypted files) is written as stored
//! deflate blocks instead of being run through the compressor for nothing: each 4 KiB
//! piece is judged by the entropy of its bytes, and a run of at least 8 KiB of pieces at
//! or above [`STORED_ENTROPY_BITS`] bits per byte is stored (deflate's Huffman coding could
//! win at most a percent or so there). Each run of a block, stored or compressed, is one
//! member. That is what `gzip -6` ends up writing for such data too, at a fraction of the
//! CPU.
//!
//! zstd works the same way: a zstd stream may hold several frames one after the other, and
//! each block is one frame with its own XXH64 checksum, compressed by a context of its
//! thread that is reused from block to block. zstd tells incompressible data on its own, so
//! no piece is judged there.
//!
//! Memory is bounded: at most `2 × threads + 2` blocks are between the writer and the
//! output (being filled, queued, compressed or waiting for their turn), each at most
//! [`BLOCK_SIZE`] in and a little more out, and their buffers are reused from block to
//! block rather than allocated anew.

mod entropy;
mod gzip;
mod parallel;
#[cfg(test)]
mod tests;
mod zstd;

use std::io;

use crate::compression::{Algorithm, ZSTD_MAGIC};

pub use entropy::STORED_ENTROPY_BITS;
#[cfg(test)]
pub(crate) use gzip::MEMBER_LENGTH_AT;
pub(crate) use gzip::MEMBER_LENGTH_ID;
pub use parallel::ParallelCompressor;
pub(crate) use parallel::Pool;

/// Bytes of input compressed as one block by one thread.
///
/// Each block starts without a dictionary, which costs ratio: on the benchmark's dump-like
/// text, blocks of 256 KiB come out 1 % larger than one stream, of 1 MiB 0.25 %, of 2 MiB
/// 0.12 %, of 4 MiB 0.06 %; with up to `2 × threads + 2` blocks in flight, each MiB more per
/// block costs several MiB of memory, so 1 MiB it is.
pub const BLOCK_SIZE: usize = 1024 * 1024;

/// The parts of one block that gzip compression deflates, as byte ranges of `data`; the
/// rest it stores (judged incompressible). The benchmark's deflate limit deflates exactly
/// these, on every core, to show how close a backup comes to the machine's limit.
pub fn deflated_ranges(data: &[u8]) -> Vec<std::ops::Range<usize>> {
    entropy::runs(data)
        .into_iter()
        .filter(|&(_, _, stored)| !stored)
        .map(|(start, end, _)| start..end)
        .collect()
}

/// Most compression threads used, whatever the machine offers.
const MAX_THREADS: usize = 4;

/// How many threads to compress on: the available cores, at least one, at most a few.
pub fn compression_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, MAX_THREADS)
}

/// What a compression thread compresses with.
enum Codec {
    /// libdeflate at a gzip level.
    Gzip(Box<libdeflater::Compressor>),
    /// A zstd context, writing checksummed frames.
    Zstd(::zstd::bulk::Compressor<'static>),
}

impl Codec {
    /// A compressor for `algorithm` at `level`, which is within its levels.
    fn new(algorithm: Algorithm, level: i32) -> io::Result<Self> {
        match algorithm {
            Algorithm::Gzip => Ok(Self::Gzip(Box::new(gzip::compressor(level)?))),
            Algorithm::Zstd => Ok(Self::Zstd(zstd::compressor(level)?)),
        }
    }

    /// Writes the compression of one block of `data` into `out`, which is empty.
    fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Self::Gzip(compressor) => gzip::compress_block(data, compressor, out),
            Self::Zstd(compressor) => zstd::compress_frame(data, compressor, out),
        }
    }
}

/// What the output thread writes at the ends of a stream: the whole of an empty one, and
/// what stands after an abandoned one.
struct Ends {
    /// A complete stream of no bytes.
    empty: Vec<u8>,
    /// The start of a member or frame that never comes, which every reader reports as a
    /// truncated stream.
    unfinished: &'static [u8],
}

impl Ends {
    /// The ends of a stream of `algorithm` at `level`.
    fn of(algorithm: Algorithm, level: i32) -> io::Result<Self> {
        Ok(match algorithm {
            Algorithm::Gzip => Self {
                empty: gzip::EMPTY_MEMBER.to_vec(),
                unfinished: &gzip::HEADER,
            },
            Algorithm::Zstd => Self {
                empty: zstd::empty_stream(level)?,
                unfinished: &ZSTD_MAGIC,
            },
        })
    }
}
