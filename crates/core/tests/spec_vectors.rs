//! Runs every test vector of `spec/vectors/` through the decryptor, and checks that the
//! vector files are exactly what `examples/make-vectors.rs` generates.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use service_backup_core::format::{
    BackupContext, DecryptingReader, Identity, Key, Keyring, Passphrase, from_io,
};
use service_backup_core::secret::Secret;
use service_backup_core::{Error, ErrorKind};

#[allow(dead_code)]
#[path = "../examples/make-vectors.rs"]
mod make_vectors;

/// Fewer vectors than this means the directory lost some: the test must not pass vacuously.
const MIN_VECTORS: usize = 20;

fn vectors_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../spec/vectors"))
}

/// The vector files on disk: name → (json text, archive bytes).
fn files_on_disk() -> BTreeMap<String, (String, Vec<u8>)> {
    let dir = vectors_dir();
    let mut out = BTreeMap::new();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the vector directory {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        let ext = path.extension().and_then(|e| e.to_str());
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        match ext {
            Some("json") => {
                let json = std::fs::read_to_string(&path).unwrap();
                let archive = std::fs::read(path.with_extension("sbak"))
                    .unwrap_or_else(|e| panic!("{name}.json has no readable {name}.sbak: {e}"));
                out.insert(name, (json, archive));
            }
            Some("sbak") => assert!(
                path.with_extension("json").is_file(),
                "{name}.sbak has no {name}.json"
            ),
            _ => {}
        }
    }
    assert!(
        out.len() >= MIN_VECTORS,
        "{} holds {} vectors, fewer than {MIN_VECTORS}",
        dir.display(),
        out.len()
    );
    out
}

fn key(b64: &Value) -> Key {
    let text = b64.as_str().expect("a key is a base64 string");
    let bytes: [u8; 32] = STANDARD
        .decode(text)
        .expect("a key is base64")
        .try_into()
        .expect("a key is 32 bytes");
    Key::from_bytes(bytes)
}

fn keyring(meta: &Value) -> Keyring {
    let mut ring = match meta.get("key") {
        Some(k) => Keyring::new(key(k)),
        None => Keyring::default(),
    };
    if let Some(identities) = meta.get("identities") {
        for i in identities.as_array().expect("identities is a list") {
            ring.add_identity(
                Identity::parse(i.as_str().expect("an identity is a string"))
                    .expect("a vector's identity parses"),
            );
        }
    }
    if let Some(passphrase) = meta.get("passphrase") {
        let text = passphrase.as_str().expect("a passphrase is a string");
        ring.set_passphrase(Passphrase::new(Secret::new(text)));
    }
    if let Some(previous) = meta.get("previous_keys") {
        for k in previous.as_array().expect("previous_keys is a list") {
            ring.add_previous(key(k));
        }
    }
    ring
}

fn str_field<'a>(meta: &'a Value, field: &str, name: &str) -> &'a str {
    meta[field]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: {field} is missing or not a string"))
}

/// Decrypts the whole archive; an error says whether it came before any plaintext.
type Opened = (Vec<u8>, String, Option<BackupContext>);

fn decrypt(archive: &[u8], ring: &Keyring) -> Result<Opened, (Error, bool)> {
    let mut reader = DecryptingReader::new(archive, ring).map_err(|e| (e, true))?;
    let mut plain = Vec::new();
    reader
        .read_to_end(&mut plain)
        .map_err(|e| (from_io(e, "read the archive"), false))?;
    Ok((
        plain,
        reader.key_id().to_string(),
        reader.context().cloned(),
    ))
}

/// The context an `ok` vector's JSON expects, if any.
fn expected_context(meta: &Value) -> Option<BackupContext> {
    let c = meta.get("context")?;
    Some(BackupContext {
        name: c["name"].as_str().expect("context.name").to_string(),
        instance_id: c["instance_id"]
            .as_str()
            .expect("context.instance_id")
            .to_string(),
        started_at: chrono::DateTime::parse_from_rfc3339(
            c["started_at"].as_str().expect("context.started_at"),
        )
        .expect("context.started_at is RFC 3339")
        .to_utc(),
    })
}

fn check(name: &str, meta: &Value, archive: &[u8]) -> Result<(), String> {
    let ring = keyring(meta);
    let result = decrypt(archive, &ring);
    let expect = str_field(meta, "expect", name);
    match (expect, result) {
        ("ok", Ok((plain, key_id, context))) => {
            let want = expected_context(meta);
            if context != want {
                return Err(format!("context {context:?}, not {want:?}"));
            }
            let len = meta["plaintext_len"].as_u64().expect("plaintext_len");
            if plain.len() as u64 != len {
                return Err(format!("plaintext is {} bytes, not {len}", plain.len()));
            }
            let sha = hex::encode(Sha256::digest(&plain));
            if sha != str_field(meta, "plaintext_sha256", name) {
                return Err(format!("plaintext SHA-256 is {sha}"));
            }
            if let Some(want) = meta.get("opened_by_key_id")
                && want.as_str() != Some(key_id.as_str())
            {
                return Err(format!("opened by key id {key_id}, not {want}"));
            }
            Ok(())
        }
        ("ok", Err((e, _))) => Err(format!("refused: {e}")),
        (_, Ok(_)) => Err(format!("opened, but {expect} was expected")),
        (expect, Err((e, before_plaintext))) => {
            let kind = match expect {
                "wrong_key" => ErrorKind::WrongKey,
                "corrupt" => ErrorKind::Corrupt,
                other => return Err(format!("unknown expectation {other:?}")),
            };
            if e.kind() != kind {
                return Err(format!("error kind {:?}, not {kind:?}: {e}", e.kind()));
            }
            if kind == ErrorKind::WrongKey && !before_plaintext {
                return Err(format!("the wrong key was noticed only while reading: {e}"));
            }
            let part = str_field(meta, "error_contains", name);
            if !e.message().contains(part) {
                return Err(format!("error {:?} does not contain {part:?}", e.message()));
            }
            Ok(())
        }
    }
}

