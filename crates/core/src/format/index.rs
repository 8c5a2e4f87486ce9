//! The archive index (`spec/archive-format.md`, section 15): where each compressed block
//! starts and which tar entries the archive holds, so that `ls` and a selective restore
//! read the index and the blocks they need instead of the whole archive.
//!
//! This module holds the byte layout only: the body (varints, front-coded paths), its
//! checks against a hostile index, and the footer. How the body is carried in the
//! compressed stream is in [`carrier`]; how it is written during a backup in
//! `pipeline::index`.

pub mod carrier;
#[cfg(test)]
mod tests;

use crate::error::{Error, Result};

/// The first bytes of the footer: "SBINDEX" and the index version.
pub const FOOTER_MAGIC: [u8; 8] = *b"SBINDEX\x01";
/// Bytes of the footer.
pub const FOOTER_LEN: usize = 40;
/// The most bytes an index body may have (about 60 million entries).
pub const MAX_BODY_LEN: u64 = 1 << 30;
/// The longest entry path, as the extractor accepts it.
pub const MAX_PATH_LEN: usize = 4096;
/// The longest symlink target.
pub const MAX_LINK_LEN: usize = 4095;
/// The most 512-byte header blocks before an entry's data (its own header, GNU long-name
/// and long-link entries of up to 4096 bytes each).
pub const MAX_HEADER_BLOCKS: u64 = 24;

/// Where the index is, as the last bytes of the payload say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// Plaintext payload offset of the first index carrier: the compressed tar stream's
    /// length.
    pub index_start: u64,
    /// Plaintext bytes of the carriers of the body, from `index_start` to the footer's own
    /// carrier.
    pub carriers_len: u64,
    /// Bytes of the body.
    pub body_len: u64,
    /// CRC-32 of the body.
    pub body_crc: u32,
}

impl Footer {
    /// The footer's 40 bytes.
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut out = [0u8; FOOTER_LEN];
        out[..8].copy_from_slice(&FOOTER_MAGIC);
        out[8..16].copy_from_slice(&self.index_start.to_le_bytes());
        out[16..24].copy_from_slice(&self.carriers_len.to_le_bytes());
        out[24..32].copy_from_slice(&self.body_len.to_le_bytes());
        out[32..36].copy_from_slice(&self.body_crc.to_le_bytes());
        out
    }

    /// Reads a footer; `None` when the bytes do not start with its magic (an archive
    /// without an index). Checks that the footer fits a payload of `payload_len` bytes
    /// whose footer carrier takes `footer_carrier` bytes.
    pub fn decode(raw: &[u8], payload_len: u64, footer_carrier: u64) -> Result<Option<Self>> {
        if raw.len() != FOOTER_LEN || raw[..8] != FOOTER_MAGIC {
            return Ok(None);
        }
        let u64_at = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().expect("8 bytes"));
        let footer = Self {
            index_start: u64_at(8),
            carriers_len: u64_at(16),
            body_len: u64_at(24),
            body_crc: u32::from_le_bytes(raw[32..36].try_into().expect("4 bytes")),
        };
        if raw[36..40] != [0; 4] {
            return Err(bad("its footer has reserved bytes that are not zero"));
        }
        let end = footer
            .index_start
            .checked_add(footer.carriers_len)
            .and_then(|n| n.checked_add(footer_carrier));
        if end != Some(payload_len) || footer.index_start == 0 {
            return Err(bad(format!(
                "its footer places it at {} + {} bytes, which does not end the payload of {payload_len} bytes",
                footer.index_start, footer.carriers_len
            )));
        }
        // The carriers' length follows from the body's: one carrier per piece, each with
        // the overhead of the footer's own carrier. Checked before anything is read, so
        // that a forged footer of a plain archive cannot ask for more.
        let overhead = footer_carrier - FOOTER_LEN as u64;
        let pieces = footer.body_len.div_ceil(carrier::PIECE_LEN as u64);
        if footer.body_len > MAX_BODY_LEN
            || footer.carriers_len != footer.body_len + pieces * overhead
        {
            return Err(bad(format!(
                "its footer claims a body of {} bytes in {} bytes of carriers",
                footer.body_len, footer.carriers_len
            )));
        }
        Ok(Some(footer))
    }
}

/// What kind of tar entry an index entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

impl EntryKind {
    fn code(self) -> u64 {
        match self {
            Self::File => 0,
            Self::Dir => 1,
            Self::Symlink => 2,
        }
    }

