//! The read pipe: stored bytes → SHA-256 check → decrypt → gunzip (or zstd) → safe
//! extraction by an [`Extractor`] (into a staging directory, or checking only).
//!
//! The stages run on threads of their own, handing each other chunks or blocks through
//! short queues: reading, hashing, decrypting and cutting the payload into blocks of whole
//! members or frames on one, decompression on a pool of workers, one per core
//! ([`super::decompress`]), tar and the file writes on the calling thread. Archives whose
//! members cannot be found without inflating them (those written before members recorded
//! their length) are decompressed by one stage thread, as before.

use std::io::{self, BufReader, Read};
use std::thread::Scope;

use super::decompress::{FIRST_LEN, decompress, restore_threads};
use super::extract::{ExtractStats, Extractor};
use super::hashing::HashingReader;
use crate::compression::Algorithm;
use crate::error::{Error, ErrorKind, Result};
use crate::format::{ArchiveKind, BackupContext, DecryptingReader, KeyId, Keyring, from_io};
use crate::progress::Progress;

/// The keys a restore may use, and whether it accepts an archive that is not encrypted.
#[derive(Debug, Clone, Default)]
pub struct Decryption {
    /// The keys; `None` or empty: only plain archives can be read.
    pub keyring: Option<Keyring>,
    /// Accept a plain `.tar.gz` (or `.tar.zst`) even though keys are given. Off by
    /// default: with keys configured, a plain archive may be a backup that someone
    /// replaced.
    pub allow_unencrypted: bool,
    /// The backup an encrypted archive must be bound to, when its header binds one.
    pub bound_to: Binding,
}

/// What an archive's context stanza must say (`format::BackupContext`). Archives written
/// before archives carried a context pass unchecked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Binding {
    /// Nothing is known to check against.
    #[default]
    Unchecked,
    /// The backup its manifest names.
    Backup(BackupContext),
    /// A backup of this name (a downloaded file named for it).
    Name(String),
}

impl Binding {
    /// Refuses an archive bound to another backup than this one.
    pub fn check(&self, found: Option<&BackupContext>) -> Result<()> {
        match (self, found) {
            (Self::Backup(want), Some(found)) => found.check(want),
            (Self::Name(want), Some(found)) => found.check_name(want),
            _ => Ok(()),
        }
    }
}

impl Decryption {
    /// Decryption with `keyring`, refusing plain archives when it holds a key.
    pub fn new(keyring: Option<Keyring>) -> Self {
        Self {
            keyring,
            allow_unencrypted: false,
            bound_to: Binding::Unchecked,
        }
    }

    fn keys(&self) -> Option<&Keyring> {
        self.keyring.as_ref().filter(|k| !k.is_empty())
    }
}

/// What the stored object must match, from its manifest.
#[derive(Debug, Clone)]
pub struct Expected {
    /// SHA-256 of the stored object, hex.
    pub sha256: String,
    /// Size of the stored object.
    pub stored_bytes: u64,
    /// Bytes of regular file content the archive holds; more is refused (a disk bomb).
    pub plain_bytes: Option<u64>,
}

/// What reading an archive found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadStats {
    /// Entries and bytes extracted or checked.
    pub extracted: ExtractStats,
    /// Bytes of the stored object.
    pub stored_bytes: u64,
    /// SHA-256 of the stored object, hex.
    pub sha256: String,
    /// The key that opened it, if it was encrypted.
    pub key_id: Option<KeyId>,
}

/// Reads a whole archive from `input` and extracts it with `extractor`, checking every
/// layer: the hash and size against `expected`, each chunk's tag, gzip's CRC or zstd's
/// checksum, tar's structure. Returns only once every byte of the input was read and
/// checked.
pub fn read_archive<R: Read + Send>(
    input: R,
    decryption: &Decryption,
    expected: Option<&Expected>,
    extractor: Extractor,
    progress: &dyn Progress,
) -> Result<ReadStats> {
    read_archive_on(
        input,
        decryption,
        expected,
        extractor,
        progress,
        restore_threads(),
    )
}

