//! How the index travels in the compressed stream, after the compressed tar stream, in a
//! form every decompressor skips: gzip members whose deflate data is empty and whose extra
//! field carries the bytes, or zstd skippable frames. The footer comes last, in a carrier
//! of a fixed size, so that a reader finds it at a fixed distance from the payload's end.

use std::io::{self, Read, Write};

use super::{FOOTER_LEN, Footer, bad};
use crate::compression::Algorithm;
use crate::error::Result;

/// Body bytes per carrier: well inside gzip's 64 KiB extra field.
pub const PIECE_LEN: usize = 60 * 1024;

/// gzip subfield ids: a piece of the body, and the footer.
const PIECE_ID: [u8; 2] = *b"SI";
const FOOTER_ID: [u8; 2] = *b"SF";
/// zstd skippable frame magic numbers (RFC 8878, 3.1.2): a piece of the body, the footer.
const ZSTD_PIECE: u32 = 0x184D_2A5E;
const ZSTD_FOOTER: u32 = 0x184D_2A5F;

/// Bytes of a gzip carrier around its data: header (12), the member-length subfield (8),
/// the data's subfield header (4), an empty final deflate block (2), CRC-32 and ISIZE (8).
const GZIP_OVERHEAD: usize = 34;
/// Bytes of a zstd skippable frame around its data: magic and size.
const ZSTD_OVERHEAD: usize = 8;

/// Bytes of the footer's carrier.
pub fn footer_carrier_len(algorithm: Algorithm) -> u64 {
    (overhead(algorithm) + FOOTER_LEN) as u64
}

/// Bytes after the footer in its carrier (gzip's empty deflate block and trailer).
pub fn after_footer(algorithm: Algorithm) -> u64 {
    match algorithm {
        Algorithm::Gzip => 10,
        Algorithm::Zstd => 0,
    }
}

fn overhead(algorithm: Algorithm) -> usize {
    match algorithm {
        Algorithm::Gzip => GZIP_OVERHEAD,
        Algorithm::Zstd => ZSTD_OVERHEAD,
    }
}