#[test]
fn every_vector_gives_its_expected_result() {
    let files = files_on_disk();
    let mut failures = Vec::new();
    for (name, (json, archive)) in &files {
        let meta: Value = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("{name}.json is not valid JSON: {e}"));
        if let Err(why) = check(name, &meta, archive) {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn the_vector_files_are_exactly_what_the_generator_writes() {
    let files = files_on_disk();
    let generated = make_vectors::definitions();
    let generated_names: Vec<&str> = generated.iter().map(|v| v.name).collect();
    let names_on_disk: Vec<&str> = files.keys().map(String::as_str).collect();
    let mut sorted = generated_names.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted, names_on_disk,
        "the vector files differ from the generated set: run `cargo run -p service-backup-core --example make-vectors -- spec/vectors`"
    );
    for v in &generated {
        let (json, archive) = &files[v.name];
        assert!(
            *archive == v.archive,
            "{}.sbak differs from the generated bytes",
            v.name
        );
        assert_eq!(
            *json,
            v.json(),
            "{}.json differs from the generated text",
            v.name
        );
    }
}

#[test]
fn the_identity_file_opens_the_recipient_vectors() {
    let path = vectors_dir().join(make_vectors::IDENTITIES_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        make_vectors::identities_file(),
        "{} differs from the generated text",
        path.display()
    );
    let identities: Vec<Identity> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| Identity::parse(l).unwrap())
        .collect();
    assert_eq!(identities.len(), 2);
    let (meta, archive) = &files_on_disk()["ok-recipient"];
    let meta: Value = serde_json::from_str(meta).unwrap();
    let mut ring = Keyring::default();
    ring.add_identity(identities[0].clone());
    let (plain, _, _) = decrypt(archive, &ring).unwrap_or_else(|(e, _)| panic!("{e}"));
    assert_eq!(plain.len() as u64, meta["plaintext_len"].as_u64().unwrap());
}

#[test]
fn the_plain_tar_gz_vector_is_a_real_tar_gz() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../spec/vectors/corrupt-plain-tar-gz.sbak"
    ));
    let bytes = std::fs::read(path).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut entries = archive.entries().unwrap();
    let mut entry = entries.next().unwrap().unwrap();
    assert_eq!(entry.path().unwrap().to_str(), Some("hello.txt"));
    let mut content = String::new();
    entry.read_to_string(&mut content).unwrap();
    assert_eq!(content, "hello from service-backup\n");
    drop(entry);
    assert!(entries.next().is_none());
}

/// Section 15: the index of `ok-index-gzip` lists what its `index_listing` says, read from
/// the decrypted payload as a reader of the spec would: footer, carriers, body.
#[test]
fn the_index_vector_lists_its_entries() {
    use service_backup_core::compression::Algorithm;
    use service_backup_core::format::index::{ArchiveIndex, Footer, carrier};
    let files = files_on_disk();
    let (json, archive) = &files["ok-index-gzip"];
    let meta: Value = serde_json::from_str(json).unwrap();
    let (plain, _, _) = decrypt(archive, &keyring(&meta)).unwrap();
    let flen = carrier::footer_carrier_len(Algorithm::Gzip);
    let raw = carrier::footer_in(Algorithm::Gzip, &plain).expect("a footer");
    let footer = Footer::decode(raw, plain.len() as u64, flen)
        .unwrap()
        .expect("the footer's magic");
    let start = usize::try_from(footer.index_start).unwrap();
    let end = start + usize::try_from(footer.carriers_len).unwrap();
    let body = carrier::body_of(Algorithm::Gzip, &plain[start..end], &footer).unwrap();
    let index = ArchiveIndex::decode(body, footer.index_start).unwrap();
    let listed: Vec<Value> = index
        .entries()
        .map(|e| {
            let e = e.unwrap();
            serde_json::json!({
                "path": e.path,
                "type": e.kind.name(),
                "mode": format!("{:04o}", e.mode),
                "size": e.size,
                "mtime": e.mtime,
                "link_target": e.link,
            })
        })
        .collect();
    assert_eq!(&Value::Array(listed), &meta["index_listing"]);
    // The payload is still a plain gzip-of-tar stream for any reader: the index reads as
    // nothing after the tar stream.
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(&plain[..])
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(tar.len() as u64, index.tar_len);
}