/// [`read_archive`], decompressing on `threads` threads.
pub(crate) fn read_archive_on<R: Read + Send>(
    input: R,
    decryption: &Decryption,
    expected: Option<&Expected>,
    extractor: Extractor,
    progress: &dyn Progress,
    threads: usize,
) -> Result<ReadStats> {
    let mut hashing = HashingReader::new(input, progress);
    let first = read_prefix(&mut hashing, crate::format::MAGIC.len())?;
    if first.is_empty() {
        return Err(Error::corrupt("the archive is empty"));
    }
    let kind = ArchiveKind::sniff(&first)?;
    let extractor = extractor.with_byte_limit(expected.and_then(|e| e.plain_bytes));
    let mut key_id = None;
    // The first bytes go back in front: every layer reads the archive from its start.
    let mut input =
        BufReader::with_capacity(256 * 1024, io::Cursor::new(first).chain(&mut hashing));
    let extracted = match kind {
        ArchiveKind::Plain(_) if decryption.keys().is_some() && !decryption.allow_unencrypted => {
            return Err(Error::new(
                ErrorKind::Corrupt,
                "the archive is not encrypted although a key is configured, so it may have been replaced",
            )
            .with_hint("if it is an old backup made before encryption was set up, pass --allow-unencrypted"));
        }
        ArchiveKind::Encrypted => {
            let Some(keyring) = decryption.keys() else {
                return Err(Error::new(
                    ErrorKind::WrongKey,
                    "the archive is encrypted and no key was given",
                )
                .with_hint("pass --key-file, or configure encryption.key_file"));
            };
            let reader = DecryptingReader::new(&mut input, keyring)?;
            key_id = Some(reader.key_id());
            // Before any plaintext: an archive swapped in from another backup is refused.
            decryption.bound_to.check(reader.context())?;
            // The decrypting thread reads to the end of the encrypted stream (its last
            // chunk's tag included) before decompression sees the end of its input.
            std::thread::scope(|scope| extract_tar(reader, 0, extractor, scope, threads))?
        }
        ArchiveKind::Plain(_) => {
            std::thread::scope(|scope| extract_tar(&mut input, 0, extractor, scope, threads))?
        }
    };
    drain(&mut input)?;
    drop(input);
    let (count, digest) = hashing.finish();
    let sha256 = hex::encode(digest);
    if let Some(expected) = expected {
        if count != expected.stored_bytes {
            return Err(Error::corrupt(format!(
                "the stored archive is {} bytes, but its manifest says {}",
                count, expected.stored_bytes
            )));
        }
        if !sha256.eq_ignore_ascii_case(&expected.sha256) {
            return Err(Error::corrupt(format!(
                "the stored archive's SHA-256 is {sha256}, but its manifest says {}",
                expected.sha256
            )));
        }
    }
    Ok(ReadStats {
        extracted,
        stored_bytes: count,
        sha256,
        key_id,
    })
}

/// Reads up to `n` bytes, however few each read of the input delivers.
fn read_prefix<R: Read>(input: &mut R, n: usize) -> Result<Vec<u8>> {
    let mut first = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        match input.read(&mut first[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(from_io(e, "read the archive")),
        }
    }
    first.truncate(filled);
    Ok(first)
}

/// The bytes of tar's end-of-archive marker left after the tar reader stopped: it reads the
/// first of the two zero blocks and stops there.
const TAR_END_LEFT: u64 = 512;

/// The most bytes read after the tar end marker before the archive is refused: tar writers
/// pad the archive to whole records of 10 KiB (or a few times that), never to a megabyte,
/// and whatever follows is decompressed only to be thrown away.
pub(crate) const MAX_AFTER_END: u64 = 1 << 20;

/// Extracts the rest of an archive's tar stream with `extractor` (one resumed at a
/// mark): `input` is the decrypted payload from the start of a block of the index (whole
/// gzip members or zstd frames) to the end of the compressed tar stream, and the first
/// `skip` bytes of its tar stream come before the mark.
pub(crate) fn extract_rest<R: Read + Send>(
    input: R,
    skip: u64,
    extractor: Extractor,
) -> Result<ExtractStats> {
    let threads = restore_threads();
    std::thread::scope(|scope| extract_tar(input, skip, extractor, scope, threads))
}

/// Decompresses `input`, gzip or zstd as its first bytes tell, on `threads` threads, and
/// extracts the tar stream in it after its first `skip` bytes.
fn extract_tar<'scope, R: Read + Send + 'scope>(
    mut input: R,
    skip: u64,
    extractor: Extractor,
    scope: &'scope Scope<'scope, '_>,
    threads: usize,
) -> Result<ExtractStats> {
    let first = read_prefix(&mut input, FIRST_LEN)?;
    let Some(compression) = Algorithm::sniff(&first) else {
        return Err(Error::corrupt(
            "the archive's content is neither a gzip nor a zstd stream",
        ));
    };
    let mut plain = decompress(scope, compression, first, input, threads)
        .map_err(|e| from_io(e, "start the decompression"))?;
    if drain(&mut (&mut plain).take(skip))? != skip {
        return Err(Error::corrupt(
            "the archive's tar stream ends before the point its restore stopped at",
        ));
    }
    let stats = extractor.run(&mut plain)?;
    // The tar end marker is not the end of the compressed stream: read on so every CRC or
    // checksum is checked. A stream cut between two members or frames is valid, and tar
    // takes the end of its input at an entry boundary for the end of the archive: only the
    // marker tells it was cut.
    let left = drain(&mut (&mut plain).take(MAX_AFTER_END + 1))?;
    if left < TAR_END_LEFT {
        return Err(Error::corrupt(
            "the tar stream ends without its end-of-archive marker (the archive is truncated)",
        ));
    }
    if left > MAX_AFTER_END {
        return Err(Error::corrupt(format!(
            "the archive is corrupt: more than {} MiB of data follow its tar end-of-archive marker; refusing it",
            MAX_AFTER_END >> 20
        )));
    }
    Ok(stats)
}

/// Reads `r` to its end; returns how many bytes that was.
fn drain<R: Read>(r: &mut R) -> Result<u64> {
    io::copy(r, &mut io::sink()).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            if !matches!(e.get_ref(), Some(inner) if inner.is::<Error>()) =>
        {
            Error::corrupt(format!("the compressed stream is damaged: {e}"))
        }
        _ => from_io(e, "read the archive"),
    })
}

#[cfg(test)]
mod tests;
