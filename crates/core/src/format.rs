//! The encrypted archive format of `spec/archive-format.md`: a header that wraps a random
//! per-archive key in key stanzas, then the payload as a STREAM of AES-256-GCM chunks.

mod context;
mod header;
pub mod index;
mod keyring;
pub mod keys;
mod passphrase;
mod recipient;
mod stanza;
mod stream;
#[cfg(test)]
mod tests;
#[cfg(any(test, feature = "testing"))]
pub mod vectors;

use std::io::{self, Read, Write};

pub use context::{BackupContext, MAX_CONTEXT_BODY, STANZA_CONTEXT};
pub use header::MAGIC;
pub use keyring::Keyring;
pub use keys::{KEY_LEN, Key, KeyId};
pub use passphrase::{
    DEFAULT_WORK_FACTOR, MAX_WORK_FACTOR, PASSPHRASE_BODY_LEN, Passphrase, PassphraseRecipient,
    SCRYPT_SALT_LEN, STANZA_PASSPHRASE,
};
pub use recipient::{Identity, Recipient, STANZA_X25519, X25519_BODY_LEN};
pub use stream::{CHUNK_LEN, SEALED_CHUNK_LEN};

use crate::compression::Algorithm;
use crate::error::{Error, ErrorKind, Result};

/// Name of the encryption scheme, as recorded in manifests.
pub const ALGORITHM: &str = "AES-256-GCM STREAM-BE32 64KiB chunks, HKDF-SHA256 (format 1)";

/// Encrypts everything written to it into an archive written to the inner writer.
pub struct EncryptingWriter<W: Write> {
    inner: stream::StreamEncryptor<W>,
}

impl<W: Write> EncryptingWriter<W> {
    /// Writes the header for `key` to `inner` and returns a writer for the payload.
    pub fn new(inner: W, key: &Key) -> Result<Self> {
        Self::bound(inner, key, None)
    }

    /// Like [`Self::new`], with the header bound to the backup `context` when given.
    pub fn bound(inner: W, key: &Key, context: Option<&BackupContext>) -> Result<Self> {
        Self::sealed(inner, Some(key), &[], context)
    }

    /// Writes the header for `key` (if any) and every one of `recipients`, any of which
    /// opens the archive, bound to `context` when given; returns a writer for the payload.
    pub fn sealed(
        inner: W,
        key: Option<&Key>,
        recipients: &[Recipient],
        context: Option<&BackupContext>,
    ) -> Result<Self> {
        Self::sealed_for(inner, key, recipients, None, context)
    }

    /// Like [`Self::sealed`], with a password stanza for `passphrase` too: the backup
    /// password also opens the archive.
    pub fn sealed_for(
        mut inner: W,
        key: Option<&Key>,
        recipients: &[Recipient],
        passphrase: Option<&PassphraseRecipient>,
        context: Option<&BackupContext>,
    ) -> Result<Self> {
        let (header, payload_key) = header::seal(key, recipients, passphrase, context)?;
        inner
            .write_all(&header)
            .map_err(|e| from_io(e, "write the archive header"))?;
        Ok(Self {
            inner: stream::StreamEncryptor::new(inner, &payload_key),
        })
    }

    /// Seals the final chunk and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        self.inner.finish()
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.inner.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads the plaintext of an archive, each chunk only once it is authenticated.
pub struct DecryptingReader<R: Read> {
    inner: stream::StreamDecryptor<R>,
    key_id: KeyId,
    context: Option<BackupContext>,
}

impl<R: Read> DecryptingReader<R> {
    /// Reads and authenticates the header with `keyring`; fails before any plaintext if no
    /// key fits or the header was modified.
    pub fn new(mut inner: R, keyring: &Keyring) -> Result<Self> {
        let opened = header::open(&mut inner, keyring)?;
        Ok(Self {
            inner: stream::StreamDecryptor::new(inner, &opened.payload_key),
            key_id: opened.key_id,
            context: opened.context,
        })
    }

    /// The id of the key (or of the identity's recipient) that opened the archive.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The backup the authenticated header binds the archive to; `None` for an archive
    /// written before archives carried one.
    pub fn context(&self) -> Option<&BackupContext> {
        self.context.as_ref()
    }
}

/// What an authenticated header says, read without the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderInfo {
    /// The id of the key (or of the identity's recipient) that opened it.
    pub key_id: KeyId,
    /// The backup it is bound to, if any.
    pub context: Option<BackupContext>,
}