/// Writes one carrier of `data` (at most [`PIECE_LEN`] bytes, or the footer).
fn write_carrier<W: Write>(
    algorithm: Algorithm,
    footer: bool,
    data: &[u8],
    out: &mut W,
) -> io::Result<u64> {
    let mut c = Vec::with_capacity(data.len() + GZIP_OVERHEAD);
    match algorithm {
        Algorithm::Gzip => {
            let len = u16::try_from(data.len()).expect("a piece fits a subfield");
            let xlen = 8 + 4 + len;
            let member = u32::try_from(data.len() + GZIP_OVERHEAD).expect("a small member");
            c.extend_from_slice(&[0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff]);
            c.extend_from_slice(&xlen.to_le_bytes());
            c.extend_from_slice(&crate::pipeline::compress::MEMBER_LENGTH_ID);
            c.extend_from_slice(&4u16.to_le_bytes());
            c.extend_from_slice(&member.to_le_bytes());
            c.extend_from_slice(if footer { &FOOTER_ID } else { &PIECE_ID });
            c.extend_from_slice(&len.to_le_bytes());
            c.extend_from_slice(data);
            // An empty final block of fixed Huffman codes, then CRC-32 and ISIZE of nothing.
            c.extend_from_slice(&[0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
        }
        Algorithm::Zstd => {
            let magic = if footer { ZSTD_FOOTER } else { ZSTD_PIECE };
            c.extend_from_slice(&magic.to_le_bytes());
            let len = u32::try_from(data.len()).expect("a small piece");
            c.extend_from_slice(&len.to_le_bytes());
            c.extend_from_slice(data);
        }
    }
    out.write_all(&c)?;
    Ok(c.len() as u64)
}

/// Writes the index `body` as carriers then the footer, for an index whose carriers start
/// at `index_start` in the payload; returns the bytes written.
pub fn write_index<R: Read, W: Write>(
    algorithm: Algorithm,
    mut body: R,
    index_start: u64,
    out: &mut W,
) -> io::Result<u64> {
    let mut piece = vec![0u8; PIECE_LEN];
    let (mut body_len, mut carriers_len) = (0u64, 0u64);
    let mut crc = crc32fast::Hasher::new();
    loop {
        let mut filled = 0;
        while filled < PIECE_LEN {
            match body.read(&mut piece[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        crc.update(&piece[..filled]);
        body_len += filled as u64;
        carriers_len += write_carrier(algorithm, false, &piece[..filled], out)?;
    }
    let footer = Footer {
        index_start,
        carriers_len,
        body_len,
        body_crc: crc.finalize(),
    };
    let footer_len = write_carrier(algorithm, true, &footer.encode(), out)?;
    Ok(carriers_len + footer_len)
}

/// The footer's bytes within the last [`footer_carrier_len`] bytes of a payload; `None`
/// when those bytes are not a footer carrier (an archive without an index).
pub fn footer_in(algorithm: Algorithm, tail: &[u8]) -> Option<&[u8]> {
    let want = usize::try_from(footer_carrier_len(algorithm)).expect("small");
    let tail = tail.get(tail.len().checked_sub(want)?..)?;
    let data = match algorithm {
        Algorithm::Gzip => {
            let head_ok = tail[..4] == [0x1f, 0x8b, 8, 4]
                && tail[12..14] == crate::pipeline::compress::MEMBER_LENGTH_ID
                && tail[20..22] == FOOTER_ID;
            head_ok.then(|| &tail[24..24 + FOOTER_LEN])?
        }
        Algorithm::Zstd => {
            let magic = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes"));
            (magic == ZSTD_FOOTER).then(|| &tail[8..])?
        }
    };
    Some(data)
}

/// The body carried by `carriers`, which are exactly the body's carriers, checked against
/// the footer's length and CRC-32.
pub fn body_of(algorithm: Algorithm, carriers: &[u8], footer: &Footer) -> Result<Vec<u8>> {
    let mut body = Vec::with_capacity(usize::try_from(footer.body_len).unwrap_or(0));
    let mut rest = carriers;
    while !rest.is_empty() {
        let (data, len) = match algorithm {
            Algorithm::Gzip => gzip_piece(rest)?,
            Algorithm::Zstd => zstd_piece(rest)?,
        };
        body.extend_from_slice(data);
        rest = &rest[len..];
    }
    if body.len() as u64 != footer.body_len || crc32fast::hash(&body) != footer.body_crc {
        return Err(bad(
            "its body does not match the length and CRC-32 in its footer",
        ));
    }
    Ok(body)
}

/// A gzip carrier at the start of `rest`: its data and its whole length.
fn gzip_piece(rest: &[u8]) -> Result<(&[u8], usize)> {
    let broken = || bad("a carrier of its body is damaged");
    if rest.len() < GZIP_OVERHEAD || rest[..4] != [0x1f, 0x8b, 8, 4] {
        return Err(broken());
    }
    let len = usize::from(u16::from_le_bytes([rest[22], rest[23]]));
    let total = len + GZIP_OVERHEAD;
    let member = u32::from_le_bytes(rest[16..20].try_into().expect("4 bytes"));
    let good = rest.len() >= total
        && usize::from(u16::from_le_bytes([rest[10], rest[11]])) == len + 12
        && rest[12..16] == [b'S', b'B', 4, 0]
        && member as usize == total
        && rest[20..22] == PIECE_ID
        && len <= PIECE_LEN
        && rest[24 + len..total] == [0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
    if !good {
        return Err(broken());
    }
    Ok((&rest[24..24 + len], total))
}

/// A zstd carrier at the start of `rest`: its data and its whole length.
fn zstd_piece(rest: &[u8]) -> Result<(&[u8], usize)> {
    let broken = || bad("a carrier of its body is damaged");
    if rest.len() < ZSTD_OVERHEAD {
        return Err(broken());
    }
    let magic = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
    let len = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
    if magic != ZSTD_PIECE || len > PIECE_LEN || rest.len() < len + ZSTD_OVERHEAD {
        return Err(broken());
    }
    Ok((&rest[8..8 + len], len + ZSTD_OVERHEAD))
}
