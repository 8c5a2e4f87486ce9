//! The boundary finder: cuts the decrypted payload into blocks of whole gzip members or
//! zstd frames without decompressing them, so that workers can.
//!
//! A gzip member's length is read from the extra field our backups write in its header
//! (`compress::MEMBER_LENGTH_ID`); a zstd frame's from its header and the headers of its
//! blocks, and its decompressed size from its frame content size. Anything else (a member
//! without the field, as every backup from before it has, a frame without a content size,
//! a skippable frame, damage, the end of the input in the middle of a member) switches the
//! rest of the stream to one decoder in sequence, on this thread, from the start of that
//! member or frame: the bytes and errors that come out are those the single-thread restore
//! yields.

use std::io::{self, Read};

use super::lookahead::Lookahead;
use super::{MAX_PART_BYTES, MAX_PART_PLAIN, serial_decoder};
use crate::compression::{Algorithm, ZSTD_MAGIC};
use crate::pipeline::compress::{BLOCK_SIZE, MEMBER_LENGTH_ID};

/// A block stops taking members or frames once it holds this many bytes, in or out.
const GROUP_BYTES: usize = BLOCK_SIZE;

/// Decompressed bytes handed on at a time by the decoder in sequence.
const SERIAL_PIECE: usize = 256 * 1024;

/// How a block's bytes are to be decompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    /// Whole gzip members, each with its length field.
    Gzip,
    /// Whole zstd frames, each with its content size.
    Zstd,
    /// Bytes already decompressed (by the decoder in sequence).
    Plain,
}

/// One member or frame of a block: its bytes and what they decompress to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Part {
    /// Compressed bytes, header to trailer.
    pub(crate) len: usize,
    /// Decompressed bytes, as its trailer (gzip) or header (zstd) says.
    pub(crate) plain: usize,
}

/// A block for a worker: whole members or frames one after the other, and where each ends.
#[derive(Debug)]
pub(crate) struct Job {
    /// How `data` is to be decompressed.
    pub(crate) codec: Codec,
    /// The members or frames, or plain bytes.
    pub(crate) data: Vec<u8>,
    /// The members or frames in `data`, in order; empty for plain bytes.
    pub(crate) parts: Vec<Part>,
}

impl Job {
    /// An empty job reusing `data`'s allocation.
    pub(crate) fn new(mut data: Vec<u8>) -> Self {
        data.clear();
        Self {
            codec: Codec::Plain,
            data,
            parts: Vec::new(),
        }
    }

    /// Decompressed bytes of the whole block.
    pub(crate) fn plain_len(&self) -> usize {
        match self.codec {
            Codec::Plain => self.data.len(),
            Codec::Gzip | Codec::Zstd => self.parts.iter().map(|p| p.plain).sum(),
        }
    }
}

/// Where the workers' blocks come from: the boundary finder below, or (later) an index
/// of the archive that knows where each block starts.
pub(crate) trait BlockSource: Send {
    /// Fills `job`, which is empty, with the next block; `false` at the end of the stream.
    fn next_job(&mut self, job: &mut Job) -> io::Result<bool>;
}

/// Whether a stream whose first bytes are `first` is cut into blocks by [`Splitter`]: its
/// first member or frame is one it can find the end of (which old archives' are not).
pub(crate) fn splittable(algorithm: Algorithm, first: &[u8]) -> bool {
    match algorithm {
        Algorithm::Gzip => matches!(gzip_header(first), Header::Gzip { .. }),
        Algorithm::Zstd => matches!(zstd_header(first), Header::Zstd { .. }),
    }
}

/// The boundary finder over a decrypted gzip or zstd stream.
pub(crate) struct Splitter<'a, R> {
    algorithm: Algorithm,
    state: State<'a, R>,
    /// The bytes of a member or frame already taken when the stream switched to the
    /// decoder in sequence: they go in front of the rest.
    switch_from: Option<Vec<u8>>,
    /// An error that came after the bytes last handed on, for the next call.
    error: Option<io::Error>,
}

enum State<'a, R> {
    Split(Lookahead<R>),
    Serial(Box<dyn Read + Send + 'a>),
    Done,
}

/// What the header at the start of a member or frame says.
enum Header {
    /// A gzip member of this many bytes, header to trailer.
    Gzip { len: usize },
    /// A zstd frame whose header has this many bytes, holding `plain` bytes.
    Zstd { header_len: usize, plain: usize },
    /// More bytes are needed to tell.
    NeedMore(usize),
    /// Not one the finder can walk: the rest goes to the decoder in sequence.
    Other,
}

