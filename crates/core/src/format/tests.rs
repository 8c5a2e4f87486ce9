//! Round trips and tamper detection of the archive format.

use std::io::{Read as _, Write as _};

use proptest::prelude::*;

use super::vectors::{VectorInputs, header_len, seal_chunks_deterministic, seal_deterministic};
use super::*;

fn key(n: u8) -> Key {
    Key::from_bytes([n; KEY_LEN])
}

fn seal(key: &Key, plaintext: &[u8]) -> Vec<u8> {
    let mut w = EncryptingWriter::new(Vec::new(), key).unwrap();
    w.write_all(plaintext).unwrap();
    w.finish().unwrap()
}

fn open(keyring: &Keyring, archive: &[u8]) -> Result<Vec<u8>> {
    let mut r = DecryptingReader::new(archive, keyring)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| from_io(e, "read"))?;
    Ok(out)
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn inputs() -> VectorInputs {
    VectorInputs {
        file_key: [9; KEY_LEN],
        salt: [3; 16],
        wrap_nonce: [5; 12],
        unknown_stanzas: vec![],
        symmetric: true,
        recipients: vec![],
        passphrase: None,
        context: None,
    }
}

#[test]
fn round_trips_at_chunk_edges() {
    let k = key(1);
    let ring = Keyring::new(k.clone());
    for len in [
        0,
        1,
        CHUNK_LEN - 1,
        CHUNK_LEN,
        CHUNK_LEN + 1,
        2 * CHUNK_LEN,
        3 * CHUNK_LEN + 5,
    ] {
        let plain = data(len);
        let sealed = seal(&k, &plain);
        let chunks = len.div_ceil(CHUNK_LEN).max(1);
        assert_eq!(
            sealed.len(),
            header_len(&inputs()) + len + chunks * 16,
            "len {len}"
        );
        assert_eq!(open(&ring, &sealed).unwrap(), plain, "len {len}");
    }
}

#[test]
fn two_archives_of_the_same_data_differ() {
    let k = key(1);
    assert_ne!(seal(&k, b"same"), seal(&k, b"same"));
}

#[test]
fn previous_keys_open_old_archives() {
    let old = key(1);
    let sealed = seal(&old, b"rotated");
    let mut ring = Keyring::new(key(2));
    ring.add_previous(old.clone());
    let mut r = DecryptingReader::new(&sealed[..], &ring).unwrap();
    assert_eq!(r.key_id(), old.id());
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    assert_eq!(out, b"rotated");
}

#[test]
fn wrong_key_is_refused_before_any_payload_is_read() {
    let sealed = seal(&key(1), &data(3 * CHUNK_LEN));
    let ring = Keyring::new(key(2));
    // Only the header is given: the refusal cannot depend on the payload.
    let header = &sealed[..header_len(&inputs())];
    let err = DecryptingReader::new(header, &ring).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::WrongKey);
    let text = err.to_string();
    assert!(text.contains(&key(1).id().to_string()), "{text}");
    assert!(text.contains(&key(2).id().to_string()), "{text}");
}

#[test]
fn every_flipped_header_byte_is_detected() {
    let k = key(1);
    let ring = Keyring::new(k.clone());
    let sealed = seal(&k, b"payload");
    for i in 0..header_len(&inputs()) {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        let err = open(&ring, &bad).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Corrupt | ErrorKind::WrongKey),
            "byte {i}: {err}"
        );
    }
}

