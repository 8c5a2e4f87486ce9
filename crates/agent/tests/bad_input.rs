//! Bad input through the real binary: each gets a clear message and exit code, and nothing
//! is written or lost.
//!
//! [`ROWS`] is the bad-input table: one row per case, checked by one test
//! (`every_bad_input_of_the_table_is_refused`). Adding a case is adding a row. Cases that
//! need a sequence of commands (a wrong key that a previous key opens, a damaged stored
//! backup, an unreadable source) are the tests after the table.

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

/// One bad input: what is given to the binary.
enum Input {
    /// A change made to a good encrypted backup of more than two chunks (`good`), with a
    /// second backup of the same key at hand (`other`); restored with `restore --file`.
    Archive(fn(good: &[u8], other: &[u8]) -> Vec<u8>),
    /// A good archive read with a key it was not made for.
    WrongKey,
    /// A plain .tar.gz holding a harmless file and then this entry: (type, name, link).
    TarEntry(tar::EntryType, &'static str, Option<&'static str>),
    /// A configuration file; `{d}` stands for the working folder. Run with `validate` and
    /// with `backup`.
    Config(&'static str),
    /// A configuration file of these bytes as they are.
    RawConfig(&'static [u8]),
    /// A good key file that other users may read or write: its mode.
    KeyFileMode(u32),
    /// The content of the key file named by an otherwise good configuration, and of the key
    /// file given to `decrypt --key-file`.
    KeyFile(&'static str),
    // The HTTP API's rows (bad JSON, unknown backup id, wrong instance id, missing or wrong
    // token, oversized body) come with the API: an `Api { method, path, token, body }`
    // variant run against `service-backup daemon`, checked in `check` like the others.
}

/// A row of the bad-input table.
struct Row {
    name: &'static str,
    input: Input,
    code: i32,
    /// Words the error must contain (each of them).
    words: &'static [&'static str],
}

const fn row(name: &'static str, input: Input, code: i32, words: &'static [&'static str]) -> Row {
    Row {
        name,
        input,
        code,
        words,
    }
}

fn flip(good: &[u8], i: usize) -> Vec<u8> {
    let mut b = good.to_vec();
    let i = if i >= good.len() { good.len() - 1 } else { i };
    b[i] ^= 0x01;
    b
}

const FULL: usize = usize::MAX;
const GOOD_CONFIG: &str = "destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n";

/// The bad-input table: one line per case.
#[rustfmt::skip]
const ROWS: &[Row] = &[
    // Encrypted archives: authentication, truncation, order, another format.
    row("tampered key stanza", Input::Archive(|g, _| flip(g, 40)), 1, &["fails authentication"]),
    row("tampered header MAC", Input::Archive(|g, _| flip(g, HEADER_LEN - 1)), 1, &["header fails authentication"]),
    row("tampered chunk body", Input::Archive(|g, _| flip(g, HEADER_LEN + 100)), 1, &["chunk 0 of the archive fails authentication"]),
    row("tampered chunk tag", Input::Archive(|g, _| flip(g, HEADER_LEN + SEALED_CHUNK - 3)), 1, &["chunk 0 of the archive fails authentication"]),
    row("tampered final tag", Input::Archive(|g, _| flip(g, FULL)), 1, &["fails authentication"]),
    row("truncated at a chunk boundary", Input::Archive(|g, _| g[..HEADER_LEN + 2 * SEALED_CHUNK].to_vec()), 1, &["truncated after chunk 1"]),
    row("truncated inside a chunk", Input::Archive(|g, _| g[..HEADER_LEN + SEALED_CHUNK + 500].to_vec()), 1, &["chunk 1 of the archive fails authentication"]),
    row("truncated header", Input::Archive(|g, _| g[..HEADER_LEN - 5].to_vec()), 1, &["header is truncated"]),
    row("header only", Input::Archive(|g, _| g[..HEADER_LEN].to_vec()), 1, &["truncated"]),
    row("chunks reordered", Input::Archive(|g, _| { let mut s = g.to_vec(); let (a, b) = (HEADER_LEN, HEADER_LEN + SEALED_CHUNK); s[a..b].copy_from_slice(&g[b..b + SEALED_CHUNK]); s[b..b + SEALED_CHUNK].copy_from_slice(&g[a..b]); s }), 1, &["chunk 0 of the archive fails authentication"]),
    row("header of another archive", Input::Archive(|g, o| [&o[..HEADER_LEN], &g[HEADER_LEN..]].concat()), 1, &["chunk 0 of the archive fails authentication"]),
    row("data appended", Input::Archive(|g, _| [g, b"trailing"].concat()), 1, &["of the archive fails authentication"]),
    row("a zip file", Input::Archive(|_, _| b"PK\x03\x04 this is a zip file".to_vec()), 1, &["a service-backup encrypted archive"]),
    row("an empty file", Input::Archive(|_, _| Vec::new()), 1, &["empty"]),
    row("wrong key", Input::WrongKey, 1, &["the archive was encrypted for key id"]),
    // Tar entries that would leave the target, or that are not files.
    row("tar entry with ..", Input::TarEntry(tar::EntryType::Regular, "../outside.txt", None), 1, &["\"../outside.txt\": its path contains `..`"]),
    row("tar entry with an absolute path", Input::TarEntry(tar::EntryType::Regular, "/tmp/abs-evil.txt", None), 1, &["\"/tmp/abs-evil.txt\": its path is absolute"]),
    row("tar symlink up and out", Input::TarEntry(tar::EntryType::Symlink, "up", Some("../..")), 1, &["\"up\": it is a symlink to ../.. outside the target"]),
    row("tar symlink to an absolute path", Input::TarEntry(tar::EntryType::Symlink, "etc", Some("/etc")), 1, &["it is a symlink to /etc outside the target"]),
    row("tar hard link outside", Input::TarEntry(tar::EntryType::Link, "hard", Some("../outside.txt")), 1, &["it is a hard link to ../outside.txt outside the target"]),
    row("tar character device", Input::TarEntry(tar::EntryType::Char, "tty", None), 1, &["\"tty\"", "devices, FIFOs"]),
    row("tar block device", Input::TarEntry(tar::EntryType::Block, "sda", None), 1, &["\"sda\"", "devices, FIFOs"]),
    row("tar FIFO", Input::TarEntry(tar::EntryType::Fifo, "pipe", None), 1, &["\"pipe\"", "devices, FIFOs"]),
    // Configuration files.
    row("malformed YAML", Input::Config("destinations: [\n  oops"), 2, &["Invalid config - ", "line"]),
    row("destinations not a list", Input::Config("destinations: not-an-array\n"), 2, &["Invalid config - "]),
    row("missing keys", Input::Config("destinations:\n- type: s3\n  config: {bucket_name: b, access_key_id: a, secret_access_key: TOPSECRET}\nmissing_properties_message: see the docs\n"), 2, &["Invalid config - Missing values for s3: bucket_path. see the docs", "Invalid config - Missing values for service_backup: source_folder, cron_schedule. see the docs"]),
    row("unknown destination type", Input::Config("destinations:\n- type: ftp\n  config: {}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * * * *\"\n"), 2, &["Invalid config - Unknown destination type: ftp."]),
    row("bad cron minute", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"61 * * * *\"\n"), 2, &["Invalid config - ", "61"]),
    row("bad cron field count", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"* * *\"\n"), 2, &["Invalid config - ", "* * *"]),
    row("bad cron descriptor", Input::Config("destinations:\n- type: local\n  config: {path: \"{d}/backups\"}\nsource_folder: \"{d}/source\"\ncron_schedule: \"@fortnightly\"\n"), 2, &["Invalid config - ", "@fortnightly"]),
    row("not UTF-8", Input::RawConfig(b"destinations: \xff\xfe\n"), 2, &["Invalid config - "]),
    row("key file too short", Input::KeyFile("c2hvcnQ=\n"), 2, &["5 bytes long, not 32"]),
    row("key file not base64", Input::KeyFile("%%% not base64\n"), 2, &["not valid base64"]),
    row("key file readable by others", Input::KeyFileMode(0o644), 2, &["bad.key", "other users may read or write it (mode 0644)"]),
    row("key file writable by others", Input::KeyFileMode(0o602), 2, &["other users may read or write it (mode 0602)"]),
    row("key file empty", Input::KeyFile(""), 2, &["bad.key", "0 bytes long"]),
];

/// Runs `row` in `env`; returns what went wrong, if anything.
fn check(env: &Env, good: &[u8], other: &[u8], row: &Row) -> Result<(), String> {
    let d = env.dir.path().display().to_string();
    let secrets = [env.key_text(), "TOPSECRET".to_string()];
    let mut runs = Vec::new();
    match &row.input {
        Input::Archive(change) => runs.extend(refused_archive(env, &change(good, other), None)),
        Input::WrongKey => {
            env.run(&["keygen", "--output", "other.key"]).expect(0);
            runs.extend(refused_archive(env, good, Some("other.key")));
            std::fs::remove_file(env.path("other.key")).unwrap();
        }
        Input::TarEntry(kind, name, link) => {
            let bytes = plain_tar_gz(|b| {
                b.append(
                    &raw_entry(tar::EntryType::Regular, "fine.txt", None, b"ok"),
                    &b"ok"[..],
                )
                .unwrap();
                let data: &[u8] = if *kind == tar::EntryType::Regular {
                    b"evil"
                } else {
                    b""
                };
                b.append(&raw_entry(*kind, name, *link, data), data)
                    .unwrap();
            });
            // `decrypt` does not look into a plain .tar.gz: only `restore` is checked.
            let restore = refused_archive(env, &bytes, None).remove(0);
            runs.push(restore);
            if env.path("outside.txt").exists() || Path::new("/tmp/abs-evil.txt").exists() {
                return Err("an entry escaped the target".into());
            }
        }
        Input::Config(yaml) => {
            std::fs::write(env.path("bad.yml"), yaml.replace("{d}", &d)).unwrap();
            runs.push(env.run(&["validate", "bad.yml"]));
            runs.push(env.run(&["backup", "bad.yml"]));
            runs.push(env.run(&["restore", "bad.yml", "--target", "t"]));
        }
        Input::RawConfig(bytes) => {
            std::fs::write(env.path("bad.yml"), bytes).unwrap();
            runs.push(env.run(&["validate", "bad.yml"]));
            runs.push(env.run(&["backup", "bad.yml"]));
        }
        Input::KeyFileMode(mode) => {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::copy(env.path("backup.key"), env.path("bad.key")).unwrap();
            std::fs::set_permissions(env.path("bad.key"), std::fs::Permissions::from_mode(*mode))
                .unwrap();
            let yaml = format!(
                "{}encryption:\n  key_file: {d}/bad.key\n",
                GOOD_CONFIG.replace("{d}", &d)
            );
            std::fs::write(env.path("bad.yml"), yaml).unwrap();
            std::fs::write(env.path("bad.archive"), good).unwrap();
            runs.push(env.run(&["validate", "bad.yml"]));
            runs.push(env.run(&["backup", "bad.yml"]));
            runs.push(env.run(&[
                "decrypt",
                "--key-file",
                "bad.key",
                "--output",
                "out.tar.gz",
                "bad.archive",
            ]));
            std::fs::remove_file(env.path("bad.key")).unwrap();
        }
        Input::KeyFile(text) => {
            std::fs::write(env.path("bad.archive"), good).unwrap();
            std::fs::write(env.path("bad.key"), text).unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(env.path("bad.key"), std::fs::Permissions::from_mode(0o600))
                .unwrap();
            let yaml = format!(
                "{}encryption:\n  key_file: {d}/bad.key\n",
                GOOD_CONFIG.replace("{d}", &d)
            );
            std::fs::write(env.path("bad.yml"), yaml).unwrap();
            runs.push(env.run(&["validate", "bad.yml"]));
            runs.push(env.run(&["backup", "bad.yml"]));
            runs.push(env.run(&[
                "decrypt",
                "--key-file",
                "bad.key",
                "--output",
                "out.tar.gz",
                "bad.archive",
            ]));
            let _ = std::fs::remove_file(env.path("bad.key"));
        }
    }
    for run in &runs {
        if run.code != row.code {
            return Err(format!(
                "exit code {} instead of {}: {}",
                run.code, row.code, run.stderr
            ));
        }
        for w in row.words {
            if !run.stderr.contains(w) {
                return Err(format!("{w:?} is not in: {}", run.stderr));
            }
        }
        if run.stderr.contains("panicked") {
            return Err(format!("a panic: {}", run.stderr));
        }
        if let Some(s) = secrets.iter().find(|s| run.all().contains(s.as_str())) {
            return Err(format!("the secret {s:?} leaked"));
        }
    }
    // Nothing written: no decrypt output, no stored backup, no restore target.
    for path in ["out.tar.gz", "t"] {
        if env.path(path).exists() {
            return Err(format!("{path} was left behind"));
        }
    }
    let stored = walk_files(&env.path("backups"));
    if stored.len() != 4 {
        return Err(format!("the stored backups changed: {stored:?}"));
    }
    Ok(())
}

/// Restores `bytes` as a downloaded archive into a target that already holds a file, with
/// --force, and decrypts it to a file; checks that the target is untouched and no output
/// is left, and returns both runs.
fn refused_archive(env: &Env, bytes: &[u8], key: Option<&str>) -> Vec<common::Run> {
    let key = key.unwrap_or("backup.key");
    std::fs::write(env.path("bad.archive"), bytes).unwrap();
    let target = env.path("target");
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("precious.txt"), b"keep me").unwrap();
    let restore = env.run(&[
        "restore",
        "--file",
        "bad.archive",
        "--key-file",
        key,
        "--allow-unencrypted",
        "--target",
        "target",
        "--force",
    ]);
    assert_eq!(
        restore.stderr.lines().count(),
        1,
        "one line per problem: {}",
        restore.stderr
    );
    assert_eq!(
        tree(&target),
        vec![("precious.txt".to_string(), b"keep me".to_vec())],
        "target changed"
    );
    let decrypt = env.run(&[
        "decrypt",
        "--key-file",
        key,
        "--output",
        "out.tar.gz",
        "bad.archive",
    ]);
    vec![restore, decrypt]
}