impl<'a, R: Read + Send + 'a> Splitter<'a, R> {
    /// A boundary finder over `input`, a stream of `algorithm`.
    pub(crate) fn new(input: R, algorithm: Algorithm) -> Self {
        Self {
            algorithm,
            state: State::Split(Lookahead::new(input)),
            switch_from: None,
            error: None,
        }
    }

    /// Switches the rest of the stream, from `taken` on, to the decoder in sequence.
    fn start_serial(&mut self, taken: Vec<u8>) -> io::Result<()> {
        let State::Split(rest) = std::mem::replace(&mut self.state, State::Done) else {
            return Ok(());
        };
        let input = io::Cursor::new(taken).chain(rest);
        self.state = State::Serial(serial_decoder(self.algorithm, input)?);
        Ok(())
    }

    /// Takes the next member or frame into `job`; `false` when it is not one to walk (the
    /// bytes taken of it are then in `switch_from`) or at the end of the input.
    fn take_part(&mut self, job: &mut Job) -> io::Result<bool> {
        let State::Split(input) = &mut self.state else {
            return Ok(false);
        };
        let start = job.data.len();
        let part = match self.algorithm {
            Algorithm::Gzip => take_member(input, &mut job.data)?,
            Algorithm::Zstd => take_frame(input, &mut job.data)?,
        };
        match part {
            Taken::Part(part) => {
                job.parts.push(part);
                Ok(true)
            }
            Taken::End => {
                self.state = State::Done;
                Ok(false)
            }
            Taken::Other => {
                self.switch_from = Some(job.data.split_off(start));
                Ok(false)
            }
        }
    }
}