    /// The letter `ls -l` shows for it.
    pub fn letter(self) -> char {
        match self {
            Self::File => '-',
            Self::Dir => 'd',
            Self::Symlink => 'l',
        }
    }

    /// Its name in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Dir => "dir",
            Self::Symlink => "symlink",
        }
    }
}

/// One tar entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Its path, relative, `/`-separated.
    pub path: String,
    /// Its type.
    pub kind: EntryKind,
    /// Its permission bits (at most `0o7777`).
    pub mode: u32,
    /// Bytes of content (0 for folders and links).
    pub size: u64,
    /// Modification time, seconds since 1970.
    pub mtime: i64,
    /// A symlink's target.
    pub link: Option<String>,
    /// Offset in the tar stream of its first header (a long-name entry's, if any).
    pub tar_start: u64,
    /// 512-byte header blocks before its data.
    pub header_blocks: u64,
}

impl IndexEntry {
    /// Offset in the tar stream just past its data and padding.
    pub fn tar_end(&self) -> u64 {
        self.tar_start + self.header_blocks * 512 + self.size.div_ceil(512) * 512
    }
}

/// Appends `value` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(u8::try_from(value & 0x7f).expect("7 bits") | 0x80);
        value >>= 7;
    }
    out.push(u8::try_from(value).expect("below 0x80"));
}

/// Encodes entries one after the other, each relative to the one before.
#[derive(Debug, Default)]
pub struct EntryEncoder {
    path: String,
    end: u64,
    mtime: i64,
}

impl EntryEncoder {
    /// Appends `entry`, which starts at or after the end of the one before, to `out`.
    pub fn encode(&mut self, entry: &IndexEntry, out: &mut Vec<u8>) {
        let shared = common_prefix(&self.path, &entry.path);
        put_varint(out, shared as u64);
        let suffix = &entry.path.as_bytes()[shared..];
        put_varint(out, suffix.len() as u64);
        out.extend_from_slice(suffix);
        put_varint(out, (u64::from(entry.mode) << 2) | entry.kind.code());
        put_varint(out, entry.tar_start - self.end);
        put_varint(out, entry.header_blocks);
        put_varint(out, entry.size);
        put_varint(out, zigzag(entry.mtime.wrapping_sub(self.mtime)));
        if entry.kind == EntryKind::Symlink {
            let link = entry.link.as_deref().unwrap_or_default().as_bytes();
            put_varint(out, link.len() as u64);
            out.extend_from_slice(link);
        }
        self.path.clone_from(&entry.path);
        self.end = entry.tar_end();
        self.mtime = entry.mtime;
    }
}

/// The head of a body: block size, block count, tar length and entry count.
pub fn encode_head(block_size: u64, blocks: &[u32], tar_len: u64, entries: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + blocks.len() * 3);
    put_varint(&mut out, block_size);
    put_varint(&mut out, blocks.len() as u64);
    put_varint(&mut out, tar_len);
    put_varint(&mut out, entries);
    for &len in blocks {
        put_varint(&mut out, u64::from(len));
    }
    out
}

/// The length of the longest common prefix of `a` and `b` that ends on a character
/// boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    let mut n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    while !b.is_char_boundary(n) {
        n -= 1;
    }
    n
}

fn zigzag(v: i64) -> u64 {
    // The usual zigzag mapping: small magnitudes, either sign, give small numbers.
    #[allow(clippy::cast_sign_loss)]
    let z = ((v << 1) ^ (v >> 63)) as u64;
    z
}

fn unzigzag(z: u64) -> i64 {
    #[allow(clippy::cast_possible_wrap)]
    let v = ((z >> 1) as i64) ^ -((z & 1) as i64);
    v
}

/// A decoded, checked index body: the block table in memory, the entries decoded as they
/// are read.
#[derive(Debug, Clone)]
pub struct ArchiveIndex {
    /// Uncompressed bytes of every block but the last.
    pub block_size: u64,
    /// Start of each block in the plaintext payload, and one more: the compressed tar
    /// stream's length.
    pub block_starts: Vec<u64>,
    /// Bytes of the tar stream.
    pub tar_len: u64,
    /// How many entries the body lists.
    pub entry_count: u64,
    body: Vec<u8>,
    entries_at: usize,
}

