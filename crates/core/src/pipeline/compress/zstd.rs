//! zstd frames: each block is one frame with its own XXH64 checksum, compressed by a
//! context of its thread that is reused from block to block.

use std::io;

/// A zstd context at `level`, which is within zstd's levels, writing checksummed frames.
pub(super) fn compressor(level: i32) -> io::Result<zstd::bulk::Compressor<'static>> {
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    compressor.include_checksum(true)?;
    Ok(compressor)
}

/// Writes one block of `data` into `out` as one frame.
pub(super) fn compress_frame(
    data: &[u8],
    compressor: &mut zstd::bulk::Compressor<'static>,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    // The frame is written from the start of `out`, within its capacity.
    out.clear();
    out.reserve(zstd::zstd_safe::compress_bound(data.len()));
    compressor.compress_to_buffer(data, out).map(drop)
}

/// A complete zstd stream of no bytes, at `level`.
pub(super) fn empty_stream(level: i32) -> io::Result<Vec<u8>> {
    zstd::bulk::compress(&[], level)
}