impl<'a, R: Read + Send + 'a> BlockSource for Splitter<'a, R> {
    fn next_job(&mut self, job: &mut Job) -> io::Result<bool> {
        if let Some(e) = self.error.take() {
            self.state = State::Done;
            return Err(e);
        }
        if let Some(taken) = self.switch_from.take() {
            self.start_serial(taken)?;
        }
        match &mut self.state {
            State::Done => Ok(false),
            State::Serial(decoder) => {
                job.codec = Codec::Plain;
                job.data.resize(SERIAL_PIECE, 0);
                let mut filled = 0;
                while filled < SERIAL_PIECE {
                    match read_some(decoder, &mut job.data[filled..]) {
                        Ok(0) => {
                            self.state = State::Done;
                            break;
                        }
                        Ok(k) => filled += k,
                        // What came before the error goes first, as the decoder yielded it.
                        Err(e) if filled > 0 => {
                            self.error = Some(e);
                            break;
                        }
                        Err(e) => {
                            self.state = State::Done;
                            return Err(e);
                        }
                    }
                }
                job.data.truncate(filled);
                Ok(filled > 0)
            }
            State::Split(_) => {
                job.codec = match self.algorithm {
                    Algorithm::Gzip => Codec::Gzip,
                    Algorithm::Zstd => Codec::Zstd,
                };
                while job.data.len() < GROUP_BYTES && job.plain_len() < GROUP_BYTES {
                    let keep = job.data.len();
                    match self.take_part(job) {
                        Ok(true) => {}
                        Ok(false) => break,
                        // The input failed (a chunk that does not authenticate): the whole
                        // parts before it go first, then its error.
                        Err(e) if !job.parts.is_empty() => {
                            job.data.truncate(keep);
                            self.error = Some(e);
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
                if !job.parts.is_empty() {
                    return Ok(true);
                }
                // Nothing taken: the end, or the switch to the decoder in sequence.
                job.data.clear();
                self.next_job(job)
            }
        }
    }
}

/// One read, retried when interrupted.
fn read_some<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// What taking a member or frame gave.
enum Taken {
    /// A whole one, now at the end of the block.
    Part(Part),
    /// The input ended where a member or frame would start.
    End,
    /// One that cannot be walked; what was taken of it is at the end of the block.
    Other,
}

/// The gzip flag of an extra field (RFC 1952, FLG.FEXTRA).
const FEXTRA: u8 = 0x04;

/// What the start of a gzip member says: walkable only when its only flag is FEXTRA and its
/// extra field holds our length subfield.
fn gzip_header(h: &[u8]) -> Header {
    if h.len() < 12 {
        return Header::NeedMore(12);
    }
    if h[..3] != [0x1f, 0x8b, 8] || h[3] != FEXTRA {
        return Header::Other;
    }
    let xlen = usize::from(u16::from_le_bytes([h[10], h[11]]));
    let header_len = 12 + xlen;
    let Some(mut extra) = h.get(12..header_len) else {
        return Header::NeedMore(header_len);
    };
    // Subfields: SI1, SI2, LEN (2 bytes), then LEN bytes.
    while extra.len() >= 4 {
        let len = usize::from(u16::from_le_bytes([extra[2], extra[3]]));
        let Some(data) = extra.get(4..4 + len) else {
            break;
        };
        if extra[..2] == MEMBER_LENGTH_ID && len == 4 {
            let member = u32::from_le_bytes(data.try_into().expect("4 bytes"));
            let member = usize::try_from(member).unwrap_or(usize::MAX);
            // The header, a deflate stream of at least two bytes and the trailer.
            if member < header_len + 2 + 8 || member > MAX_PART_BYTES {
                return Header::Other;
            }
            return Header::Gzip { len: member };
        }
        extra = &extra[4 + len..];
    }
    Header::Other
}

/// Takes the next gzip member into `out`.
fn take_member<R: Read>(input: &mut Lookahead<R>, out: &mut Vec<u8>) -> io::Result<Taken> {
    let mut want = 12;
    let len = loop {
        let head = input.peek(want)?;
        if head.is_empty() {
            return Ok(Taken::End);
        }
        match gzip_header(head) {
            Header::Gzip { len } => break len,
            Header::NeedMore(n) if head.len() == want => want = n,
            _ => return Ok(Taken::Other),
        }
    };
    let start = out.len();
    if input.move_into(len, out)? < len {
        return Ok(Taken::Other);
    }
    let member = &out[start..];
    let isize = u32::from_le_bytes(member[len - 4..].try_into().expect("4 bytes"));
    let plain = usize::try_from(isize).unwrap_or(usize::MAX);
    // A member of at most MAX_PART_BYTES holds far less than 4 GiB (deflate shrinks by
    // 1032:1 at most), so a valid one's ISIZE is its exact length, not a remainder.
    if plain > MAX_PART_PLAIN {
        return Ok(Taken::Other);
    }
    Ok(Taken::Part(Part { len, plain }))
}

/// The frame header descriptor's bits (RFC 8878, 3.1.1.1.1).
const FHD_SINGLE_SEGMENT: u8 = 0x20;
const FHD_RESERVED: u8 = 0x08;
const FHD_CHECKSUM: u8 = 0x04;

/// What the start of a zstd frame says: walkable when it is a frame (not a skippable one)
/// with a content size of at most [`MAX_PART_PLAIN`], no dictionary, and a window the
/// restore accepts.
fn zstd_header(h: &[u8]) -> Header {
    if h.len() < 6 {
        return Header::NeedMore(6);
    }
    if h[..4] != ZSTD_MAGIC {
        return Header::Other;
    }
    let fhd = h[4];
    let single = fhd & FHD_SINGLE_SEGMENT != 0;
    let fcs_len = fcs_bytes(fhd);
    if fcs_len == 0 {
        return Header::Other; // no content size
    }
    if fhd & FHD_RESERVED != 0 || fhd & 0x03 != 0 {
        return Header::Other; // a reserved bit, or a dictionary
    }
    let window_len = usize::from(!single);
    let header_len = 5 + window_len + fcs_len;
    let Some(fcs) = h.get(5 + window_len..header_len) else {
        return Header::NeedMore(header_len);
    };
    let mut size = [0u8; 8];
    size[..fcs_len].copy_from_slice(fcs);
    let mut plain = u64::from_le_bytes(size);
    if fcs_len == 2 {
        plain += 256;
    }
    // The window is the content size in a single segment, else its Window_Descriptor's
    // exponent and mantissa.
    let window = if single {
        plain
    } else {
        let wd = h[5];
        let base = 1u64 << (10 + (wd >> 3));
        base + base / 8 * u64::from(wd & 7)
    };
    if window > super::MAX_WINDOW {
        return Header::Other;
    }
    match usize::try_from(plain) {
        Ok(plain) if plain <= MAX_PART_PLAIN => Header::Zstd { header_len, plain },
        _ => Header::Other,
    }
}

/// The largest block a zstd frame may hold (RFC 8878, `Block_Maximum_Size`).
const ZSTD_MAX_BLOCK: usize = 128 * 1024;

/// Takes the next zstd frame into `out`, walking the headers of its blocks.
fn take_frame<R: Read>(input: &mut Lookahead<R>, out: &mut Vec<u8>) -> io::Result<Taken> {
    let mut want = 6;
    let header = loop {
        let head = input.peek(want)?;
        if head.is_empty() {
            return Ok(Taken::End);
        }
        match zstd_header(head) {
            Header::Zstd { header_len, plain } => break (header_len, plain),
            Header::NeedMore(n) if head.len() == want => want = n,
            _ => return Ok(Taken::Other),
        }
    };
    let (header_len, plain) = header;
    let start = out.len();
    input.move_into(header_len, out)?;
    let fhd = out[start + 4];
    loop {
        let at = out.len();
        if input.move_into(3, out)? < 3 {
            return Ok(Taken::Other);
        }
        let block = u32::from_le_bytes([out[at], out[at + 1], out[at + 2], 0]);
        let last = block & 1 != 0;
        let size = usize::try_from(block >> 3).expect("21 bits");
        let content = match (block >> 1) & 3 {
            0 | 2 if size <= ZSTD_MAX_BLOCK => size, // raw, compressed
            1 if size <= ZSTD_MAX_BLOCK => 1,        // RLE: one byte, repeated
            _ => return Ok(Taken::Other),            // reserved, or too large
        };
        if out.len() - start + content > MAX_PART_BYTES || input.move_into(content, out)? < content
        {
            return Ok(Taken::Other);
        }
        if last {
            break;
        }
    }
    if fhd & FHD_CHECKSUM != 0 && input.move_into(4, out)? < 4 {
        return Ok(Taken::Other);
    }
    Ok(Taken::Part(Part {
        len: out.len() - start,
        plain,
    }))
}

/// Bytes of the frame content size field a frame header descriptor announces.
fn fcs_bytes(fhd: u8) -> usize {
    match fhd >> 6 {
        0 => usize::from(fhd & FHD_SINGLE_SEGMENT != 0),
        1 => 2,
        2 => 4,
        _ => 8,
    }
}