#[test]
fn flipped_payload_bytes_name_the_chunk() {
    let k = key(1);
    let ring = Keyring::new(k.clone());
    let sealed = seal(&k, &data(2 * CHUNK_LEN + 10));
    let h = header_len(&inputs());
    for (offset, chunk) in [
        (h, 0),
        (h + SEALED_CHUNK_LEN - 1, 0),
        (h + SEALED_CHUNK_LEN + 7, 1),
        (sealed.len() - 1, 2),
    ] {
        let mut bad = sealed.clone();
        bad[offset] ^= 0x80;
        let err = open(&ring, &bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(
            err.to_string().contains(&format!("chunk {chunk} ")),
            "{err}"
        );
    }
}

#[test]
fn truncation_is_detected_at_and_between_chunk_boundaries() {
    let k = key(1);
    let ring = Keyring::new(k.clone());
    let sealed = seal(&k, &data(3 * CHUNK_LEN));
    let h = header_len(&inputs());
    let at_boundary = open(&ring, &sealed[..h + 2 * SEALED_CHUNK_LEN]).unwrap_err();
    assert!(
        at_boundary.to_string().contains("truncated after chunk 1"),
        "{at_boundary}"
    );
    let mid = open(&ring, &sealed[..h + SEALED_CHUNK_LEN + 100]).unwrap_err();
    assert_eq!(mid.kind(), ErrorKind::Corrupt);
    let no_payload = open(&ring, &sealed[..h]).unwrap_err();
    assert!(
        no_payload.to_string().contains("no payload"),
        "{no_payload}"
    );
    let short_header = open(&ring, &sealed[..h - 1]).unwrap_err();
    assert!(
        short_header.to_string().contains("truncated"),
        "{short_header}"
    );
}

#[test]
fn swapped_chunks_and_appended_data_are_detected() {
    let k = key(1);
    let ring = Keyring::new(k.clone());
    let sealed = seal(&k, &data(3 * CHUNK_LEN + 1));
    let h = header_len(&inputs());
    let mut swapped = sealed.clone();
    let (a, b) = (h, h + SEALED_CHUNK_LEN);
    let first: Vec<u8> = sealed[a..b].to_vec();
    swapped[a..b].copy_from_slice(&sealed[b..b + SEALED_CHUNK_LEN]);
    swapped[b..b + SEALED_CHUNK_LEN].copy_from_slice(&first);
    assert!(
        open(&ring, &swapped)
            .unwrap_err()
            .to_string()
            .contains("chunk 0 ")
    );

    let mut appended = sealed.clone();
    appended.extend_from_slice(&[0u8; 20]);
    let err = open(&ring, &appended).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}

#[test]
fn a_header_from_another_archive_is_detected() {
    let k = key(1);
    let ring = Keyring::new(k.clone());
    let a = seal(&k, b"archive a");
    let b = seal(&k, b"archive b");
    let h = header_len(&inputs());
    let mut mixed = a[..h].to_vec();
    mixed.extend_from_slice(&b[h..]);
    let err = open(&ring, &mixed).unwrap_err();
    assert!(err.to_string().contains("chunk 0 "), "{err}");
}

#[test]
fn other_formats_are_named() {
    let ring = Keyring::new(key(1));
    let gz = open(&ring, &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
    assert!(gz.to_string().contains("plain .tar.gz"), "{gz}");
    let other = open(&ring, b"PK\x03\x04 a zip file").unwrap_err();
    assert!(
        other
            .to_string()
            .contains("not a service-backup encrypted archive"),
        "{other}"
    );
    let newer = open(&ring, b"SBACKUP\x07xxxxxxxxxxxxxxxxxxxx").unwrap_err();
    assert!(newer.to_string().contains("format version 7"), "{newer}");
    assert_eq!(
        ArchiveKind::sniff(b"SBACKUP\x01").unwrap(),
        ArchiveKind::Encrypted
    );
    assert_eq!(
        ArchiveKind::sniff(&[0x1f, 0x8b]).unwrap(),
        ArchiveKind::Plain(Algorithm::Gzip)
    );
    assert_eq!(
        ArchiveKind::sniff(&[0x28, 0xb5, 0x2f, 0xfd]).unwrap(),
        ArchiveKind::Plain(Algorithm::Zstd)
    );
    let zst = open(&ring, &[0x28, 0xb5, 0x2f, 0xfd, 4, 0, 0, 0]).unwrap_err();
    assert!(zst.to_string().contains("plain .tar.zst"), "{zst}");
    assert!(ArchiveKind::sniff(b"ustar").is_err());
}

#[test]
fn unknown_stanzas_are_skipped_but_authenticated() {
    let k = key(1);
    let ring = Keyring::new(k.clone());
    let mut with_unknown = inputs();
    with_unknown.unknown_stanzas = vec![(0x0100, b"future recipient".to_vec())];
    let sealed = seal_deterministic(&k, &with_unknown, b"hello");
    assert_eq!(open(&ring, &sealed).unwrap(), b"hello");
    let mut bad = sealed.clone();
    bad[8 + 16 + 2 + 6] ^= 1; // first byte of the unknown stanza's body
    let err = open(&ring, &bad).unwrap_err();
    assert!(
        err.to_string().contains("header fails authentication"),
        "{err}"
    );
}

#[test]
fn chunk_by_chunk_vectors_match_the_encryptor_when_they_follow_the_rules() {
    let k = key(1);
    let plain = data(CHUNK_LEN + 5);
    let (first, rest) = plain.split_at(CHUNK_LEN);
    assert_eq!(
        seal_chunks_deterministic(&k, &inputs(), &[first, rest]),
        seal_deterministic(&k, &inputs(), &plain)
    );
    assert_eq!(
        seal_chunks_deterministic(&k, &inputs(), &[&[]]),
        seal_deterministic(&k, &inputs(), &[])
    );
}

/// A writer that fails after `left` bytes.
struct Failing {
    left: usize,
}

impl std::io::Write for Failing {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("disk full"));
        }
        let n = data.len().min(self.left);
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_output_write_breaks_the_stream_without_panicking() {
    let mut w = EncryptingWriter::new(Failing { left: 100_000 }, &key(1)).unwrap();
    let data = data(4 * CHUNK_LEN);
    let first = w.write_all(&data);
    assert!(first.is_err());
    // Callers such as gzip's drop keep writing: every call fails, none panics.
    for _ in 0..3 {
        assert!(w.write(&data[..10]).is_err());
    }
    assert!(w.finish().is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_sizes_round_trip(len in prop_oneof![0usize..300_000, Just(CHUNK_LEN), Just(2 * CHUNK_LEN)], seed in any::<u8>()) {
        let k = key(seed);
        let plain: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed | 1)).collect();
        let sealed = seal(&k, &plain);
        prop_assert_eq!(open(&Keyring::new(k), &sealed).unwrap(), plain);
    }

    #[test]
    fn random_damage_never_passes(len in 1usize..200_000, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let k = key(4);
        let sealed = seal(&k, &data(len));
        let mut bad = sealed.clone();
        let i = pos.index(bad.len());
        bad[i] ^= 1 << bit;
        prop_assert!(open(&Keyring::new(k), &bad).is_err());
    }
}

