//! Key stanzas: each wraps the archive's file key for one recipient
//! (`spec/archive-format.md`, "Key stanzas").
//!
//! Type 1 is a symmetric key named by its key id; type 2 names the backup the archive
//! belongs to (`super::context`); type 3 wraps it for an X25519 recipient
//! (`super::recipient`), type 4 for a backup password (`super::passphrase`). Other types
//! are skipped when reading, so that other kinds of
//! recipients can be added without a new format version.

use aes_gcm::aead::{AeadInOut as _, KeyInit as _};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::context::{BackupContext, STANZA_CONTEXT};
use super::keys::{FileKey, KEY_ID_LEN, KEY_LEN, Key, KeyId, TAG_LEN};
use super::passphrase::{PassphraseStanza, STANZA_PASSPHRASE};
use super::recipient::{STANZA_X25519, X25519Stanza};
use crate::error::{Error, Result};

/// Stanza type of a symmetric key named by its key id.
pub const STANZA_SYMMETRIC: u16 = 1;
/// Length of the nonce that wraps the file key.
pub const WRAP_NONCE_LEN: usize = 12;
/// Body length of a symmetric stanza: key id, nonce, wrapped key and tag.
pub const SYMMETRIC_BODY_LEN: usize = KEY_ID_LEN + WRAP_NONCE_LEN + KEY_LEN + TAG_LEN;

const WRAP_INFO: &[u8] = b"service-backup symmetric stanza v1";

/// One key stanza of a header.
#[derive(Clone, Debug)]
pub(crate) enum Stanza {
    /// The file key wrapped under a symmetric key.
    Symmetric(SymmetricStanza),
    /// The file key wrapped for an X25519 recipient (type 3).
    X25519(X25519Stanza),
    /// The file key wrapped for a backup password (type 4).
    Passphrase(PassphraseStanza),
    /// The backup the archive belongs to (type 2); wraps no key.
    Context(BackupContext),
    /// A stanza type this version does not know; kept only for the header MAC.
    Unknown { kind: u16, body: Vec<u8> },
}

/// The file key wrapped under the symmetric key `key_id`.
#[derive(Clone, Debug)]
pub(crate) struct SymmetricStanza {
    pub key_id: KeyId,
    pub nonce: [u8; WRAP_NONCE_LEN],
    /// The wrapped file key followed by its tag.
    pub wrapped: [u8; KEY_LEN + TAG_LEN],
}

impl Stanza {
    /// Appends type, length and body to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (kind, body) = match self {
            Self::Symmetric(s) => {
                let mut body = Vec::with_capacity(SYMMETRIC_BODY_LEN);
                body.extend_from_slice(&s.key_id.0);
                body.extend_from_slice(&s.nonce);
                body.extend_from_slice(&s.wrapped);
                (STANZA_SYMMETRIC, body)
            }
            Self::X25519(s) => (STANZA_X25519, s.body()),
            Self::Passphrase(s) => (STANZA_PASSPHRASE, s.body()),
            Self::Context(c) => (STANZA_CONTEXT, c.encode()),
            Self::Unknown { kind, body } => (*kind, body.clone()),
        };
        out.extend_from_slice(&kind.to_be_bytes());
        let len = u32::try_from(body.len()).expect("stanza bodies are small");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
    }

    /// Parses a stanza body of type `kind`.
    pub fn decode(kind: u16, body: &[u8]) -> Result<Self> {
        if kind == STANZA_CONTEXT {
            return BackupContext::decode(body).map(Self::Context);
        }
        if kind == STANZA_X25519 {
            return X25519Stanza::decode(body).map(Self::X25519);
        }
        if kind == STANZA_PASSPHRASE {
            return PassphraseStanza::decode(body).map(Self::Passphrase);
        }
        if kind != STANZA_SYMMETRIC {
            return Ok(Self::Unknown {
                kind,
                body: body.to_vec(),
            });
        }
        if body.len() != SYMMETRIC_BODY_LEN {
            return Err(Error::corrupt(format!(
                "a symmetric key stanza is {} bytes long, not {SYMMETRIC_BODY_LEN}",
                body.len()
            )));
        }
        let (id, rest) = body.split_at(KEY_ID_LEN);
        let (nonce, wrapped) = rest.split_at(WRAP_NONCE_LEN);
        Ok(Self::Symmetric(SymmetricStanza {
            key_id: KeyId(id.try_into().expect("KEY_ID_LEN bytes")),
            nonce: nonce.try_into().expect("WRAP_NONCE_LEN bytes"),
            wrapped: wrapped.try_into().expect("KEY_LEN + TAG_LEN bytes"),
        }))
    }
}

impl SymmetricStanza {
    /// Wraps `file_key` under `key` with a fresh random nonce.
    pub fn wrap(key: &Key, file_key: &FileKey) -> Result<Self> {
        let mut nonce = [0u8; WRAP_NONCE_LEN];
        crate::random::fill(&mut nonce)?;
        Ok(Self::wrap_with_nonce(key, file_key, nonce))
    }

    /// Wraps `file_key` under `key` with the given nonce (deterministic, for test vectors).
    pub fn wrap_with_nonce(key: &Key, file_key: &FileKey, nonce: [u8; WRAP_NONCE_LEN]) -> Self {
        let cipher = wrap_cipher(key);
        let mut wrapped = [0u8; KEY_LEN + TAG_LEN];
        wrapped[..KEY_LEN].copy_from_slice(file_key.as_ref());
        let tag = cipher
            .encrypt_inout_detached(
                &Nonce::from(nonce),
                &key.id().0,
                (&mut wrapped[..KEY_LEN]).into(),
            )
            .expect("AES-GCM encrypts 32 bytes");
        wrapped[KEY_LEN..].copy_from_slice(&tag);
        Self {
            key_id: key.id(),
            nonce,
            wrapped,
        }
    }

    /// Recovers the file key with `key`, whose id matches this stanza's.
    pub fn unwrap(&self, key: &Key) -> Result<FileKey> {
        let cipher = wrap_cipher(key);
        let mut file_key: FileKey = Zeroizing::new([0u8; KEY_LEN]);
        file_key.copy_from_slice(&self.wrapped[..KEY_LEN]);
        let tag = Tag::try_from(&self.wrapped[KEY_LEN..]).expect("TAG_LEN bytes");
        cipher
            .decrypt_inout_detached(
                &Nonce::from(self.nonce),
                &self.key_id.0,
                file_key.as_mut_slice().into(),
                &tag,
            )
            .map_err(|_| {
                Error::corrupt(format!(
                    "the key stanza for key id {} fails authentication (the header was modified)",
                    self.key_id
                ))
            })?;
        Ok(file_key)
    }
}

fn wrap_cipher(key: &Key) -> Aes256Gcm {
    let hk = Hkdf::<Sha256>::new(None, key.bytes());
    let mut wrap_key = Zeroizing::new([0u8; KEY_LEN]);
    hk.expand(WRAP_INFO, wrap_key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Aes256Gcm::new(&(*wrap_key).into())
}
