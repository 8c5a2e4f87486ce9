//! Writes the test vectors of the archive format (`spec/archive-format.md`, "Test vectors")
//! into a directory: `NAME.sbak`, the archive bytes, and `NAME.json`, what a reader must
//! make of them.
//!
//! ```text
//! cargo run -p service-backup-core --example make-vectors -- spec/vectors
//! ```
//!
//! Every key, file key, salt and nonce is fixed, so the output is the same byte for byte on
//! every run; the core test `spec_vectors` rebuilds the vectors with [`definitions`] and
//! compares them with the files.

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use service_backup_core::format::vectors::{
    PassphraseInput, VectorInputs, header_len, seal_chunks_deterministic, seal_deterministic,
};
use service_backup_core::format::{
    BackupContext, CHUNK_LEN, Identity, KEY_LEN, Key, PASSPHRASE_BODY_LEN, PassphraseRecipient,
    Recipient, SEALED_CHUNK_LEN, STANZA_CONTEXT,
};

/// One test vector: the archive bytes and what a reader must make of them.
pub struct Vector {
    /// The file name without its ending.
    pub name: &'static str,
    /// The bytes of `NAME.sbak`.
    pub archive: Vec<u8>,
    /// The content of `NAME.json`.
    pub meta: Meta,
}

impl Vector {
    /// The text of `NAME.json`.
    pub fn json(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.meta).expect("a vector serializes");
        text.push('\n');
        text
    }
}

/// The JSON description of a vector, in the field order of the spec.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    /// What the vector checks.
    pub description: String,
    /// The current key of the reader's keyring, base64 (absent: the reader holds no key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Previous keys of the reader's keyring, base64, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub previous_keys: Vec<String>,
    /// The reader's X25519 identities, as identity file lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<String>,
    /// The reader's backup password (UTF-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<String>,
    /// `ok`, `corrupt` or `wrong_key`.
    pub expect: &'static str,
    /// How to regenerate the plaintext, for a plaintext that is not text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<String>,
    /// The plaintext, when it is short text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext_utf8: Option<String>,
    /// Length of the plaintext (`ok` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext_len: Option<usize>,
    /// SHA-256 of the plaintext, hex (`ok` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext_sha256: Option<String>,
    /// The key id, hex, of the keyring key that opens the archive (`ok` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opened_by_key_id: Option<String>,
    /// A part of the message of the error a reader gives (failures only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_contains: Option<String>,
    /// The fixed inputs the archive (or the archive it was derived from) was sealed with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Inputs>,
    /// How the bytes were made from the inputs, when not simply sealed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub construction: Option<String>,
    /// The backup context the header binds (`ok` vectors with a type 2 stanza).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
    /// The entries the archive's index lists (vectors with an index, section 15).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_listing: Option<Vec<serde_json::Value>>,
}

/// A backup context as a vector's JSON gives it.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    /// The backup's name.
    pub name: String,
    /// The instance id.
    pub instance_id: String,
    /// The start time, RFC 3339 with nanoseconds.
    pub started_at: String,
}

impl Context {
    fn of(c: &BackupContext) -> Self {
        Self {
            name: c.name.clone(),
            instance_id: c.instance_id.clone(),
            started_at: c
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        }
    }
}

/// The fixed inputs of a sealed archive, so that an encryptor can be checked too.
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    /// The key the archive is sealed for, base64 (absent: no symmetric stanza).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_key: Option<String>,
    /// The per-archive file key, hex.
    pub file_key: String,
    /// The payload salt, hex.
    pub payload_salt: String,
    /// The nonce of the symmetric stanza, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wrap_nonce: Option<String>,
    /// Stanzas of unknown types written before the symmetric one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown_stanzas: Vec<UnknownStanza>,
    /// X25519 recipients, a type 3 stanza each written after the symmetric one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub x25519_recipients: Vec<X25519Input>,
    /// The password stanza (type 4) written after the recipients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passphrase_stanza: Option<PassphraseStanzaInput>,
    /// The context stanza written after the key stanzas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
}

/// The inputs of one type 3 stanza.
#[derive(Debug, Clone, Serialize)]
pub struct X25519Input {
    /// The recipient string.
    pub recipient: String,
    /// The ephemeral secret key, hex.
    pub ephemeral_secret: String,
}

/// The inputs of one type 4 stanza.
#[derive(Debug, Clone, Serialize)]
pub struct PassphraseStanzaInput {
    /// The password, UTF-8.
    pub passphrase: String,
    /// The scrypt work factor, log2 N.
    pub work_factor: u8,
    /// The scrypt salt, hex.
    pub scrypt_salt: String,
    /// The ephemeral secret key, hex.
    pub ephemeral_secret: String,
}

/// A stanza of a type readers do not know.
#[derive(Debug, Clone, Serialize)]
pub struct UnknownStanza {
    /// Its type number.
    #[serde(rename = "type")]
    pub kind: u16,
    /// Its body, hex.
    pub body: String,
}

/// The key of every reader: bytes 0x00 to 0x1f.
fn the_key() -> [u8; KEY_LEN] {
    key_bytes(0x00)
}

/// A rotated key, still held as a previous key: bytes 0x20 to 0x3f.
fn previous_key() -> [u8; KEY_LEN] {
    key_bytes(0x20)
}

/// A key no reader holds: bytes 0x40 to 0x5f.
fn other_key() -> [u8; KEY_LEN] {
    key_bytes(0x40)
}

fn key_bytes(first: u8) -> [u8; KEY_LEN] {
    std::array::from_fn(|i| first + i as u8)
}

/// The inputs of base archive `n`: every byte of the file key is 0xa0 + n, of the salt
/// 0xb0 + n, of the wrap nonce 0xc0 + n (n < 32), so no two archives share a file key.
fn inputs(n: u8) -> VectorInputs {
    assert!(n < 32);
    VectorInputs {
        file_key: [0xa0 + n; KEY_LEN],
        salt: [0xb0 + n; 16],
        wrap_nonce: [0xc0 + n; 12],
        unknown_stanzas: vec![],
        symmetric: true,
        recipients: vec![],
        passphrase: None,
        context: None,
    }
}

/// The identity of the readers of the recipient vectors: bytes 0x60 to 0x7f.
fn the_identity() -> Identity {
    Identity::from_bytes(key_bytes(0x60))
}

/// An identity no archive is made for: bytes 0x80 to 0x9f.
fn other_identity() -> Identity {
    Identity::from_bytes(key_bytes(0x80))
}