/// A cursor over a body.
struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn varint(&mut self, what: &str) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .data
                .get(self.at)
                .ok_or_else(|| bad(format!("it ends inside {what}")))?;
            self.at += 1;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(bad(format!("{what} is too large")));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad(format!("{what} is too large")))
    }

    fn bytes(&mut self, n: u64, what: &str) -> Result<&[u8]> {
        let n = usize::try_from(n).map_err(|_| bad(format!("{what} is too long")))?;
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| bad(format!("it ends inside {what}")))?;
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }
}

/// The most compressed bytes a block of `block_size` tar bytes takes. Data that does not
/// compress grows a little as stored deflate blocks, gzip members and zstd frames (a few
/// bytes in 64 KiB, and a member's header and trailer for each run of at least 8 KiB); a
/// sixteenth of the block and 64 KiB more is far above that, and below what would let an
/// index make a restore read a whole archive as one block.
pub fn max_compressed_block(block_size: u64) -> u64 {
    block_size + block_size / 16 + 64 * 1024
}

impl ArchiveIndex {
    /// Decodes and checks the head and block table of `body`, for a compressed tar stream
    /// of `compressed_len` bytes; the entries are checked as [`Self::entries`] reads them.
    pub fn decode(body: Vec<u8>, compressed_len: u64) -> Result<Self> {
        let mut c = Cursor { data: &body, at: 0 };
        let block_size = c.varint("the block size")?;
        if !(4096..=1 << 26).contains(&block_size) {
            return Err(bad(format!(
                "its block size of {block_size} bytes is refused"
            )));
        }
        let count = c.varint("the block count")?;
        let tar_len = c.varint("the tar length")?;
        let entry_count = c.varint("the entry count")?;
        if count != tar_len.div_ceil(block_size).max(1) {
            return Err(bad(format!(
                "it lists {count} blocks for a tar stream of {tar_len} bytes"
            )));
        }
        // Every block takes a byte at least, every entry eight: counts the body cannot
        // hold are refused before anything is allocated for them.
        let left = (body.len() - c.at) as u64;
        if count > left || entry_count > left / 8 {
            return Err(bad(format!(
                "it claims {count} blocks and {entry_count} entries in {left} bytes"
            )));
        }
        let mut starts = Vec::with_capacity(usize::try_from(count + 1).unwrap_or(0));
        let mut at = 0u64;
        for _ in 0..count {
            starts.push(at);
            let len = c.varint("the block table")?;
            if len == 0 {
                return Err(bad("it lists an empty block"));
            }
            let most = max_compressed_block(block_size);
            if len > most {
                return Err(bad(format!(
                    "it lists a block of {len} compressed bytes, more than a block of {block_size} bytes compresses to (at most {most})"
                )));
            }
            at = at
                .checked_add(len)
                .filter(|&a| a <= compressed_len)
                .ok_or_else(|| bad("its blocks run past the end of the compressed stream"))?;
        }
        if at != compressed_len {
            return Err(bad(format!(
                "its blocks take {at} bytes, but the compressed stream has {compressed_len}"
            )));
        }
        starts.push(at);
        let entries_at = c.at;
        Ok(Self {
            block_size,
            block_starts: starts,
            tar_len,
            entry_count,
            body,
            entries_at,
        })
    }

    /// The entries, in tar order; each is checked (a safe relative path, inside the tar
    /// stream, after the one before) as it is decoded, and the last item says whether the
    /// body ends right after them.
    pub fn entries(&self) -> Entries<'_> {
        Entries {
            index: self,
            cursor: Cursor {
                data: &self.body,
                at: self.entries_at,
            },
            left: self.entry_count,
            path: String::new(),
            end: 0,
            mtime: 0,
            failed: false,
        }
    }

    /// The blocks holding the tar bytes `range`, as block numbers.
    pub fn blocks_of(&self, start: u64, end: u64) -> std::ops::Range<usize> {
        let first = usize::try_from(start / self.block_size).unwrap_or(usize::MAX);
        let last = usize::try_from(end.saturating_sub(1) / self.block_size).unwrap_or(0);
        first..last.max(first) + 1
    }

    /// Uncompressed bytes of block `b`.
    pub fn block_plain_len(&self, b: usize) -> u64 {
        let start = b as u64 * self.block_size;
        self.tar_len.saturating_sub(start).min(self.block_size)
    }
}

