//! Stored bytes → SHA-256 check → decrypt → gunzip (or zstd) → safe extraction into a
//! staging directory, moved into the target only when everything checked out.
//!
//! The stages run on three threads, handing each other chunks of [`STAGE_CHUNK`] bytes
//! through short queues: reading, hashing and decrypting on one, decompression on
//! another, tar and the file writes on the calling thread. Each is a few times slower than the one
//! before alone; side by side on two cores a restore takes about half the time.

use std::io::{self, BufReader, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::Scope;

use flate2::read::MultiGzDecoder;
use sha2::{Digest as _, Sha256};

use super::extract::{ExtractStats, Extractor};
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

/// Counts and hashes what is read through it, and reports progress.
struct HashingReader<'a, R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }
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
    let mut hashing = HashingReader {
        inner: input,
        hasher: Sha256::new(),
        count: 0,
        progress,
    };
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
            // The decrypting stage reads to the end of the encrypted stream (its last
            // chunk's tag included) before decompression's stage sees the end of its input.
            std::thread::scope(|scope| extract_tar(stage(scope, reader), extractor, scope))?
        }
        ArchiveKind::Plain(_) => {
            std::thread::scope(|scope| extract_tar(&mut input, extractor, scope))?
        }
    };
    drain(&mut input)?;
    drop(input);
    let sha256 = hex::encode(hashing.hasher.finalize());
    if let Some(expected) = expected {
        if hashing.count != expected.stored_bytes {
            return Err(Error::corrupt(format!(
                "the stored archive is {} bytes, but its manifest says {}",
                hashing.count, expected.stored_bytes
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
        stored_bytes: hashing.count,
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

/// The largest zstd window read, as a power of two: twice a compression block.
const ZSTD_WINDOW_LOG_MAX: u32 = 21;

/// Decompresses `input`, gzip or zstd as its first bytes tell, and extracts the tar
/// stream in it.
fn extract_tar<'scope, R: Read + Send + 'scope>(
    mut input: R,
    extractor: Extractor,
    scope: &'scope Scope<'scope, '_>,
) -> Result<ExtractStats> {
    let first = read_prefix(&mut input, Algorithm::SNIFF_LEN)?;
    let Some(compression) = Algorithm::sniff(&first) else {
        return Err(Error::corrupt(
            "the archive's content is neither a gzip nor a zstd stream",
        ));
    };
    let input = io::Cursor::new(first).chain(input);
    // Every member of the gzip stream, each with its CRC-32 and length checked, or every
    // frame of the zstd stream, each with its checksum checked, on a thread of its own.
    let mut plain = match compression {
        Algorithm::Gzip => stage(scope, MultiGzDecoder::new(input)),
        Algorithm::Zstd => stage(scope, ZstdReader::new(input)?),
    };
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

/// A zstd decoder whose own errors (a bad checksum, a damaged or cut frame) read as
/// damaged data, while those of its input pass as they are.
struct ZstdReader<'a, R: Read> {
    decoder: zstd::stream::read::Decoder<'a, BufReader<Watched<R>>>,
}

impl<R: Read> ZstdReader<'_, R> {
    fn new(input: R) -> Result<Self> {
        let start = |e| from_io(e, "start the zstd decoder");
        let mut decoder = zstd::stream::read::Decoder::new(Watched {
            inner: input,
            failed: false,
        })
        .map_err(start)?;
        // Our frames hold a block each and need a window of at most that; refusing a
        // larger one keeps a foreign or forged frame from taking more memory.
        decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(start)?;
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

/// Bytes one stage of a restore hands to the next at a time.
pub const STAGE_CHUNK: usize = 256 * 1024;

/// Chunks queued between two stages, beyond the one each side holds.
const STAGE_QUEUE: usize = 4;

/// What a stage sends: a buffer and how many of its bytes are data, or the error that
/// ended the stage.
type Piece = io::Result<(Vec<u8>, usize)>;

/// Runs `inner` on a thread of `scope`, read [`STAGE_CHUNK`] bytes at a time into a short
/// queue; the returned reader yields the same bytes and errors in the same order. Dropping
/// the reader stops the thread at its next chunk.
fn stage<'scope, R: Read + Send + 'scope>(
    scope: &'scope Scope<'scope, '_>,
    mut inner: R,
) -> StageReader {
    let (tx, rx) = sync_channel::<Piece>(STAGE_QUEUE);
    let (back, spare) = channel::<Vec<u8>>();
    scope.spawn(move || fill_stage(&mut inner, &tx, &spare));
    StageReader {
        rx,
        back,
        current: Vec::new(),
        len: 0,
        pos: 0,
    }
}

/// The thread of a stage: reads `inner` to its end or first error into `tx`, reusing the
/// buffers the reader gave back.
fn fill_stage<R: Read>(inner: &mut R, tx: &SyncSender<Piece>, spare: &Receiver<Vec<u8>>) {
    loop {
        let mut buf = spare.try_recv().unwrap_or_else(|_| vec![0; STAGE_CHUNK]);
        let mut len = 0;
        while len < buf.len() {
            match inner.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // What came before the error goes first, as a reader in line would
                    // have yielded it.
                    if len > 0 && tx.send(Ok((buf, len))).is_err() {
                        return;
                    }
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        if len == 0 || tx.send(Ok((buf, len))).is_err() {
            return; // the end, or the reader is gone
        }
    }
}

/// The reading end of a [`stage`].
struct StageReader {
    rx: Receiver<Piece>,
    back: Sender<Vec<u8>>,
    current: Vec<u8>,
    len: usize,
    pos: usize,
}

impl Read for StageReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pos == self.len {
            if !self.current.is_empty() {
                let _ = self.back.send(std::mem::take(&mut self.current));
            }
            match self.rx.recv() {
                Ok(Ok((chunk, len))) => (self.current, self.len, self.pos) = (chunk, len, 0),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.len - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads `r` to its end; returns how many bytes that was.
fn drain<R: Read>(r: &mut R) -> Result<u64> {
    io::copy(r, &mut io::sink()).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            if !e.get_ref().is_some_and(|i| i.is::<Error>()) =>
        {
            Error::corrupt(format!("the compressed stream is damaged: {e}"))
        }
        _ => from_io(e, "read the archive"),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::format::{EncryptingWriter, Key};
    use crate::progress::NoProgress;

    /// A reader that hands out one byte per read, as a slow network stream may.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    fn tar_gz() -> Vec<u8> {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, "a.txt", &b"hello"[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap()
    }

    /// Yields `data`, then fails.
    struct FailsAfter<'a>(&'a [u8]);

    impl Read for FailsAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "broken here"));
            }
            let n = buf.len().min(self.0.len()).min(1000);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_stage_passes_every_byte_then_the_error_in_order() {
        let data: Vec<u8> = (0..3 * STAGE_CHUNK + 17).map(|i| (i % 251) as u8).collect();
        std::thread::scope(|scope| {
            let mut out = Vec::new();
            let mut reader = stage(scope, FailsAfter(&data));
            // An empty read neither waits nor takes a chunk.
            assert_eq!(reader.read(&mut []).unwrap(), 0);
            let err = reader.read_to_end(&mut out).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(out == data, "{} bytes of {}", out.len(), data.len());

            let mut out = Vec::new();
            stage(scope, Trickle(&data[..5000]))
                .read_to_end(&mut out)
                .unwrap();
            assert!(out == data[..5000]);

            // A reader dropped half-way stops its thread (the scope would hang otherwise).
            let mut first = [0u8; 10];
            let mut reader = stage(scope, io::repeat(7).take(64 * STAGE_CHUNK as u64));
            reader.read_exact(&mut first).unwrap();
            drop(reader);
        });
    }

    /// A tar of one file with `after` zero bytes after its end marker, zstd-compressed.
    fn tar_zst_with_tail(after: usize) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, "a.txt", &b"hello"[..]).unwrap();
        let mut tar = b.into_inner().unwrap();
        tar.resize(tar.len() + after, 0);
        zstd::encode_all(&tar[..], 1).unwrap()
    }

    #[test]
    fn data_after_the_tar_end_marker_is_refused_past_a_megabyte() {
        // Record padding (GNU tar's 10 KiB records, or a megabyte at most) is read.
        for after in [0, 9 * 1024, MAX_AFTER_END as usize - 1024] {
            let stats = read_archive(
                &tar_zst_with_tail(after)[..],
                &Decryption::default(),
                None,
                Extractor::check_only(),
                &NoProgress,
            )
            .unwrap();
            assert_eq!(stats.extracted.entries, 1);
        }
        // The report's archive had 20 GiB of zeros there, all decompressed for nothing.
        let err = read_archive(
            &tar_zst_with_tail(64 << 20)[..],
            &Decryption::default(),
            None,
            Extractor::check_only(),
            &NoProgress,
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(
            err.to_string()
                .contains("more than 1 MiB of data follow its tar end-of-archive marker"),
            "{err}"
        );
    }

    #[test]
    fn archives_are_recognised_from_one_byte_reads() {
        let key = Key::generate().unwrap();
        let mut w = EncryptingWriter::new(Vec::new(), &key).unwrap();
        w.write_all(&tar_gz()).unwrap();
        let sealed = w.finish().unwrap();
        let decryption = Decryption::new(Some(Keyring::new(key)));
        let stats = read_archive(
            Trickle(&sealed),
            &decryption,
            None,
            Extractor::check_only(),
            &NoProgress,
        )
        .unwrap();
        assert_eq!(stats.extracted.entries, 1);
        let plain = read_archive(
            Trickle(&tar_gz()),
            &Decryption::default(),
            None,
            Extractor::check_only(),
            &NoProgress,
        )
        .unwrap();
        assert_eq!(plain.extracted.bytes, 5);
    }

    #[test]
    fn a_plain_archive_is_refused_when_keys_are_given_unless_allowed() {
        let mut decryption = Decryption::new(Some(Keyring::new(Key::generate().unwrap())));
        let err = read_archive(
            &tar_gz()[..],
            &decryption,
            None,
            Extractor::check_only(),
            &NoProgress,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("not encrypted although a key is configured"),
            "{err}"
        );
        decryption.allow_unencrypted = true;
        read_archive(
            &tar_gz()[..],
            &decryption,
            None,
            Extractor::check_only(),
            &NoProgress,
        )
        .unwrap();
    }

    /// A tar of `a.sql`, whose header and data fill exactly one gzip block, then `b.txt`;
    /// gzipped as a backup does it, so that a gzip member ends where `b.txt`'s header starts.
    fn two_member_tar_gz() -> (Vec<u8>, usize) {
        use crate::compression::Algorithm;
        use crate::pipeline::compress::{BLOCK_SIZE, ParallelCompressor};
        let mut b = tar::Builder::new(Vec::new());
        let mut text = "INSERT INTO t VALUES (1, 'one');\n".repeat(BLOCK_SIZE / 32);
        text.truncate(BLOCK_SIZE - 512);
        for (name, data) in [("a.sql", text.as_bytes()), ("b.txt", &b"bee"[..])] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let gz = std::thread::scope(|scope| {
            let mut gz = ParallelCompressor::new(Vec::new(), Algorithm::Gzip, 6, 2, scope).unwrap();
            gz.write_all(&tar).unwrap();
            gz.finish().unwrap()
        });
        let mut first = flate2::bufread::GzDecoder::new(&gz[..]);
        let first_len = io::copy(&mut first, &mut io::sink()).unwrap();
        assert_eq!(
            first_len, BLOCK_SIZE as u64,
            "the first member is the first block"
        );
        let cut = gz.len() - first.into_inner().len();
        (gz, cut)
    }

    #[test]
    fn every_gzip_member_is_read() {
        let (gz, _) = two_member_tar_gz();
        let stats = read_archive(
            Trickle(&gz),
            &Decryption::default(),
            None,
            Extractor::check_only(),
            &NoProgress,
        )
        .unwrap();
        assert_eq!(stats.extracted.entries, 2);
        let block = crate::pipeline::compress::BLOCK_SIZE;
        assert_eq!(stats.extracted.bytes, (block - 512 + 3) as u64);
    }

    #[test]
    fn an_archive_cut_between_gzip_members_is_refused() {
        // A valid gzip stream, and a tar stream that ends at an entry boundary: only the
        // missing end-of-archive marker shows that `b.txt` was lost.
        let (gz, cut) = two_member_tar_gz();
        let err = read_archive(
            &gz[..cut],
            &Decryption::default(),
            None,
            Extractor::check_only(),
            &NoProgress,
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(
            err.to_string()
                .contains("without its end-of-archive marker"),
            "{err}"
        );
    }

    #[test]
    fn an_archive_of_the_earlier_one_member_format_still_restores() {
        // A plain backup made by the writer before members per block: one gzip member whose
        // 1 MiB blocks were primed with the end of the block before and joined by sync
        // flushes, with stored deflate blocks for the noise. Its source is made again here.
        let gz = include_bytes!("../../tests/fixtures/one-member-v1.tar.gz");
        let mut text = String::new();
        let mut n = 0u64;
        while text.len() < 3 * 1024 * 1024 + 1000 {
            text.push_str(&format!("INSERT INTO t VALUES ({}, 'same row');\n", n % 97));
            n += 1;
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut noise = Vec::new();
        while noise.len() < 20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.extend_from_slice(&x.to_le_bytes());
        }
        let dir = tempfile::tempdir().unwrap();
        let stats = read_archive(
            &gz[..],
            &Decryption::default(),
            None,
            Extractor::into_dir(dir.path()),
            &NoProgress,
        )
        .unwrap();
        assert_eq!(stats.extracted.bytes, (text.len() + noise.len()) as u64);
        assert_eq!(
            std::fs::read(dir.path().join("db/dump.sql")).unwrap(),
            text.as_bytes()
        );
        assert_eq!(std::fs::read(dir.path().join("noise.bin")).unwrap(), noise);
    }
}