/// The inputs of recipient archive `n`: as [`inputs`], with a type 3 stanza for
/// [`the_identity`] whose ephemeral secret is 32 bytes 0xe0 + n, and a symmetric stanza
/// only when `symmetric`.
fn recipient_inputs(n: u8, symmetric: bool) -> VectorInputs {
    VectorInputs {
        symmetric,
        recipients: vec![(*the_identity().recipient().public_bytes(), [0xe0 + n; 32])],
        ..inputs(n)
    }
}

/// The backup context of the context vectors.
fn the_context() -> BackupContext {
    BackupContext {
        name: "20260101T000000Z-vm-0a1b2c3d".into(),
        instance_id: "vm".into(),
        started_at: chrono::DateTime::from_timestamp(1_767_225_600, 123_456_789)
            .expect("a valid time"),
    }
}

/// The plaintext of most vectors: byte i is i * 31 mod 251.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn pattern_text(len: usize) -> String {
    format!("bytes i*31 mod 251 for i in 0..{len}")
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn key_id(bytes: [u8; KEY_LEN]) -> String {
    Key::from_bytes(bytes).id().to_string()
}

fn describe_inputs(recipient: [u8; KEY_LEN], inputs: &VectorInputs) -> Inputs {
    Inputs {
        recipient_key: inputs.symmetric.then(|| b64(&recipient)),
        file_key: hex::encode(inputs.file_key),
        payload_salt: hex::encode(inputs.salt),
        wrap_nonce: inputs.symmetric.then(|| hex::encode(inputs.wrap_nonce)),
        unknown_stanzas: inputs
            .unknown_stanzas
            .iter()
            .map(|(kind, body)| UnknownStanza {
                kind: *kind,
                body: hex::encode(body),
            })
            .collect(),
        x25519_recipients: inputs
            .recipients
            .iter()
            .map(|(public, ephemeral)| X25519Input {
                recipient: Recipient::from_bytes(*public).to_string(),
                ephemeral_secret: hex::encode(ephemeral),
            })
            .collect(),
        passphrase_stanza: inputs.passphrase.as_ref().map(|p| PassphraseStanzaInput {
            passphrase: p.passphrase.clone(),
            work_factor: p.work_factor,
            scrypt_salt: hex::encode(p.scrypt_salt),
            ephemeral_secret: hex::encode(p.ephemeral_secret),
        }),
        context: inputs.context.as_ref().map(Context::of),
    }
}

/// A sealed archive with the plaintext and inputs it was made from.
struct Base {
    recipient: [u8; KEY_LEN],
    inputs: VectorInputs,
    plaintext_text: String,
    archive: Vec<u8>,
}

impl Base {
    fn seal(
        recipient: [u8; KEY_LEN],
        inputs: VectorInputs,
        plaintext: &[u8],
        text: String,
    ) -> Self {
        let archive = seal_deterministic(&Key::from_bytes(recipient), &inputs, plaintext);
        Self {
            recipient,
            inputs,
            plaintext_text: text,
            archive,
        }
    }

    fn header_len(&self) -> usize {
        header_len(&self.inputs)
    }

    /// A vector of an archive a reader must refuse, derived from this one.
    fn refused(
        &self,
        name: &'static str,
        expect: &'static str,
        description: &str,
        construction: &str,
        error_contains: &str,
        archive: Vec<u8>,
    ) -> Vector {
        Vector {
            name,
            archive,
            meta: Meta {
                construction: Some(if construction.is_empty() {
                    format!(
                        "the archive of {} sealed for inputs.recipient_key with the inputs",
                        self.plaintext_text
                    )
                } else {
                    format!(
                        "the archive of {} sealed for inputs.recipient_key with the inputs; then {construction}",
                        self.plaintext_text
                    )
                }),
                inputs: Some(describe_inputs(self.recipient, &self.inputs)),
                ..refusal(description, expect, error_contains)
            },
        }
    }

    /// This archive with `mask` XOR one of its bytes.
    fn flipped(&self, offset: usize, mask: u8) -> Vec<u8> {
        let mut bytes = self.archive.clone();
        bytes[offset] ^= mask;
        bytes
    }
}

/// The JSON of a refused input read with the usual keyring (the key and no previous key).
fn refusal(description: &str, expect: &'static str, error_contains: &str) -> Meta {
    Meta {
        description: description.to_string(),
        key: Some(b64(&the_key())),
        previous_keys: vec![],
        identities: vec![],
        passphrase: None,
        expect,
        plaintext: None,
        plaintext_utf8: None,
        plaintext_len: None,
        plaintext_sha256: None,
        opened_by_key_id: None,
        error_contains: Some(error_contains.to_string()),
        inputs: None,
        construction: None,
        context: None,
        index_listing: None,
    }
}

/// A vector that opens with the key (or a previous key) to `plaintext`.
fn valid(
    name: &'static str,
    description: &str,
    base: &Base,
    plaintext: &[u8],
    previous_keys: &[[u8; KEY_LEN]],
) -> Vector {
    let utf8 = std::str::from_utf8(plaintext)
        .ok()
        .filter(|s| s.len() <= 200 && s.chars().all(|c| c == '\n' || !c.is_control()))
        .map(str::to_string);
    Vector {
        name,
        archive: base.archive.clone(),
        meta: Meta {
            description: description.to_string(),
            key: Some(b64(&the_key())),
            previous_keys: previous_keys.iter().map(|k| b64(k)).collect(),
            identities: vec![],
            passphrase: None,
            expect: "ok",
            plaintext: utf8.is_none().then(|| base.plaintext_text.clone()),
            plaintext_utf8: utf8,
            plaintext_len: Some(plaintext.len()),
            plaintext_sha256: Some(sha256_hex(plaintext)),
            opened_by_key_id: Some(key_id(base.recipient)),
            error_contains: None,
            inputs: Some(describe_inputs(base.recipient, &base.inputs)),
            construction: None,
            context: base.inputs.context.as_ref().map(Context::of),
            index_listing: None,
        },
    }
}

/// A small `.tar.gz` holding one file, `hello.txt`, with a gzip stream of one stored
/// (uncompressed) deflate block so that its bytes do not depend on a compressor.
fn plain_tar_gz() -> Vec<u8> {
    let content = b"hello from service-backup\n";
    let mut header = tar::Header::new_gnu();
    header.set_path("hello.txt").expect("a short relative path");
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_767_225_600); // 2026-01-01T00:00:00Z
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append(&header, &content[..])
        .expect("writing to a Vec cannot fail");
    let tar = builder.into_inner().expect("writing to a Vec cannot fail");

    let len = u16::try_from(tar.len()).expect("one stored block holds the tar");
    let mut crc = flate2::Crc::new();
    crc.update(&tar);
    // gzip header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    // One final stored block: BFINAL=1, BTYPE=00, then LEN and its one's complement.
    gz.push(0x01);
    gz.extend_from_slice(&len.to_le_bytes());
    gz.extend_from_slice(&(!len).to_le_bytes());
    gz.extend_from_slice(&tar);
    gz.extend_from_slice(&crc.sum().to_le_bytes());
    gz.extend_from_slice(&u32::try_from(tar.len()).expect("small").to_le_bytes());
    gz
}