/// A context stanza body round-trips, times before 1970 and nanoseconds included, and a
/// header carries it through the MAC.
#[test]
fn a_context_round_trips_through_the_header() {
    use super::context::BackupContext;
    let key = Key::generate().unwrap();
    for started_at in [
        chrono::DateTime::from_timestamp(1_767_225_600, 999_999_999).unwrap(),
        chrono::DateTime::from_timestamp(-86_401, 1).unwrap(),
    ] {
        let context = BackupContext {
            name: "20260101T000000Z-vm-0a1b2c3d".into(),
            instance_id: "vm.é".into(),
            started_at,
        };
        assert_eq!(BackupContext::decode(&context.encode()).unwrap(), context);
        let mut w = EncryptingWriter::bound(Vec::new(), &key, Some(&context)).unwrap();
        w.write_all(b"x").unwrap();
        let archive = w.finish().unwrap();
        let reader = DecryptingReader::new(&archive[..], &Keyring::new(key.clone())).unwrap();
        assert_eq!(reader.context(), Some(&context));
        let other = BackupContext {
            name: "20260101T000000Z-vm-ffffffff".into(),
            ..context.clone()
        };
        let e = reader.context().unwrap().check(&other).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(
            e.message().contains("20260101T000000Z-vm-0a1b2c3d")
                && e.message().contains("20260101T000000Z-vm-ffffffff"),
            "{e}"
        );
    }
    // A context too long to write is refused before anything is written.
    let long = BackupContext {
        name: "n".repeat(1000),
        instance_id: "i".repeat(10),
        started_at: chrono::Utc::now(),
    };
    assert!(EncryptingWriter::bound(Vec::new(), &key, Some(&long)).is_err());
}

proptest! {
    /// Any bytes as a context body, or after the magic as a header, give a value or an
    /// error, never a panic, and a header length within the format's limit.
    #[test]
    fn any_context_or_header_prefix_is_judged_without_panic(
        body in proptest::collection::vec(any::<u8>(), 0..1100),
    ) {
        let _ = super::context::BackupContext::decode(&body);
        let prefixed = [&MAGIC[..], &body].concat();
        if let Ok(Some(n)) = super::header::header_len(&prefixed) {
            prop_assert!(n <= MAX_HEADER_LEN);
        }
    }
}

fn seal_for(key: Option<&Key>, recipients: &[Recipient], plain: &[u8]) -> Vec<u8> {
    let mut w = EncryptingWriter::sealed(Vec::new(), key, recipients, None).unwrap();
    w.write_all(plain).unwrap();
    w.finish().unwrap()
}