/// The most bytes a header can take (`spec/archive-format.md`, "Limits").
pub const MAX_HEADER_LEN: usize = 8
    + header::SALT_LEN
    + 2
    + header::MAX_STANZAS * (6 + header::MAX_STANZA_BODY)
    + header::MAC_LEN;

/// The length of the header at the start of `prefix`, from its stanza lengths; `None`
/// while `prefix` is too short to tell. Nothing is authenticated yet.
pub fn header_len(prefix: &[u8]) -> Result<Option<usize>> {
    header::header_len(prefix)
}

/// Authenticates the header at the start of `prefix` with `keyring` and returns what it
/// says; the payload after it is not read.
pub fn read_header(mut prefix: &[u8], keyring: &Keyring) -> Result<HeaderInfo> {
    let opened = header::open(&mut prefix, keyring)?;
    Ok(HeaderInfo {
        key_id: opened.key_id,
        context: opened.context,
    })
}

/// Opens single chunks of an archive's payload, in any order, for reading parts of it
/// (`ls`, a selective restore): each chunk is authenticated on its own, with its counter
/// and whether it is the final one.
pub struct ChunkOpener {
    stream: aead_stream::StreamBE32<aes_gcm::Aes256Gcm>,
}

impl ChunkOpener {
    /// The plaintext of sealed chunk `counter`, once its tag is verified.
    pub fn open(&self, counter: u32, last: bool, sealed: &[u8]) -> Result<Vec<u8>> {
        use aead_stream::StreamPrimitive as _;
        let mut plain = sealed.to_vec();
        if sealed.len() < SEALED_CHUNK_LEN - CHUNK_LEN
            || self
                .stream
                .decrypt_in_place(counter, last, &[], &mut plain)
                .is_err()
        {
            return Err(Error::corrupt(format!(
                "chunk {counter} of the archive fails authentication (it was modified, reordered, truncated or belongs to another archive)"
            )));
        }
        Ok(plain)
    }
}

/// Authenticates the header at the start of `prefix` with `keyring`, like [`read_header`],
/// and returns what opens the payload's chunks one by one.
pub fn open_for_ranges(mut prefix: &[u8], keyring: &Keyring) -> Result<(HeaderInfo, ChunkOpener)> {
    let opened = header::open(&mut prefix, keyring)?;
    let info = HeaderInfo {
        key_id: opened.key_id,
        context: opened.context,
    };
    Ok((
        info,
        ChunkOpener {
            stream: stream::stream(&opened.payload_key),
        },
    ))
}

/// What a header says before it is authenticated, for an agent that holds recipients and
/// no key: whoever can write to the destination could have written it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeekedHeader {
    /// The ids of the recipients it is encrypted for.
    pub recipient_ids: Vec<KeyId>,
    /// The backup it names, if any.
    pub context: Option<BackupContext>,
}

/// Parses the header at the start of `prefix` without authenticating it.
pub fn peek_header(mut prefix: &[u8]) -> Result<PeekedHeader> {
    let peeked = header::peek(&mut prefix)?;
    Ok(PeekedHeader {
        recipient_ids: peeked.recipient_ids,
        context: peeked.context,
    })
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.inner.read(out)
    }
}

/// What the first bytes of a stored object say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// An encrypted archive of this format.
    Encrypted,
    /// A plain gzip or zstd stream (a backup made without a key).
    Plain(Algorithm),
}

impl ArchiveKind {
    /// Recognises an archive from its first bytes (at least 7).
    pub fn sniff(first: &[u8]) -> Result<Self> {
        if first.len() >= 7 && first[..7] == MAGIC[..7] {
            Ok(Self::Encrypted)
        } else if let Some(compression) = Algorithm::sniff(first) {
            Ok(Self::Plain(compression))
        } else {
            Err(Error::new(
                ErrorKind::Corrupt,
                "the input is neither a service-backup encrypted archive nor a .tar.gz or .tar.zst",
            )
            .with_hint(
                "check that the file is a backup archive (.tar.gz.enc, .tar.gz, .tar.zst.enc or .tar.zst)",
            ))
        }
    }
}

/// Turns an I/O error from a pipe back into our error, keeping one that we raised inside.
pub fn from_io(err: io::Error, action: &str) -> Error {
    if let Some(ours) = crate::error::find_in_io(&err) {
        return ours;
    }
    Error::new(
        if err.kind() == io::ErrorKind::UnexpectedEof {
            ErrorKind::Corrupt
        } else {
            ErrorKind::Io
        },
        format!("cannot {action}: {err}"),
    )
    .with_source(err)
}