/// A gzip-of-tar payload with its index (section 15), as a backup writes it: a folder, a
/// file and a link, in one block of stored deflate data so that its bytes do not depend on
/// a compressor; and the listing its index gives.
fn indexed_tar_gz() -> (Vec<u8>, Vec<serde_json::Value>) {
    use service_backup_core::format::index::{EntryKind, IndexEntry, carrier};
    use service_backup_core::pipeline::index::IndexRecorder;
    let mtime = 1_767_225_600u64; // 2026-01-01T00:00:00Z
    let mut builder = tar::Builder::new(Vec::new());
    let mut recorder = IndexRecorder::default();
    let mut listing = Vec::new();
    let content = b"hello from an indexed archive\n";
    // Path, type, mode, content, link target.
    type Item<'a> = (&'a str, EntryKind, u32, &'a [u8], Option<&'a str>);
    let items: [Item; 3] = [
        ("etc", EntryKind::Dir, 0o755, b"", None),
        ("etc/hello.txt", EntryKind::File, 0o644, content, None),
        (
            "latest",
            EntryKind::Symlink,
            0o777,
            b"",
            Some("etc/hello.txt"),
        ),
    ];
    for (path, kind, mode, data, link) in items {
        let start = builder.get_ref().len() as u64;
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        header.set_entry_type(match kind {
            EntryKind::Dir => tar::EntryType::Directory,
            EntryKind::File => tar::EntryType::Regular,
            EntryKind::Symlink => tar::EntryType::Symlink,
        });
        match link {
            Some(target) => builder
                .append_link(&mut header, path, target)
                .expect("writing to a Vec cannot fail"),
            None => builder
                .append_data(&mut header, path, data)
                .expect("writing to a Vec cannot fail"),
        }
        let entry = IndexEntry {
            path: path.into(),
            kind,
            mode,
            size: data.len() as u64,
            mtime: i64::try_from(mtime).expect("small"),
            link: link.map(str::to_string),
            tar_start: start,
            header_blocks: 1,
        };
        recorder.record(&entry).expect("in memory");
        listing.push(serde_json::json!({
            "path": path,
            "type": kind.name(),
            "mode": format!("{mode:04o}"),
            "size": data.len(),
            "mtime": mtime,
            "link_target": link,
        }));
    }
    let tar = builder.into_inner().expect("writing to a Vec cannot fail");
    let mut gz = stored_gzip(&tar);
    let compressed = gz.len() as u64;
    let block = u32::try_from(gz.len()).expect("small");
    let body = recorder
        .into_body(1 << 20, &[block], tar.len() as u64)
        .expect("in memory");
    carrier::write_index(
        service_backup_core::compression::Algorithm::Gzip,
        body,
        compressed,
        &mut gz,
    )
    .expect("writing to a Vec cannot fail");
    (gz, listing)
}

/// `data` as one gzip member of one stored deflate block.
fn stored_gzip(data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(data.len()).expect("one stored block holds the data");
    let mut crc = flate2::Crc::new();
    crc.update(data);
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 0x01];
    gz.extend_from_slice(&len.to_le_bytes());
    gz.extend_from_slice(&(!len).to_le_bytes());
    gz.extend_from_slice(data);
    gz.extend_from_slice(&crc.sum().to_le_bytes());
    gz.extend_from_slice(&u32::try_from(data.len()).expect("small").to_le_bytes());
    gz
}

/// Vectors of the archive index: an archive with one, and the same with its index damaged.
fn index_vectors(key: [u8; KEY_LEN]) -> Vec<Vector> {
    let (payload, listing) = indexed_tar_gz();
    let text = "a gzip stream of a tar (etc/, etc/hello.txt, latest -> etc/hello.txt; mode 0755, 0644, 0777; mtime 2026-01-01T00:00:00Z) in one member of one stored deflate block, then its index (section 15)";
    let base = Base::seal(key, inputs(31), &payload, text.into());
    let mut ok = valid(
        "ok-index-gzip",
        "a payload with an index: index_listing gives the entries it lists",
        &base,
        &payload,
        &[],
    );
    ok.meta.index_listing = Some(listing);
    // The third byte of the index body: 24 bytes into its first carrier, which starts where
    // the footer (40 bytes, 10 before the payload's end) says.
    let footer = &payload[payload.len() - 50..payload.len() - 10];
    let index_start = u64::from_le_bytes(footer[8..16].try_into().expect("8 bytes"));
    let body_at = base.header_len() + usize::try_from(index_start).expect("small") + 24 + 2;
    let flipped = base.refused(
        "corrupt-index-flipped",
        "corrupt",
        "one byte of the index, inside its sealed chunk: the chunk, and so the index, fails authentication",
        "one bit of the index body flipped in the sealed chunk",
        "chunk 0 of the archive fails authentication",
        base.flipped(body_at, 0x01),
    );
    vec![ok, flipped]
}

/// 256 bytes of SHA-256 in counter mode over a fixed label.
fn junk() -> Vec<u8> {
    let bytes: Vec<u8> = (0u32..8)
        .flat_map(|i| {
            let mut h = Sha256::new();
            h.update(b"service-backup vector junk");
            h.update(i.to_be_bytes());
            h.finalize().to_vec()
        })
        .collect();
    assert!(!bytes.starts_with(b"SBACKUP") && !bytes.starts_with(&[0x1f, 0x8b]));
    bytes
}

