//! Deterministic archive construction for the test vectors of `spec/vectors/`.
//!
//! Real archives take their file key, salt and nonce from the OS generator; the vectors fix
//! them so that anyone can rebuild the same bytes from the spec.

use std::io::Write as _;

use zeroize::Zeroizing;

use super::header;
use super::keys::{KEY_LEN, Key};
use super::stanza::{Stanza, SymmetricStanza, WRAP_NONCE_LEN};
use super::stream::StreamEncryptor;

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
}

/// Builds the archive of `plaintext` for `key` from fixed inputs.
pub fn seal_deterministic(key: &Key, inputs: &VectorInputs, plaintext: &[u8]) -> Vec<u8> {
    let file_key = Zeroizing::new(inputs.file_key);
    let mut stanzas: Vec<Stanza> = inputs
        .unknown_stanzas
        .iter()
        .map(|(kind, body)| Stanza::Unknown {
            kind: *kind,
            body: body.clone(),
        })
        .collect();
    stanzas.push(Stanza::Symmetric(SymmetricStanza::wrap_with_nonce(
        key,
        &file_key,
        inputs.wrap_nonce,
    )));
    let mut out = header::encode(&inputs.salt, &stanzas, &file_key);
    let payload_key = header::payload_key_for_vectors(&file_key, &inputs.salt);
    let mut enc = StreamEncryptor::new(&mut out, &payload_key);
    enc.write_all(plaintext)
        .expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail");
    out
}

/// The length of the header of a vector archive with `unknown` extra stanza bytes.
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
        + 6
        + super::stanza::SYMMETRIC_BODY_LEN
        + header::MAC_LEN
}