/// The entries of an [`ArchiveIndex`], decoded one at a time.
pub struct Entries<'a> {
    index: &'a ArchiveIndex,
    cursor: Cursor<'a>,
    left: u64,
    path: String,
    end: u64,
    mtime: i64,
    failed: bool,
}

impl Entries<'_> {
    fn next_entry(&mut self) -> Result<IndexEntry> {
        let c = &mut self.cursor;
        let shared = c.varint("an entry's path")?;
        if shared > self.path.len() as u64 {
            return Err(bad(
                "an entry's path shares more than the path before it has",
            ));
        }
        let suffix_len = c.varint("an entry's path")?;
        let len = shared.saturating_add(suffix_len);
        if len > MAX_PATH_LEN as u64 || len == 0 {
            return Err(bad("an entry's path is empty or longer than 4096 bytes"));
        }
        let suffix = c.bytes(suffix_len, "an entry's path")?;
        let mut path = self.path.as_bytes()[..usize::try_from(shared).expect("checked")].to_vec();
        path.extend_from_slice(suffix);
        let path = String::from_utf8(path).map_err(|_| bad("an entry's path is not UTF-8"))?;
        check_path(&path)?;
        let mode_kind = c.varint("an entry's mode")?;
        let kind = match mode_kind & 3 {
            0 => EntryKind::File,
            1 => EntryKind::Dir,
            2 => EntryKind::Symlink,
            _ => return Err(bad(format!("entry {path} has an unknown type"))),
        };
        let mode = u32::try_from(mode_kind >> 2)
            .ok()
            .filter(|&m| m <= 0o7777)
            .ok_or_else(|| bad(format!("entry {path} has an invalid mode")))?;
        let gap = c.varint("an entry's offset")?;
        let header_blocks = c.varint("an entry's header count")?;
        let size = c.varint("an entry's size")?;
        let mtime = self
            .mtime
            .wrapping_add(unzigzag(c.varint("an entry's time")?));
        let link = if kind == EntryKind::Symlink {
            let n = c.varint("a link target")?;
            if n == 0 || n > MAX_LINK_LEN as u64 {
                return Err(bad(format!("entry {path} has a link target of {n} bytes")));
            }
            let raw = c.bytes(n, "a link target")?.to_vec();
            Some(String::from_utf8(raw).map_err(|_| bad("a link target is not UTF-8"))?)
        } else {
            None
        };
        if !(1..=MAX_HEADER_BLOCKS).contains(&header_blocks)
            || (kind != EntryKind::File && size != 0)
        {
            return Err(bad(format!("entry {path} has an invalid layout")));
        }
        let tar_start = self.end.checked_add(gap);
        let entry_end = tar_start.and_then(|s| {
            s.checked_add(header_blocks * 512)?
                .checked_add(size.checked_add(511)? / 512 * 512)
        });
        // The tar stream ends with two zero blocks after the last entry.
        let (Some(tar_start), Some(end)) = (tar_start, entry_end) else {
            return Err(bad(format!(
                "entry {path} lies past the end of the tar stream"
            )));
        };
        if end > self.index.tar_len.saturating_sub(1024) {
            return Err(bad(format!(
                "entry {path} lies past the end of the tar stream"
            )));
        }
        let entry = IndexEntry {
            path,
            kind,
            mode,
            size,
            mtime,
            link,
            tar_start,
            header_blocks,
        };
        self.path.clone_from(&entry.path);
        self.end = end;
        self.mtime = mtime;
        Ok(entry)
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<IndexEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.left == 0 {
            self.failed = true;
            return (self.cursor.at != self.cursor.data.len())
                .then(|| Err(bad("it has bytes after its last entry")));
        }
        self.left -= 1;
        let entry = self.next_entry();
        self.failed = entry.is_err();
        Some(entry)
    }
}

/// Refuses a path a restore must not write: absolute, with an empty, `.` or `..`
/// component, or with a NUL byte.
pub fn check_path(path: &str) -> Result<()> {
    let bad_part = path
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..");
    if path.starts_with('/') || bad_part || path.contains('\0') {
        return Err(Error::new(
            crate::error::ErrorKind::UnsafeEntry,
            format!("the archive's index lists an unsafe path {path:?}; refusing the index"),
        ));
    }
    Ok(())
}

/// A *corrupt* error about the index.
pub(crate) fn bad(what: impl std::fmt::Display) -> Error {
    Error::corrupt(format!("the archive's index is invalid: {what}"))
}