/// Every vector, in a stable order.
pub fn definitions() -> Vec<Vector> {
    let key = the_key();
    let mut out = Vec::new();

    // Valid archives.
    let sizes: [(&'static str, &str, u8, usize); 5] = [
        (
            "ok-empty",
            "an empty payload: one final chunk of 0 bytes, just its tag",
            1,
            0,
        ),
        ("ok-one-byte", "a payload of 1 byte: one final chunk", 2, 1),
        (
            "ok-one-full-chunk",
            "a payload of exactly 65536 bytes: one full chunk that is the final one (no empty chunk follows)",
            3,
            CHUNK_LEN,
        ),
        (
            "ok-one-chunk-plus-one",
            "a payload of 65537 bytes: one full chunk, then a final chunk of 1 byte",
            4,
            CHUNK_LEN + 1,
        ),
        (
            "ok-two-full-chunks",
            "a payload of exactly 131072 bytes: two full chunks, the second one final",
            5,
            2 * CHUNK_LEN,
        ),
    ];
    let mut two_full = None;
    for (name, description, n, len) in sizes {
        let plain = pattern(len);
        let base = Base::seal(key, inputs(n), &plain, pattern_text(len));
        out.push(valid(name, description, &base, &plain, &[]));
        if len == 2 * CHUNK_LEN {
            two_full = Some(base);
        }
    }
    let two_full = two_full.expect("listed above");

    let mut with_unknown = inputs(6);
    with_unknown.unknown_stanzas = vec![(
        0x0100,
        b"a recipient of a type this reader does not know".to_vec(),
    )];
    let plain = b"hello from a header with a stanza of an unknown type\n";
    let unknown = Base::seal(
        key,
        with_unknown,
        plain,
        "the text of plaintext_utf8".into(),
    );
    out.push(valid(
        "ok-unknown-stanza-first",
        "a stanza of unknown type 0x0100 before the symmetric stanza: skipped, but covered by the header MAC",
        &unknown,
        plain,
        &[],
    ));

    let plain = b"sealed for a key that was rotated out\n";
    let rotated = Base::seal(
        previous_key(),
        inputs(7),
        plain,
        "the text of plaintext_utf8".into(),
    );
    out.push(valid(
        "ok-previous-key",
        "sealed for a key the reader keeps as a previous key; it opens with that key",
        &rotated,
        plain,
        &[previous_key()],
    ));

    let tgz = plain_tar_gz();
    let tar_gz = Base::seal(
        key,
        inputs(8),
        &tgz,
        "the bytes of corrupt-plain-tar-gz.sbak".into(),
    );
    out.push(valid(
        "ok-tar-gz-payload",
        "a payload as backups carry it: a gzip stream of a tar holding hello.txt (the same bytes as corrupt-plain-tar-gz.sbak)",
        &tar_gz,
        &tgz,
        &[],
    ));

    // The archive index (section 15).
    out.extend(index_vectors(key));

    // The backup context (type 2).
    out.extend(context_vectors(key));

    // X25519 recipients (type 3).
    out.extend(recipient_vectors(key));

    // Backup passwords (type 4).
    out.extend(passphrase_vectors(key));

    // Archives sealed for no key the reader holds.
    let foreign = Base::seal(other_key(), inputs(11), &pattern(1000), pattern_text(1000));
    let mut v = foreign.refused(
        "wrong-key",
        "wrong_key",
        "sealed for a key the reader does not hold (not even as a previous key); refused from the header alone",
        "",
        &format!("the archive was encrypted for key id {}", key_id(other_key())),
        foreign.archive.clone(),
    );
    v.meta.previous_keys = vec![b64(&previous_key())];
    out.push(v);

    let small = Base::seal(key, inputs(9), &pattern(1000), pattern_text(1000));
    let h = small.header_len();
    let mut flipped_id = small.archive[32..40].to_vec();
    flipped_id[0] ^= 0x01;
    out.push(small.refused(
        "wrong-key-stanza-key-id-flipped",
        "wrong_key",
        "the key id of the symmetric stanza altered: it names no key of the reader, so the result is a wrong key, not a damaged header",
        "the byte at offset 32 (the first byte of the stanza's key id) XORed with 0x01",
        &format!(
            "the archive was encrypted for key id {}",
            hex::encode(flipped_id)
        ),
        small.flipped(32, 0x01),
    ));

    let symmetric_type_at = 26 + 6 + with_unknown_body_len(&unknown);
    let mut only_unknown = unknown.archive.clone();
    only_unknown[symmetric_type_at..symmetric_type_at + 2]
        .copy_from_slice(&0x00ffu16.to_be_bytes());
    out.push(unknown.refused(
        "wrong-key-only-unknown-stanzas",
        "wrong_key",
        "every stanza is of a type the reader does not know: no key can open it",
        &format!("the type of the symmetric stanza (offset {symmetric_type_at}) set to 0x00ff"),
        "a kind of key this version does not know",
        only_unknown,
    ));

    // Truncations.
    let three = Base::seal(
        key,
        inputs(12),
        &pattern(2 * CHUNK_LEN + 100),
        pattern_text(2 * CHUNK_LEN + 100),
    );
    let h3 = three.header_len();
    out.push(three.refused(
        "corrupt-truncated-at-chunk-boundary",
        "corrupt",
        "an archive of three chunks cut after its first chunk, exactly at a chunk boundary",
        &format!(
            "cut to its first {} bytes (header and chunk 0)",
            h3 + SEALED_CHUNK_LEN
        ),
        "truncated after chunk 0",
        three.archive[..h3 + SEALED_CHUNK_LEN].to_vec(),
    ));

    let two_plus = Base::seal(
        key,
        inputs(13),
        &pattern(CHUNK_LEN + 100),
        pattern_text(CHUNK_LEN + 100),
    );
    let h2 = two_plus.header_len();
    out.push(two_plus.refused(
        "corrupt-truncated-mid-chunk",
        "corrupt",
        "an archive of two chunks cut 50 bytes into its final chunk",
        &format!("cut to its first {} bytes", h2 + SEALED_CHUNK_LEN + 50),
        "chunk 1 of the archive fails authentication",
        two_plus.archive[..h2 + SEALED_CHUNK_LEN + 50].to_vec(),
    ));
    out.push(two_plus.refused(
        "corrupt-truncated-inside-tag",
        "corrupt",
        "an archive of two chunks cut 5 bytes into its final chunk: less than a tag remains",
        &format!("cut to its first {} bytes", h2 + SEALED_CHUNK_LEN + 5),
        "truncated in chunk 1 (5 bytes, less than a tag)",
        two_plus.archive[..h2 + SEALED_CHUNK_LEN + 5].to_vec(),
    ));
    out.push(small.refused(
        "corrupt-truncated-header",
        "corrupt",
        "cut inside the header MAC",
        &format!("cut to its first {} bytes", h - 10),
        "the archive header is truncated",
        small.archive[..h - 10].to_vec(),
    ));
    out.push(small.refused(
        "corrupt-header-only",
        "corrupt",
        "a complete, valid header and no payload at all (not even the final chunk's tag)",
        &format!("cut to its first {h} bytes, the whole header"),
        "the archive has a header but no payload",
        small.archive[..h].to_vec(),
    ));
    out.push(Vector {
        name: "corrupt-empty-file",
        archive: vec![],
        meta: refusal(
            "an empty file",
            "corrupt",
            "the archive is empty or shorter than its header",
        ),
    });

    // Tampering with the header.
    out.push(small.refused(
        "corrupt-header-mac-flipped",
        "corrupt",
        "one bit of the header MAC flipped",
        &format!(
            "the byte at offset {} (the first byte of the header MAC) XORed with 0x01",
            h - 32
        ),
        "the archive header fails authentication",
        small.flipped(h - 32, 0x01),
    ));
    out.push(small.refused(
        "corrupt-stanza-wrapped-key-flipped",
        "corrupt",
        "one bit of the wrapped file key in the symmetric stanza flipped: the stanza fails authentication",
        "the byte at offset 52 (the first byte of the wrapped file key) XORed with 0x01",
        &format!(
            "the key stanza for key id {} fails authentication",
            key_id(key)
        ),
        small.flipped(52, 0x01),
    ));
    out.push(small.refused(
        "corrupt-salt-flipped",
        "corrupt",
        "one bit of the payload salt flipped: the salt is covered by the header MAC",
        "the byte at offset 8 (the first byte of the payload salt) XORed with 0x01",
        "the archive header fails authentication",
        small.flipped(8, 0x01),
    ));
    let unknown_body_at = 26 + 6;
    out.push(unknown.refused(
        "corrupt-unknown-stanza-flipped",
        "corrupt",
        "one bit in the body of a stanza of unknown type flipped: skipped stanzas are still covered by the header MAC",
        &format!(
            "the byte at offset {unknown_body_at} (the first byte of the unknown stanza's body) XORed with 0x01"
        ),
        "the archive header fails authentication",
        unknown.flipped(unknown_body_at, 0x01),
    ));
    let mut count_zero = small.archive.clone();
    count_zero[24..26].copy_from_slice(&0u16.to_be_bytes());
    out.push(small.refused(
        "corrupt-stanza-count-zero",
        "corrupt",
        "a header that lists no stanza",
        "the stanza count (offset 24) set to 0",
        "the archive header lists 0 key stanzas",
        count_zero,
    ));
    let mut many = inputs(21);
    many.unknown_stanzas = (0u8..64).map(|i| (0x0100, vec![i])).collect();
    let many = Base::seal(key, many, &pattern(100), pattern_text(100));
    out.push(many.refused(
        "corrupt-65-stanzas",
        "corrupt",
        "a header that holds 65 stanzas (64 of unknown type 0x0100, then the symmetric one), one more than the limit",
        "",
        "the archive header lists 65 key stanzas (1 to 64 are valid)",
        many.archive.clone(),
    ));
    let mut count_high = small.archive.clone();
    count_high[24..26].copy_from_slice(&65u16.to_be_bytes());
    out.push(small.refused(
        "corrupt-stanza-count-too-large",
        "corrupt",
        "a header that lists 65 stanzas, one more than the limit",
        "the stanza count (offset 24) set to 65",
        "the archive header lists 65 key stanzas",
        count_high,
    ));
    let mut body_high = small.archive.clone();
    body_high[28..32].copy_from_slice(&4097u32.to_be_bytes());
    out.push(small.refused(
        "corrupt-stanza-body-too-large",
        "corrupt",
        "a stanza whose length field claims 4097 bytes, one more than the limit",
        "the length of the symmetric stanza (offset 28) set to 4097",
        "claims 4097 bytes",
        body_high,
    ));
    let mut body_short = small.archive.clone();
    body_short[28..32].copy_from_slice(&67u32.to_be_bytes());
    out.push(small.refused(
        "corrupt-symmetric-stanza-wrong-length",
        "corrupt",
        "a symmetric stanza of 67 bytes instead of 68",
        "the length of the symmetric stanza (offset 28) set to 67",
        "a symmetric key stanza is 67 bytes long, not 68",
        body_short,
    ));
    let mut version = small.archive.clone();
    version[7] = 2;
    out.push(small.refused(
        "corrupt-unknown-version",
        "corrupt",
        "the magic of a format version 2 this reader does not know",
        "the byte at offset 7 (the version) set to 2",
        "the archive is of format version 2",
        version,
    ));

    // Tampering with the payload.
    out.push(small.refused(
        "corrupt-chunk-body-flipped",
        "corrupt",
        "one bit of the ciphertext of chunk 0 flipped",
        &format!(
            "the byte at offset {} (10 bytes into chunk 0) XORed with 0x80",
            h + 10
        ),
        "chunk 0 of the archive fails authentication",
        small.flipped(h + 10, 0x80),
    ));
    let last = small.archive.len() - 1;
    out.push(small.refused(
        "corrupt-chunk-tag-flipped",
        "corrupt",
        "one bit of the tag of chunk 0 flipped",
        &format!("the byte at offset {last} (the last byte of the tag of chunk 0) XORed with 0x80"),
        "chunk 0 of the archive fails authentication",
        small.flipped(last, 0x80),
    ));
    let h5 = two_full.header_len();
    let mut swapped = two_full.archive[..h5].to_vec();
    swapped.extend_from_slice(&two_full.archive[h5 + SEALED_CHUNK_LEN..]);
    swapped.extend_from_slice(&two_full.archive[h5..h5 + SEALED_CHUNK_LEN]);
    out.push(two_full.refused(
        "corrupt-chunks-swapped",
        "corrupt",
        "the two full chunks of an archive swapped",
        &format!("its two sealed chunks of {SEALED_CHUNK_LEN} bytes (from offset {h5}) swapped"),
        "chunk 0 of the archive fails authentication",
        swapped,
    ));
    out.push(two_full.refused(
        "corrupt-final-chunk-dropped",
        "corrupt",
        "the final chunk of an archive of two full chunks dropped: what is left ends at a chunk boundary with a chunk that is not final",
        &format!(
            "cut to its first {} bytes (header and chunk 0)",
            h5 + SEALED_CHUNK_LEN
        ),
        "truncated after chunk 0",
        two_full.archive[..h5 + SEALED_CHUNK_LEN].to_vec(),
    ));
    let mut appended = small.archive.clone();
    appended.extend_from_slice(b"appended data!!\n");
    out.push(small.refused(
        "corrupt-data-appended",
        "corrupt",
        "16 bytes appended after the final chunk: the final chunk is no longer where the archive's end says it is",
        "the 16 bytes of the text \"appended data!!\\n\" appended",
        "chunk 0 of the archive fails authentication",
        appended,
    ));
    let donor = Base::seal(key, inputs(10), &pattern(1000), pattern_text(1000));
    let mut mixed = donor.archive[..donor.header_len()].to_vec();
    mixed.extend_from_slice(&small.archive[h..]);
    out.push(small.refused(
        "corrupt-header-from-another-archive",
        "corrupt",
        "the valid header of another archive (same key, another file key) before this archive's payload",
        &format!(
            "its header replaced by the header of the archive of the same plaintext sealed for the same key with file key {}, salt {} and wrap nonce {}",
            hex::encode(donor.inputs.file_key),
            hex::encode(donor.inputs.salt),
            hex::encode(donor.inputs.wrap_nonce)
        ),
        "chunk 0 of the archive fails authentication",
        mixed,
    ));

    // Chunking rules broken by the writer.
    let chunked = Base {
        recipient: key,
        inputs: inputs(14),
        plaintext_text: pattern_text(CHUNK_LEN),
        archive: vec![],
    };
    let full = pattern(CHUNK_LEN);
    out.push(chunked.refused(
        "corrupt-empty-final-chunk-after-full",
        "corrupt",
        "a payload of 65536 bytes written as a full chunk that is not final, then an empty final chunk; only an empty payload may have an empty final chunk",
        "the payload resealed as chunk 0 (65536 bytes, not final) and chunk 1 (0 bytes, final)",
        "chunk 1 is an empty final chunk after full ones",
        seal_chunks_deterministic(&Key::from_bytes(key), &chunked.inputs, &[&full, &[]]),
    ));
    let short = Base {
        recipient: key,
        inputs: inputs(15),
        plaintext_text: pattern_text(200),
        archive: vec![],
    };
    let two_hundred = pattern(200);
    out.push(short.refused(
        "corrupt-short-middle-chunk",
        "corrupt",
        "a chunk shorter than 65536 bytes that is not the final one",
        "the payload resealed as chunk 0 (the first 100 bytes, not final) and chunk 1 (the other 100, final)",
        "chunk 0 of the archive fails authentication",
        seal_chunks_deterministic(
            &Key::from_bytes(key),
            &short.inputs,
            &[&two_hundred[..100], &two_hundred[100..]],
        ),
    ));

    // Not an archive of this format.
    out.push(Vector {
        name: "corrupt-plain-tar-gz",
        archive: tgz,
        meta: Meta {
            construction: Some(
                "a tar of one regular file hello.txt (mode 0644, mtime 2026-01-01T00:00:00Z, content \"hello from service-backup\\n\"), in a gzip stream of one stored deflate block".into(),
            ),
            ..refusal(
                "a plain .tar.gz (a backup made without a key): not an encrypted archive",
                "corrupt",
                "the archive is a plain .tar.gz, not encrypted",
            )
        },
    });
    out.push(Vector {
        name: "corrupt-random-junk",
        archive: junk(),
        meta: Meta {
            construction: Some(
                "SHA-256 of the text \"service-backup vector junk\" followed by the counter i as 4 bytes big-endian, for i in 0..8, concatenated".into(),
            ),
            ..refusal(
                "256 bytes that are neither an encrypted archive nor gzip",
                "corrupt",
                "the input is not a service-backup encrypted archive",
            )
        },
    });

    let mut names = BTreeSet::new();
    for v in &out {
        assert!(names.insert(v.name), "two vectors are named {}", v.name);
    }
    out
}

/// Vectors of the context stanza: one that binds a backup, and the ways it can be wrong.
fn context_vectors(key: [u8; KEY_LEN]) -> Vec<Vector> {
    let mut out = Vec::new();
    let context = the_context();
    let body = context_body(&context);
    let plain = b"hello from an archive bound to its backup\n";
    let text = || "the text of plaintext_utf8".to_string();

    let mut bound = inputs(16);
    bound.context = Some(context.clone());
    let bound = Base::seal(key, bound, plain, text());
    out.push(valid(
        "ok-context",
        "a context stanza (type 2) after the symmetric stanza: the archive is bound to backup 20260101T000000Z-vm-0a1b2c3d of instance vm, started 2026-01-01T00:00:00.123456789Z",
        &bound,
        plain,
        &[],
    ));
    let name_at = 26 + 6 + 68 + 6 + 2;
    out.push(bound.refused(
        "corrupt-context-flipped",
        "corrupt",
        "one bit of the backup name in the context stanza flipped: the context is covered by the header MAC, so a swapped archive cannot be renamed",
        &format!("the byte at offset {name_at} (the first byte of the context's name) XORed with 0x01"),
        "the archive header fails authentication",
        bound.flipped(name_at, 0x01),
    ));

    let mut twice = inputs(17);
    twice.context = Some(context.clone());
    twice.unknown_stanzas = vec![(STANZA_CONTEXT, body.clone())];
    let twice = Base::seal(key, twice, plain, text());
    out.push(twice.refused(
        "corrupt-context-duplicated",
        "corrupt",
        "two context stanzas, both valid and covered by the MAC: a header binds at most one backup",
        "",
        "the archive header holds 2 context stanzas (at most 1)",
        twice.archive.clone(),
    ));

    let mut large = inputs(18);
    let mut padded = context_body(&BackupContext {
        name: "x".repeat(1025 - 16 - 2),
        instance_id: "vm".into(),
        ..context.clone()
    });
    padded.truncate(1025);
    large.unknown_stanzas = vec![(STANZA_CONTEXT, padded)];
    let large = Base::seal(key, large, plain, text());
    out.push(large.refused(
        "corrupt-context-too-large",
        "corrupt",
        "a context stanza of 1025 bytes, one more than its limit of 1024 (though under the 4096 of any stanza)",
        "",
        "the archive's context stanza is 1025 bytes long (at most 1024)",
        large.archive.clone(),
    ));

    let mut trailing = inputs(19);
    let mut longer = body.clone();
    longer.extend_from_slice(&[0, 0, 0]);
    trailing.unknown_stanzas = vec![(STANZA_CONTEXT, longer)];
    let trailing = Base::seal(key, trailing, plain, text());
    out.push(trailing.refused(
        "corrupt-context-trailing-bytes",
        "corrupt",
        "a context stanza with 3 zero bytes after its start time: its length must be exactly that of its fields",
        "",
        "the archive's context stanza has 3 bytes too many",
        trailing.archive.clone(),
    ));

    let mut bad_time = inputs(20);
    let mut nanos = body;
    let end = nanos.len();
    nanos[end - 4..].copy_from_slice(&1_000_000_000u32.to_be_bytes());
    bad_time.unknown_stanzas = vec![(STANZA_CONTEXT, nanos)];
    let bad_time = Base::seal(key, bad_time, plain, text());
    out.push(bad_time.refused(
        "corrupt-context-bad-nanoseconds",
        "corrupt",
        "a context stanza whose nanoseconds field is 1000000000 (at most 999999999)",
        "",
        "the archive's context stanza has an invalid start time",
        bad_time.archive.clone(),
    ));
    out
}

/// The reader's side of a recipient vector: `identity` alone, or the key too.
fn read_with(meta: &mut Meta, identity: Option<&Identity>, with_key: bool) {
    if !with_key {
        meta.key = None;
    }
    meta.identities = identity
        .map(|i| vec![i.to_text().to_string()])
        .unwrap_or_default();
}

/// Vectors of the X25519 recipient stanza (type 3).
fn recipient_vectors(key: [u8; KEY_LEN]) -> Vec<Vector> {
    let mut out = Vec::new();
    let identity = the_identity();
    let recipient_id = identity.recipient().id().to_string();
    let text = || "the text of plaintext_utf8".to_string();

    let plain = b"hello from an archive made for a public-key recipient\n";
    let alone = Base::seal(key, recipient_inputs(22, false), plain, text());
    let mut v = valid(
        "ok-recipient",
        "a type 3 stanza alone: an archive made for an X25519 recipient, opened with its identity (the reader holds no symmetric key)",
        &alone,
        plain,
        &[],
    );
    read_with(&mut v.meta, Some(&identity), false);
    v.meta.opened_by_key_id = Some(recipient_id.clone());
    out.push(v);

    let plain = b"hello from an archive made for a key and a recipient\n";
    let both = Base::seal(key, recipient_inputs(23, true), plain, text());
    out.push(valid(
        "ok-recipient-and-key-by-key",
        "a type 1 stanza then a type 3 stanza: either opens the archive; this reader holds the key only",
        &both,
        plain,
        &[],
    ));
    let mut v = valid(
        "ok-recipient-and-key-by-identity",
        "the same archive as ok-recipient-and-key-by-key, read with the identity only",
        &both,
        plain,
        &[],
    );
    read_with(&mut v.meta, Some(&identity), false);
    v.meta.opened_by_key_id = Some(recipient_id.clone());
    out.push(v);

    // Offsets in an archive whose only key stanza is the type 3 one.
    let length_at = 26 + 2;
    let ephemeral_at = 26 + 6 + 8;
    let mut v = alone.refused(
        "wrong-identity",
        "wrong_key",
        "made for a recipient whose identity the reader does not hold; the message names the recipient the archive needs and those the reader tried",
        "",
        &format!(
            "the archive was encrypted for recipient {recipient_id}, but the given identities are for recipient {}",
            other_identity().recipient().id()
        ),
        alone.archive.clone(),
    );
    read_with(&mut v.meta, Some(&other_identity()), false);
    out.push(v);

    let mut short = alone.archive.clone();
    short[length_at..length_at + 4].copy_from_slice(&87u32.to_be_bytes());
    let mut v = alone.refused(
        "corrupt-recipient-stanza-wrong-length",
        "corrupt",
        "a type 3 stanza of 87 bytes instead of 88",
        &format!("the length of the type 3 stanza (offset {length_at}) set to 87"),
        "a recipient key stanza is 87 bytes long, not 88",
        short,
    );
    read_with(&mut v.meta, Some(&identity), false);
    out.push(v);

    let mut v = alone.refused(
        "corrupt-recipient-ephemeral-flipped",
        "corrupt",
        "one bit of the ephemeral public key of the type 3 stanza flipped: the agreed secret, hence the wrap key, differs and the stanza fails authentication",
        &format!(
            "the byte at offset {ephemeral_at} (the first byte of the ephemeral public key) XORed with 0x01"
        ),
        &format!("the key stanza for recipient {recipient_id} fails authentication"),
        alone.flipped(ephemeral_at, 0x01),
    );
    read_with(&mut v.meta, Some(&identity), false);
    out.push(v);

    let mut low = alone.archive.clone();
    low[ephemeral_at..ephemeral_at + 32].fill(0);
    let mut v = alone.refused(
        "corrupt-recipient-low-order-point",
        "corrupt",
        "the ephemeral public key of the type 3 stanza replaced by the point 0, of low order: the shared secret would be all zeros, which a reader refuses",
        &format!(
            "the 32 bytes at offset {ephemeral_at} (the ephemeral public key) set to zero"
        ),
        "has an ephemeral key of low order (its shared secret is all zeros)",
        low,
    );
    read_with(&mut v.meta, Some(&identity), false);
    out.push(v);
    out
}

/// The password of the password vectors.
pub const THE_PASSPHRASE: &str = "correct horse battery staple";

/// The work factor of the password vectors: 2^10 (1 MiB, milliseconds), so that the
/// vectors run fast; writers use 2^17, and readers accept 2^1 to 2^20.
const VECTOR_WORK_FACTOR: u8 = 10;

/// The inputs of password archive `n`: as [`inputs`], with a type 4 stanza for
/// [`THE_PASSPHRASE`] (scrypt salt 16 bytes 0xd0 + n, ephemeral secret 32 bytes 0x10 + n),
/// and a symmetric stanza only when `symmetric`.
fn passphrase_inputs(n: u8, symmetric: bool) -> VectorInputs {
    VectorInputs {
        symmetric,
        passphrase: Some(PassphraseInput {
            passphrase: THE_PASSPHRASE.into(),
            work_factor: VECTOR_WORK_FACTOR,
            scrypt_salt: [0xd0 + n; 16],
            ephemeral_secret: [0x10 + n; 32],
        }),
        ..inputs(n)
    }
}

/// The reader's side of a password vector: `passphrase` alone, or the key too.
fn read_with_passphrase(meta: &mut Meta, passphrase: &str, with_key: bool) {
    if !with_key {
        meta.key = None;
    }
    meta.passphrase = Some(passphrase.to_string());
}

/// Vectors of the password stanza (type 4).
fn passphrase_vectors(key: [u8; KEY_LEN]) -> Vec<Vector> {
    let mut out = Vec::new();
    let text = || "the text of plaintext_utf8".to_string();
    let id = |n: u8| {
        PassphraseRecipient::derive_with_salt(
            THE_PASSPHRASE.as_bytes(),
            VECTOR_WORK_FACTOR,
            [0xd0 + n; 16],
        )
        .expect("a valid work factor")
        .id()
        .to_string()
    };

    let plain = b"hello from an archive an application developer opens with a password\n";
    let alone = Base::seal(key, passphrase_inputs(24, false), plain, text());
    let mut v = valid(
        "ok-passphrase",
        "a type 4 stanza alone: an archive made for a backup password, opened with the password (the reader holds no key)",
        &alone,
        plain,
        &[],
    );
    read_with_passphrase(&mut v.meta, THE_PASSPHRASE, false);
    v.meta.opened_by_key_id = Some(id(24));
    out.push(v);

    let plain = b"hello from an archive made for a key and a backup password\n";
    let both = Base::seal(key, passphrase_inputs(25, true), plain, text());
    out.push(valid(
        "ok-passphrase-and-key-by-key",
        "a type 1 stanza then a type 4 stanza: either opens the archive; this reader holds the key only",
        &both,
        plain,
        &[],
    ));
    let mut v = valid(
        "ok-passphrase-and-key-by-passphrase",
        "the same archive as ok-passphrase-and-key-by-key, read with the password only",
        &both,
        plain,
        &[],
    );
    read_with_passphrase(&mut v.meta, THE_PASSPHRASE, false);
    v.meta.opened_by_key_id = Some(id(25));
    out.push(v);

    let mut v = alone.refused(
        "wrong-passphrase",
        "wrong_key",
        "ok-passphrase read with another password: the public key derived from it is not the stanza's, so the reader says so before any plaintext",
        "",
        "the password does not open this backup",
        alone.archive.clone(),
    );
    read_with_passphrase(&mut v.meta, "correct horse battery stapler", false);
    out.push(v);

    let older = Base::seal(key, inputs(26), plain, text());
    let mut v = older.refused(
        "wrong-key-no-passphrase-stanza",
        "wrong_key",
        "an archive made before a backup password was set (a type 1 stanza only), read with a password: the reader says that it carries no password stanza",
        "",
        "this backup carries no password stanza: it was made before a backup password was set (or the password was removed); ask the operator",
        older.archive.clone(),
    );
    read_with_passphrase(&mut v.meta, THE_PASSPHRASE, false);
    out.push(v);

    // Offsets in an archive whose only key stanza is the type 4 one.
    let length_at = 26 + 2;
    let factor_at = 26 + 6;
    let mut v = alone.refused(
        "corrupt-passphrase-work-factor-40",
        "corrupt",
        "the work factor of the type 4 stanza set to 40: scrypt would need 1 TiB; a reader refuses it while parsing the header, before any scrypt work",
        &format!("the byte at offset {factor_at} (the work factor) set to 40 (0x28)"),
        "the password stanza asks for a scrypt work factor of 2^40",
        {
            let mut bytes = alone.archive.clone();
            bytes[factor_at] = 40;
            bytes
        },
    );
    read_with_passphrase(&mut v.meta, THE_PASSPHRASE, false);
    out.push(v);

    let mut short = alone.archive.clone();
    let len = u32::try_from(PASSPHRASE_BODY_LEN - 1).expect("small");
    short[length_at..length_at + 4].copy_from_slice(&len.to_be_bytes());
    let mut v = alone.refused(
        "corrupt-passphrase-stanza-wrong-length",
        "corrupt",
        "a type 4 stanza of 104 bytes instead of 105",
        &format!("the length of the type 4 stanza (offset {length_at}) set to 104"),
        "a password stanza is 104 bytes long, not 105",
        short,
    );
    read_with_passphrase(&mut v.meta, THE_PASSPHRASE, false);
    out.push(v);

    let stanza = 26..26 + 6 + PASSPHRASE_BODY_LEN;
    let mut twice = alone.archive[..stanza.end].to_vec();
    twice.extend_from_slice(&alone.archive[stanza.clone()]);
    twice.extend_from_slice(&alone.archive[stanza.end..]);
    twice[25] += 1;
    let mut v = alone.refused(
        "corrupt-passphrase-duplicated",
        "corrupt",
        "two type 4 stanzas: a header holds at most one",
        &format!(
            "the type 4 stanza (offsets 26 to {}) written twice, the stanza count set to 2",
            stanza.end - 1
        ),
        "the archive header holds 2 password stanzas (at most 1)",
        twice,
    );
    read_with_passphrase(&mut v.meta, THE_PASSPHRASE, false);
    out.push(v);
    out
}

/// The body of a context stanza, built from the spec's layout (not by the library).
fn context_body(c: &BackupContext) -> Vec<u8> {
    let mut body = Vec::new();
    for text in [&c.name, &c.instance_id] {
        body.extend_from_slice(&u16::try_from(text.len()).expect("short").to_be_bytes());
        body.extend_from_slice(text.as_bytes());
    }
    body.extend_from_slice(&c.started_at.timestamp().to_be_bytes());
    body.extend_from_slice(&c.started_at.timestamp_subsec_nanos().to_be_bytes());
    body
}

fn with_unknown_body_len(base: &Base) -> usize {
    base.inputs.unknown_stanzas[0].1.len()
}

/// The name of the identity file of the recipient vectors, beside them.
pub const IDENTITIES_FILE: &str = "test-identities.txt";

/// The identity file of the recipient vectors: their published test identities.
pub fn identities_file() -> String {
    format!(
        "# The X25519 identities of the recipient vectors (spec/archive-format.md, \"Test\n\
         # vectors\"). Published test keys: never use them for backups.\n\
         # recipient: {}\n{}\n\
         # recipient: {} (no vector is made for it)\n{}\n",
        the_identity().recipient(),
        the_identity().to_text().as_str(),
        other_identity().recipient(),
        other_identity().to_text().as_str(),
    )
}

/// Writes every vector into `dir` and removes vector files that are no longer defined.
pub fn write_all(dir: &Path) -> std::io::Result<Vec<Vector>> {
    std::fs::create_dir_all(dir)?;
    let vectors = definitions();
    let names: BTreeSet<&str> = vectors.iter().map(|v| v.name).collect();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let stale = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("sbak" | "json")
        ) && path
            .file_stem()
            .and_then(|s| s.to_str())
            .is_none_or(|s| !names.contains(s));
        if stale {
            std::fs::remove_file(&path)?;
        }
    }
    std::fs::write(dir.join(IDENTITIES_FILE), identities_file())?;
    for v in &vectors {
        std::fs::write(dir.join(format!("{}.sbak", v.name)), &v.archive)?;
        std::fs::write(dir.join(format!("{}.json", v.name)), v.json())?;
    }
    Ok(vectors)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: make-vectors DIRECTORY");
        std::process::exit(2);
    };
    match write_all(Path::new(&dir)) {
        Ok(vectors) => {
            let total: usize = vectors.iter().map(|v| v.archive.len()).sum();
            for v in &vectors {
                println!(
                    "{:<42} {:>9} bytes  {}",
                    v.name,
                    v.archive.len(),
                    v.meta.expect
                );
            }
            println!("{} vectors, {total} bytes of archives", vectors.len());
        }
        Err(e) => {
            eprintln!("cannot write the vectors into {dir}: {e}");
            std::process::exit(1);
        }
    }
}