fn open_all(archive: &[u8], ring: &Keyring) -> Result<(Vec<u8>, KeyId)> {
    let mut r = DecryptingReader::new(archive, ring)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    Ok((out, r.key_id()))
}

#[test]
fn recipients_alone_or_beside_a_key_each_open_the_archive() {
    let key = Key::generate().unwrap();
    let alice = Identity::generate().unwrap();
    let bob = Identity::generate().unwrap();
    let recipients = [alice.recipient(), bob.recipient()];
    let plain = data(CHUNK_LEN + 7);

    let alone = seal_for(None, &recipients, &plain);
    for identity in [&alice, &bob] {
        let mut ring = Keyring::default();
        ring.add_identity(identity.clone());
        let (out, id) = open_all(&alone, &ring).unwrap();
        assert_eq!(out, plain);
        assert_eq!(id, identity.recipient().id());
    }
    // Without a matching key or identity, nothing opens, and the key cannot help.
    let e = open_all(&alone, &Keyring::new(key.clone())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongKey);
    assert!(
        e.message().contains(&format!(
            "recipient {} or recipient {}",
            alice.recipient().id(),
            bob.recipient().id()
        )),
        "{e}"
    );
    assert!(
        e.message()
            .contains(&format!("the given keys have id {}", key.id())),
        "{e}"
    );

    let both = seal_for(Some(&key), &[alice.recipient()], &plain);
    assert_eq!(
        open_all(&both, &Keyring::new(key.clone())).unwrap().1,
        key.id()
    );
    let mut ring = Keyring::default();
    ring.add_identity(alice.clone());
    assert_eq!(open_all(&both, &ring).unwrap().1, alice.recipient().id());
}

#[test]
fn a_keyring_of_recipients_only_says_it_cannot_decrypt() {
    let alice = Identity::generate().unwrap();
    let archive = seal_for(None, &[alice.recipient()], b"secret");
    let mut ring = Keyring::default();
    ring.add_recipient(alice.recipient());
    assert!(ring.can_encrypt() && !ring.can_decrypt());
    let e = open_all(&archive, &ring).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongKey);
    assert!(
        e.message().contains("only recipients are configured here"),
        "{e}"
    );
    assert!(e.hint().unwrap().contains("--identity FILE"), "{e:?}");
}

#[test]
fn too_many_recipients_or_none_at_all_are_refused_when_sealing() {
    let recipients: Vec<Recipient> = (0..63)
        .map(|_| Identity::generate().unwrap().recipient())
        .collect();
    let key = Key::generate().unwrap();
    // 63 recipients and a key: 64 stanzas, the limit.
    assert!(EncryptingWriter::sealed(Vec::new(), Some(&key), &recipients, None).is_ok());
    let context = BackupContext {
        name: "n".into(),
        instance_id: "i".into(),
        started_at: chrono::Utc::now(),
    };
    let Err(e) = EncryptingWriter::sealed(Vec::new(), Some(&key), &recipients, Some(&context))
    else {
        panic!("65 stanzas were sealed");
    };
    assert!(e.message().contains("63 recipients are too many"), "{e}");
    let Err(e) = EncryptingWriter::sealed(Vec::new(), None, &[], None) else {
        panic!("an archive for nobody was sealed");
    };
    assert!(e.message().contains("needs a key or a recipient"), "{e}");
}