#[test]
fn every_bad_input_of_the_table_is_refused() {
    let (env, archive) = env_with_big_backup();
    common::secret("TOPSECRET");
    let good = std::fs::read(&archive).unwrap();
    std::fs::write(env.path("source/more.txt"), b"a second backup").unwrap();
    env.run(&["backup", "config.yml"]).expect(0);
    let list = env.run(&["list", "config.yml", "--json"]);
    let items: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    let other = std::fs::read(env.archive_of(&items[0])).unwrap();
    assert_ne!(good, other);
    assert_eq!(
        walk_files(&env.path("backups")).len(),
        4,
        "two archives, two manifests"
    );
    let mut failures = Vec::new();
    for row in ROWS {
        if let Err(why) = check(&env, &good, &other, row) {
            failures.push(format!("{}: {why}", row.name));
        }
    }
    println!("{} bad inputs checked", ROWS.len());
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        ROWS.len(),
        failures.join("\n")
    );
}

#[test]
fn a_previous_key_opens_what_the_current_one_cannot() {
    let (env, archive) = env_with_big_backup();
    env.run(&["keygen", "--output", "other.key"]).expect(0);
    let archive = archive.to_str().unwrap();
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
    if is_root() {
        // The key stays 0600 (a key others may read is refused): nobody owns it.
        std::os::unix::fs::chown(env.path("backup.key"), Some(65534), Some(65534)).unwrap();
    }
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
