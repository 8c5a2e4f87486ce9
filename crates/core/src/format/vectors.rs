//! Deterministic archive construction for the test vectors of `spec/vectors/`.
//!
//! Real archives take their file key, salt and nonce from the OS generator; the vectors fix
//! them so that anyone can rebuild the same bytes from the spec.

use std::io::Write as _;

use aead_stream::StreamPrimitive as _;
use zeroize::Zeroizing;

use super::context::BackupContext;
use super::header;
use super::keys::{KEY_LEN, Key};
use super::passphrase::{PassphraseRecipient, PassphraseStanza, SCRYPT_SALT_LEN};
use super::recipient::{Recipient, X25519Stanza};
use super::stanza::{Stanza, SymmetricStanza, WRAP_NONCE_LEN};
use super::stream::{StreamEncryptor, stream};

/// The fixed inputs of one vector archive.
#[derive(Debug, Clone)]
pub struct VectorInputs {
    /// The per-archive file key.
    pub file_key: [u8; KEY_LEN],
    /// The payload salt.
    pub salt: [u8; header::SALT_LEN],
    /// The nonce wrapping the file key in the symmetric stanza.
    pub wrap_nonce: [u8; WRAP_NONCE_LEN],
    /// Stanzas of unknown types (type, body) placed before the symmetric one.
    pub unknown_stanzas: Vec<(u16, Vec<u8>)>,
    /// Whether a symmetric stanza for the key is written (after the unknown stanzas).
    pub symmetric: bool,
    /// X25519 recipients (public key, ephemeral secret), a type 3 stanza each, placed
    /// after the symmetric one.
    pub recipients: Vec<([u8; 32], [u8; 32])>,
    /// A backup password, as a type 4 stanza placed after the recipients.
    pub passphrase: Option<PassphraseInput>,
    /// The backup context, as a type 2 stanza placed after the others.
    pub context: Option<BackupContext>,
}

/// The fixed inputs of a type 4 (password) stanza.
#[derive(Debug, Clone)]
pub struct PassphraseInput {
    /// The password, as UTF-8.
    pub passphrase: String,
    /// The scrypt work factor, log2 N.
    pub work_factor: u8,
    /// The scrypt salt.
    pub scrypt_salt: [u8; SCRYPT_SALT_LEN],
    /// The ephemeral X25519 secret of the wrap.
    pub ephemeral_secret: [u8; 32],
}

/// Builds the archive of `plaintext` for `key` from fixed inputs.
pub fn seal_deterministic(key: &Key, inputs: &VectorInputs, plaintext: &[u8]) -> Vec<u8> {
    let (mut out, payload_key) = header_for(key, inputs);
    let mut enc = StreamEncryptor::new(&mut out, &payload_key);
    enc.write_all(plaintext)
        .expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail");
    out
}

/// Builds an archive whose payload is `chunks` sealed as given, in order, the last one
/// flagged final, whatever their sizes.
///
/// This can break the chunking rules (short middle chunks, an empty final chunk after full
/// ones), which the encryptor never does: it is for vectors of archives a reader must refuse.
pub fn seal_chunks_deterministic(key: &Key, inputs: &VectorInputs, chunks: &[&[u8]]) -> Vec<u8> {
    let (mut out, payload_key) = header_for(key, inputs);
    let stream = stream(&payload_key);
    for (i, chunk) in chunks.iter().enumerate() {
        let counter = u32::try_from(i).expect("a vector has few chunks");
        let mut sealed = chunk.to_vec();
        stream
            .encrypt_in_place(counter, i + 1 == chunks.len(), &[], &mut sealed)
            .expect("AES-GCM encrypts a chunk");
        out.extend_from_slice(&sealed);
    }
    out
}

/// The header of a vector archive and its payload key.
fn header_for(key: &Key, inputs: &VectorInputs) -> (Vec<u8>, Zeroizing<[u8; KEY_LEN]>) {
    let file_key = Zeroizing::new(inputs.file_key);
    let mut stanzas: Vec<Stanza> = inputs
        .unknown_stanzas
        .iter()
        .map(|(kind, body)| Stanza::Unknown {
            kind: *kind,
            body: body.clone(),
        })
        .collect();
    if inputs.symmetric {
        stanzas.push(Stanza::Symmetric(SymmetricStanza::wrap_with_nonce(
            key,
            &file_key,
            inputs.wrap_nonce,
        )));
    }
    for (public, ephemeral) in &inputs.recipients {
        let stanza = X25519Stanza::wrap_with_ephemeral(
            &Recipient::from_bytes(*public),
            &file_key,
            *ephemeral,
        )
        .expect("the vectors' recipients are valid points");
        stanzas.push(Stanza::X25519(stanza));
    }
    if let Some(p) = &inputs.passphrase {
        let recipient = PassphraseRecipient::derive_with_salt(
            p.passphrase.as_bytes(),
            p.work_factor,
            p.scrypt_salt,
        )
        .expect("the vectors' work factors are within bounds");
        let stanza =
            PassphraseStanza::wrap_with_ephemeral(&recipient, &file_key, p.ephemeral_secret)
                .expect("a derived public key is a valid point");
        stanzas.push(Stanza::Passphrase(stanza));
    }
    stanzas.extend(inputs.context.clone().map(Stanza::Context));
    let out = header::encode(&inputs.salt, &stanzas, &file_key);
    let payload_key = header::payload_key_for_vectors(&file_key, &inputs.salt);
    (out, payload_key)
}

/// The length of the header of a vector archive, its unknown stanzas included.
pub fn header_len(inputs: &VectorInputs) -> usize {
    let unknown: usize = inputs
        .unknown_stanzas
        .iter()
        .map(|(_, b)| 6 + b.len())
        .sum();
    header::MAGIC.len()
        + header::SALT_LEN
        + 2
        + unknown
        + if inputs.symmetric {
            6 + super::stanza::SYMMETRIC_BODY_LEN
        } else {
            0
        }
        + inputs.recipients.len() * (6 + super::recipient::X25519_BODY_LEN)
        + inputs
            .passphrase
            .as_ref()
            .map_or(0, |_| 6 + super::passphrase::PASSPHRASE_BODY_LEN)
        + inputs.context.as_ref().map_or(0, |c| 6 + c.encode().len())
        + header::MAC_LEN
}
