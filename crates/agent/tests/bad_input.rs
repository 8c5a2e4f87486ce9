//! Bad input through the real binary: each gets a clear message and exit code, and nothing
//! is written or lost.

mod common;

use std::path::Path;

use common::{Env, is_root, tree};

const HEADER_LEN: usize = 8 + 16 + 2 + 6 + 68 + 32;
const SEALED_CHUNK: usize = 65536 + 16;

/// An env with a backup of a source larger than two chunks once compressed.
fn env_with_big_backup() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let noise: Vec<u8> = (0..400_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(env.path("source/noise.bin"), noise).unwrap();
    let item = env.backup();
    let archive = env.archive_of(&item);
    assert!(std::fs::metadata(&archive).unwrap().len() > (HEADER_LEN + 3 * SEALED_CHUNK) as u64);
    (env, archive)
}

/// Restores `bytes` as a downloaded archive into a target that already holds a file, with
/// --force; asserts the exit code, the message, and that the target is untouched.
fn refused(env: &Env, bytes: &[u8], code: i32, words: &str) {
    std::fs::write(env.path("bad.archive"), bytes).unwrap();
    let target = env.path("target");
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("precious.txt"), b"keep me").unwrap();
    let out = env.run(&[
        "restore",
        "--file",
        "bad.archive",
        "--key-file",
        "backup.key",
        "--allow-unencrypted",
        "--target",
        "target",
        "--force",
    ]);
    out.expect(code);
    assert!(
        out.stderr.contains(words),
        "expected {words:?} in: {}",
        out.stderr
    );
    assert_eq!(
        out.stderr.lines().count(),
        1,
        "one line per problem: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"));
    assert!(!out.all().contains(&env.key_text()), "the key leaked");
    assert_eq!(
        tree(&target),
        vec![("precious.txt".to_string(), b"keep me".to_vec())],
        "target changed"
    );

    // decrypt to a file never leaves a partial output behind
    let out = env.run(&[
        "decrypt",
        "--key-file",
        "backup.key",
        "--output",
        "out.tar.gz",
        "bad.archive",
    ]);
    assert_ne!(out.code, 0);
    assert!(
        !env.path("out.tar.gz").exists(),
        "a partial decrypt output was left"
    );
}

#[test]
fn tampered_truncated_and_reordered_archives_are_refused() {
    let (env, archive) = env_with_big_backup();
    let good = std::fs::read(&archive).unwrap();
    let flip = |i: usize| {
        let mut b = good.clone();
        b[i] ^= 0x01;
        b
    };
    refused(&env, &flip(40), 1, "fails authentication"); // inside the key stanza
    refused(
        &env,
        &flip(HEADER_LEN - 1),
        1,
        "header fails authentication",
    ); // the header MAC
    refused(
        &env,
        &flip(HEADER_LEN + 100),
        1,
        "chunk 0 of the archive fails authentication",
    );
    refused(
        &env,
        &flip(HEADER_LEN + SEALED_CHUNK - 3),
        1,
        "chunk 0 of the archive fails authentication",
    ); // a tag
    refused(&env, &flip(good.len() - 1), 1, "fails authentication"); // the final tag
    refused(
        &env,
        &good[..HEADER_LEN + 2 * SEALED_CHUNK],
        1,
        "truncated after chunk 1",
    );
    refused(
        &env,
        &good[..HEADER_LEN + SEALED_CHUNK + 500],
        1,
        "chunk 1 of the archive fails authentication",
    );
    refused(&env, &good[..HEADER_LEN - 5], 1, "header is truncated");
    let mut swapped = good.clone();
    let (a, b) = (HEADER_LEN, HEADER_LEN + SEALED_CHUNK);
    swapped[a..b].copy_from_slice(&good[b..b + SEALED_CHUNK]);
    swapped[b..b + SEALED_CHUNK].copy_from_slice(&good[a..b]);
    refused(
        &env,
        &swapped,
        1,
        "chunk 0 of the archive fails authentication",
    );
    let mut appended = good.clone();
    appended.extend_from_slice(b"trailing");
    // The bytes join the last chunk, which then fails.
    let last = (good.len() - HEADER_LEN).div_ceil(SEALED_CHUNK) - 1;
    refused(
        &env,
        &appended,
        1,
        &format!("chunk {last} of the archive fails authentication"),
    );
    refused(
        &env,
        b"PK\x03\x04 this is a zip file",
        1,
        "neither a service-backup encrypted archive nor a .tar.gz",
    );
    refused(&env, b"", 1, "empty");
}