#[test]
fn a_peeked_header_names_its_recipients_without_a_key() {
    let alice = Identity::generate().unwrap();
    let archive = seal_for(None, &[alice.recipient()], b"x");
    let peeked = super::peek_header(&archive).unwrap();
    assert_eq!(peeked.recipient_ids, vec![alice.recipient().id()]);
    assert_eq!(peeked.context, None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Any bytes as a type 3 body give a stanza or an error and never a panic; a damaged
    /// byte of a sealed recipient archive's stanza never opens it.
    #[test]
    fn recipient_stanzas_survive_any_body_and_refuse_any_damage(
        body in proptest::collection::vec(any::<u8>(), 0..200),
        pos in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let alice = Identity::from_bytes([0x42; 32]);
        if let Ok(stanza) = super::recipient::X25519Stanza::decode(&body) {
            prop_assert!(stanza.unwrap(&alice).is_err());
        }
        let archive = seal_for(None, &[alice.recipient()], b"x");
        // The type 3 stanza: its type, length and 88-byte body after the stanza count.
        let i = 24 + 2 + pos.index(6 + X25519_BODY_LEN);
        let mut bad = archive.clone();
        bad[i] ^= 1 << bit;
        let mut ring = Keyring::default();
        ring.add_identity(alice);
        prop_assert!(open_all(&bad, &ring).is_err());
    }

    /// Any text is a recipient (printed back as itself, in lower case) or a configuration
    /// error, never a panic.
    #[test]
    fn any_text_parses_to_a_recipient_or_an_error(text in "\\PC{0,80}") {
        if let Ok(r) = Recipient::parse(&text) {
            prop_assert_eq!(r.to_string(), text.trim().to_lowercase());
        }
        let _ = Identity::parse(&text);
    }
}

/// A fast work factor for the tests: the logic is that of any other.
const FAST: u8 = 4;

fn seal_with_password(key: Option<&Key>, password: &str, plain: &[u8]) -> Vec<u8> {
    let recipient =
        PassphraseRecipient::derive(&crate::secret::Secret::new(password), FAST).unwrap();
    let mut w = EncryptingWriter::sealed_for(Vec::new(), key, &[], Some(&recipient), None).unwrap();
    w.write_all(plain).unwrap();
    w.finish().unwrap()
}

fn password_ring(password: &str) -> Keyring {
    let mut ring = Keyring::default();
    ring.set_passphrase(Passphrase::new(crate::secret::Secret::new(password)));
    ring
}

#[test]
fn a_password_beside_a_key_each_open_the_archive() {
    let key = Key::generate().unwrap();
    let plain = data(CHUNK_LEN + 3);
    let both = seal_with_password(Some(&key), "a developer's password", &plain);
    assert_eq!(
        open_all(&both, &Keyring::new(key.clone())).unwrap(),
        (plain.clone(), key.id())
    );
    let (out, _) = open_all(&both, &password_ring("a developer's password")).unwrap();
    assert_eq!(out, plain);

    let e = open_all(&both, &password_ring("another password")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongKey);
    assert!(
        e.message()
            .contains("the password does not open this backup"),
        "{e}"
    );
    // Without the password, the key's reader is told the archive also takes one.
    let e = open_all(&both, &Keyring::new(Key::generate().unwrap())).unwrap_err();
    assert!(
        e.message().contains(&format!(
            "encrypted for key id {} or a backup password",
            key.id()
        )),
        "{e}"
    );
}

#[test]
fn a_password_given_for_an_archive_without_its_stanza_says_so() {
    let key = Key::generate().unwrap();
    let older = seal_for(Some(&key), &[], b"made before the password");
    let e = open_all(&older, &password_ring("a developer's password")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongKey);
    assert_eq!(
        e.message(),
        "this backup carries no password stanza: it was made before a backup password was set (or the password was removed); ask the operator"
    );
}

#[test]
fn a_forged_work_factor_or_a_second_password_stanza_is_refused_unworked() {
    let key = Key::generate().unwrap();
    let archive = seal_with_password(Some(&key), "pw", b"x");
    // The type 4 stanza follows the type 1 stanza; its body starts with the work factor.
    let factor_at = 26 + 6 + super::stanza::SYMMETRIC_BODY_LEN + 6;
    assert_eq!(archive[factor_at], FAST);
    let mut forged = archive.clone();
    forged[factor_at] = 40;
    let started = std::time::Instant::now();
    let e = open_all(&forged, &password_ring("pw")).unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_millis(200));
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.message().contains("a scrypt work factor of 2^40"), "{e}");
    // The key's reader refuses the header too: it is invalid, whoever reads it.
    assert!(open_all(&forged, &Keyring::new(key.clone())).is_err());

    let stanza_start = 26 + 6 + super::stanza::SYMMETRIC_BODY_LEN;
    let stanza = &archive[stanza_start..stanza_start + 6 + PASSPHRASE_BODY_LEN];
    let mut twice = archive[..stanza_start + stanza.len()].to_vec();
    twice.extend_from_slice(stanza);
    twice.extend_from_slice(&archive[stanza_start + stanza.len()..]);
    twice[25] += 1;
    let e = open_all(&twice, &Keyring::new(key)).unwrap_err();
    assert!(
        e.message()
            .contains("the archive header holds 2 password stanzas (at most 1)"),
        "{e}"
    );
}
