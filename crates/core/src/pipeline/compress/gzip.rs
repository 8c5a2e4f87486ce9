//! gzip members (RFC 1952): each run of a block is one member of its own, compressed by
//! libdeflate or, when judged incompressible ([`super::entropy`]), written as stored deflate
//! blocks. Each member's header records the member's length in an extra field, so that a
//! restore finds where the next member starts without inflating this one, and inflates
//! members on several threads (`pipeline::decompress`).

use std::io;

use libdeflater::{CompressionLvl, Compressor};

use super::entropy::runs;

/// The subfield ID (SI1, SI2) of the extra field that records a member's length.
pub(crate) const MEMBER_LENGTH_ID: [u8; 2] = *b"SB";

/// Where the member's length, 4 bytes little-endian, stands in [`HEADER`].
pub(crate) const MEMBER_LENGTH_AT: usize = 16;

/// The header of every member: deflate, FEXTRA, no mtime, no extra flags, OS unknown; then
/// an extra field of 8 bytes, one subfield [`MEMBER_LENGTH_ID`] of 4 bytes: the whole
/// member's length, from its first header byte to its last trailer byte, little-endian
/// (zero here, written once the member is complete).
pub(crate) const HEADER: [u8; 20] = [
    0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 8, 0, b'S', b'B', 4, 0, 0, 0, 0, 0,
];

/// The member of an empty stream: a header without the length field, a final empty deflate block (fixed Huffman
/// codes, end of block), and a CRC-32 and length of zero.
pub(super) const EMPTY_MEMBER: [u8; 20] = [
    0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// The most bytes one stored deflate block holds.
const MAX_STORED_BLOCK: usize = 65_535;

/// A libdeflate compressor at gzip `level`, which is within gzip's levels.
pub(super) fn compressor(level: i32) -> io::Result<Compressor> {
    let level = CompressionLvl::new(level)
        .map_err(|e| io::Error::other(format!("gzip level {level}: {e:?}")))?;
    Ok(Compressor::new(level))
}

/// Writes `data` to `out` as gzip members, one per run: runs of compressible pieces
/// compressed by `compressor`, runs of incompressible ones as stored deflate blocks.
pub(super) fn compress_block(
    data: &[u8],
    compressor: &mut Compressor,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    for (start, end, stored) in runs(data) {
        let run = &data[start..end];
        let member = out.len();
        out.extend_from_slice(&HEADER);
        if stored {
            write_stored(run, out);
        } else {
            let at = out.len();
            out.resize(at + compressor.deflate_compress_bound(run.len()), 0);
            let n = compressor
                .deflate_compress(run, &mut out[at..])
                .map_err(io::Error::other)?;
            out.truncate(at + n);
        }
        out.extend_from_slice(&crc32fast::hash(run).to_le_bytes());
        // ISIZE is the length modulo 2^32, as gzip defines it; a run is at most a block.
        out.extend_from_slice(
            &u32::try_from(run.len())
                .expect("a block fits")
                .to_le_bytes(),
        );
        // A run is at most a block, so its member is far below 4 GiB.
        let len = u32::try_from(out.len() - member).expect("a member fits");
        out[member + MEMBER_LENGTH_AT..member + MEMBER_LENGTH_AT + 4]
            .copy_from_slice(&len.to_le_bytes());
    }
    Ok(())
}

/// Writes non-empty `data` as a whole deflate stream of stored (uncompressed) blocks, the
/// last one final.
fn write_stored(data: &[u8], out: &mut Vec<u8>) {
    let count = data.len().div_ceil(MAX_STORED_BLOCK);
    for (i, chunk) in data.chunks(MAX_STORED_BLOCK).enumerate() {
        let len = u16::try_from(chunk.len()).expect("a stored block holds at most 65535 bytes");
        // BFINAL (set on the last block), BTYPE = 00 (stored), padded to the byte; then LEN
        // and its complement.
        out.push(u8::from(i + 1 == count));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
}