#[test]
fn a_wrong_key_is_refused_before_anything_is_written() {
    let (env, archive) = env_with_big_backup();
    env.run(&["keygen", "--output", "other.key"]).expect(0);
    let archive = archive.to_str().unwrap();
    let out = env.run(&[
        "decrypt",
        "--key-file",
        "other.key",
        "--output",
        "out.tar.gz",
        archive,
    ]);
    out.expect(1);
    assert!(
        out.stderr.contains("the archive was encrypted for key id"),
        "{}",
        out.stderr
    );
    assert!(!env.path("out.tar.gz").exists());
    let out = env.run(&[
        "restore",
        "--file",
        archive,
        "--key-file",
        "other.key",
        "--target",
        "t",
    ]);
    out.expect(1);
    assert!(!env.path("t").exists(), "the target must not be created");
    // With the configured key as a previous key, it opens.
    env.run(&[
        "restore",
        "--file",
        archive,
        "--key-file",
        "other.key",
        "--key-file",
        "backup.key",
        "--target",
        "t",
    ])
    .expect(0);
}

#[test]
fn key_files_of_the_wrong_length_or_not_base64_are_usage_errors() {
    let (env, archive) = env_with_big_backup();
    std::fs::write(env.path("short.key"), "c2hvcnQ=\n").unwrap();
    std::fs::write(env.path("junk.key"), "!!!\n").unwrap();
    for (key, words) in [
        ("short.key", "5 bytes long, not 32"),
        ("junk.key", "not valid base64"),
        ("none.key", "none.key"),
    ] {
        let out = env.run(&[
            "decrypt",
            "--key-file",
            key,
            "--output",
            "o",
            archive.to_str().unwrap(),
        ]);
        out.expect(2);
        assert!(out.stderr.contains(words), "{key}: {}", out.stderr);
    }
}

#[test]
fn a_damaged_stored_backup_fails_restore_and_verify() {
    let (env, archive) = env_with_big_backup();
    let manifest_path = archive.to_str().unwrap().replace(".tar.gz.enc", ".json");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let wrong = manifest.replace(m["sha256"].as_str().unwrap(), &"0".repeat(64));
    std::fs::write(&manifest_path, wrong).unwrap();
    let out = env.run(&["verify", "config.yml"]);
    out.expect(1);
    assert!(
        out.stderr.contains("but its manifest says"),
        "{}",
        out.stderr
    );
    let out = env.run(&["restore", "config.yml", "--target", "t"]);
    out.expect(1);
    assert!(!env.path("t").exists());
}

fn plain_tar_gz(
    build: impl FnOnce(&mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>),
) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    build(&mut b);
    b.into_inner().unwrap().finish().unwrap()
}

fn raw_entry(kind: tar::EntryType, name: &str, link: Option<&str>, data: &[u8]) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    h
}

#[test]
fn unsafe_tar_entries_are_refused_by_name() {
    let env = Env::new();
    let outside = env.path("outside.txt");
    let cases: Vec<(tar::Header, &str)> = vec![
        (
            raw_entry(tar::EntryType::Regular, "../outside.txt", None, b"evil"),
            "\"../outside.txt\": its path contains `..`",
        ),
        (
            raw_entry(tar::EntryType::Regular, "/tmp/abs-evil.txt", None, b"evil"),
            "\"/tmp/abs-evil.txt\": its path is absolute",
        ),
        (
            raw_entry(tar::EntryType::Symlink, "up", Some("../.."), b""),
            "\"up\": it is a symlink to ../.. outside the target",
        ),
        (
            raw_entry(tar::EntryType::Symlink, "etc", Some("/etc"), b""),
            "it is a symlink to /etc outside the target",
        ),
        (
            raw_entry(tar::EntryType::Link, "hard", Some("../outside.txt"), b""),
            "it is a hard link to ../outside.txt outside the target",
        ),
        (
            raw_entry(tar::EntryType::Char, "tty", None, b""),
            "devices, FIFOs",
        ),
    ];
    for (header, words) in cases {
        let data: Vec<u8> = vec![b'x'; usize::try_from(header.size().unwrap()).unwrap()];
        let bytes = plain_tar_gz(|b| {
            b.append(
                &raw_entry(tar::EntryType::Regular, "fine.txt", None, b"ok"),
                &b"ok"[..],
            )
            .unwrap();
            b.append(&header, &data[..]).unwrap();
        });
        refused(&env, &bytes, 1, words);
        assert!(
            !outside.exists() && !Path::new("/tmp/abs-evil.txt").exists(),
            "an entry escaped"
        );
    }
}

#[test]
fn a_missing_or_unreadable_source_makes_no_backup() {
    let env = Env::new();
    std::fs::rename(env.path("source"), env.path("moved")).unwrap();
    let out = env.run(&["backup", "config.yml"]);
    out.expect(1);
    assert!(out.stderr.contains("source"), "{}", out.stderr);
    assert!(
        out.stdout.contains("Perform backup completed with error"),
        "{}",
        out.stdout
    );
    std::fs::rename(env.path("moved"), env.path("source")).unwrap();
    assert!(
        walk_files(&env.path("backups")).is_empty(),
        "a failed backup left files"
    );
    let _ = std::fs::remove_dir_all(env.path("backups"));

    // A file the agent cannot read: as root, run the agent as nobody.
    use std::os::unix::fs::PermissionsExt as _;
    for dir in [
        env.dir.path(),
        &env.path("source"),
        &env.path("source/sub"),
        &env.path("source/sub/deeper"),
    ] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    std::fs::set_permissions(
        env.path("backup.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    // The task database of the runs above belongs to root: give this run its own.
    std::fs::create_dir(env.path("state")).unwrap();
    std::fs::set_permissions(env.path("state"), std::fs::Permissions::from_mode(0o777)).unwrap();
    env.write_config(&format!("state_dir: {}\n", env.path("state").display()));
    std::fs::write(env.path("source/secret.db"), b"unreadable").unwrap();
    std::fs::set_permissions(
        env.path("source/secret.db"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let bin = common::binary();
    let mut cmd = if is_root() {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin);
        c
    } else {
        std::process::Command::new(&bin)
    };
    let out = common::Run::from(
        cmd.args(["backup", "config.yml"])
            .current_dir(env.dir.path())
            .output()
            .unwrap(),
    );
    out.expect(1);
    assert!(
        out.stderr.contains("secret.db") && out.stderr.contains("Permission denied"),
        "{}",
        out.stderr
    );
    let list = env.run(&["list", "config.yml", "--json"]);
    assert_eq!(list.stdout.trim(), "[]", "no backup may be visible");
    let leftovers: Vec<_> = walk_files(&env.path("backups"));
    assert!(leftovers.is_empty(), "nothing may be stored: {leftovers:?}");
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    rd.flat_map(|e| {
        let p = e.unwrap().path();
        if p.is_dir() { walk_files(&p) } else { vec![p] }
    })
    .collect()
}

#[test]
fn a_non_empty_target_needs_force() {
    let env = Env::new();
    env.backup();
    std::fs::create_dir(env.path("busy")).unwrap();
    std::fs::write(env.path("busy/old.txt"), b"old").unwrap();
    let out = env.run(&["restore", "config.yml", "--target", "busy"]);
    out.expect(2);
    assert!(
        out.stderr.contains("is not empty") && out.stderr.contains("--force"),
        "{}",
        out.stderr
    );
    assert!(env.path("busy/old.txt").exists());
    env.run(&["restore", "config.yml", "--target", "busy", "--force"])
        .expect(0);
    assert_eq!(tree(&env.path("source")), tree(&env.path("busy")));
}

#[test]
fn a_plain_archive_is_refused_when_a_key_is_configured() {
    let env = Env::new();
    let d = env.dir.path().display();
    let yaml = format!(
        "destinations:\n- type: local\n  name: disk\n  config:\n    path: {d}/backups\nsource_folder: {d}/source\ncron_schedule: \"@daily\"\n"
    );
    std::fs::write(env.path("plain.yml"), yaml).unwrap();
    env.run(&["backup", "plain.yml"]).expect(0);
    // The same destination, now read with a key configured: the plain backup may have been
    // swapped in by someone who can write to the destination.
    let out = env.run(&["restore", "config.yml", "--target", "t"]);
    out.expect(1);
    assert!(
        out.stderr
            .contains("not encrypted although a key is configured")
            && out.stderr.contains("--allow-unencrypted"),
        "{}",
        out.stderr
    );
    assert!(!env.path("t").exists());
    env.run(&[
        "restore",
        "config.yml",
        "--target",
        "t",
        "--allow-unencrypted",
    ])
    .expect(0);
    assert_eq!(tree(&env.path("source")), tree(&env.path("t")));
}
