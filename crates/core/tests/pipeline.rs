//! The backup and restore pipes end to end on `local` destinations.

use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::Path;
use std::sync::Arc;

use service_backup_core::ErrorKind;
use service_backup_core::catalog::{BackupEntry, Selector, list_backups, select};
use service_backup_core::compression::Algorithm;
use service_backup_core::destination::{Destination, LocalDestination, conformance};
use service_backup_core::format::{Key, Keyring};
use service_backup_core::layout::Layout;
use service_backup_core::ops::backup::{BackupPlan, Target, run_backup};
use service_backup_core::ops::restore::{Decryption, RestoreInto, restore_backup};
use service_backup_core::pipeline::archive::ArchiveSpec;
use service_backup_core::progress::NoProgress;
use service_backup_testkit::{dump_file, noise_file};
use tokio_util::sync::CancellationToken;

/// A dump, binary data in a subfolder, an empty file, an executable script and a link.
fn sample_tree(root: &Path) {
    std::fs::create_dir_all(root.join("db/sub")).unwrap();
    dump_file(&root.join("db/dump.sql"), 1, 20_000);
    noise_file(&root.join("db/sub/blob.bin"), 300_000, 13);
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("script.sh"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        root.join("script.sh"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    symlink("db/dump.sql", root.join("link-to-dump")).unwrap();
}

fn plan(source: &Path, key: Option<Key>) -> BackupPlan {
    plan_with(source, key, Algorithm::Gzip, 6)
}

fn plan_with(source: &Path, key: Option<Key>, compression: Algorithm, level: u32) -> BackupPlan {
    let mut plan = service_backup_testkit::backup_plan(source, "test-0");
    plan.archive.key = key;
    plan.archive.compression = compression;
    plan.archive.compression_level = level;
    plan
}

fn target(name: &str, dest: Arc<dyn Destination>) -> Target {
    Target {
        name: name.into(),
        destination: dest,
        layout: Layout::new("svc/prod", None),
    }
}

fn assert_same_tree(a: &Path, b: &Path) {
    let list = |root: &Path| -> Vec<(String, Vec<u8>, u32)> {
        let mut out: Vec<_> = walkdir(root)
            .into_iter()
            .map(|p| {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                let meta = std::fs::symlink_metadata(&p).unwrap();
                let content = if meta.file_type().is_symlink() {
                    std::fs::read_link(&p)
                        .unwrap()
                        .display()
                        .to_string()
                        .into_bytes()
                } else if meta.is_file() {
                    std::fs::read(&p).unwrap()
                } else {
                    vec![]
                };
                (rel, content, meta.permissions().mode() & 0o777)
            })
            .collect();
        out.sort();
        out
    };
    assert_eq!(list(a), list(b));
}

fn walkdir(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walkdir(&p));
        }
        out.push(p);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_to_two_destinations_then_restore_each() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    sample_tree(&source);
    let key = Key::generate().unwrap();
    let a: Arc<dyn Destination> = Arc::new(LocalDestination::new(tmp.path().join("a")));
    let b: Arc<dyn Destination> = Arc::new(LocalDestination::new(tmp.path().join("b")));
    let outcomes = run_backup(
        plan(&source, Some(key.clone())),
        vec![target("a", a.clone()), target("b", b.clone())],
        Arc::new(NoProgress),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(outcomes.len(), 2);
    for o in &outcomes {
        let m = o.result.as_ref().unwrap();
        assert_eq!(m.file_count, 7);
        assert_eq!(m.encryption.as_ref().unwrap().key_id, key.id().to_string());
        assert!(o.archive_key.ends_with(".tar.gz.enc"), "{}", o.archive_key);
    }
    let ring = Keyring::new(key);
    for (i, dest) in [a, b].into_iter().enumerate() {
        let layout = Layout::new("svc/prod", None);
        let entries = list_backups(&*dest, &layout).await.unwrap();
        assert_eq!(entries.len(), 1);
        let entry = select(&entries, &Selector::Latest).unwrap();
        let out = tmp.path().join(format!("restored-{i}"));
        let stats = restore_backup(
            dest.clone(),
            entry,
            &Decryption::new(Some(ring.clone())),
            &RestoreInto::Dir {
                path: out.clone(),
                replace: false,
            },
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
        assert_eq!(stats.extracted.entries, 7);
        assert_same_tree(&source, &out);
        // verify writes nothing and passes
        restore_backup(
            dest,
            entry,
            &Decryption::new(Some(ring.clone())),
            &RestoreInto::CheckOnly,
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_destination_does_not_stop_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    sample_tree(&source);
    let blocker = tmp.path().join("not-a-dir");
    std::fs::write(&blocker, b"a file where a directory should be").unwrap();
    let good: Arc<dyn Destination> = Arc::new(LocalDestination::new(tmp.path().join("good")));
    let bad: Arc<dyn Destination> = Arc::new(LocalDestination::new(&blocker));
    let outcomes = run_backup(
        plan(&source, None),
        vec![target("good", good.clone()), target("bad", bad)],
        Arc::new(NoProgress),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let good_outcome = outcomes.iter().find(|o| o.name == "good").unwrap();
    let bad_outcome = outcomes.iter().find(|o| o.name == "bad").unwrap();
    assert!(good_outcome.result.is_ok());
    let err = bad_outcome.result.as_ref().unwrap_err().to_string();
    assert!(err.starts_with("destination bad: "), "{err}");
    assert_eq!(
        list_backups(&*good, &Layout::new("svc/prod", None))
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_source_folder_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("missing-source");
    let dest: Arc<dyn Destination> = Arc::new(LocalDestination::new(tmp.path().join("d")));
    let err = run_backup(
        plan(&source, None),
        vec![target("d", dest.clone())],
        Arc::new(NoProgress),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("missing-source"), "{err}");
    assert!(
        dest.list("").await.unwrap().is_empty(),
        "nothing may be stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_archive_restores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    sample_tree(&source);
    let key = Key::generate().unwrap();
    let root = tmp.path().join("d");
    let dest: Arc<dyn Destination> = Arc::new(LocalDestination::new(&root));
    run_backup(
        plan(&source, Some(key.clone())),
        vec![target("d", dest.clone())],
        Arc::new(NoProgress),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let layout = Layout::new("svc/prod", None);
    let entry = list_backups(&*dest, &layout).await.unwrap().remove(0);
    let path = root.join(&entry.archive_key);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let decryption = Decryption::new(Some(Keyring::new(key)));
    refused_as_corrupt(dest, &entry, &decryption, &tmp.path().join("out")).await;
}

/// Restores `entry` over a new `target` holding one file: the restore must fail as
/// corrupt, and the target keep that file and nothing else.
async fn refused_as_corrupt(
    dest: Arc<dyn Destination>,
    entry: &BackupEntry,
    decryption: &Decryption,
    target: &Path,
) {
    std::fs::create_dir(target).unwrap();
    std::fs::write(target.join("keep.txt"), b"precious").unwrap();
    let err = restore_backup(
        dest,
        entry,
        decryption,
        &RestoreInto::Dir {
            path: target.to_path_buf(),
            replace: true,
        },
        Arc::new(NoProgress),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Corrupt,
        "{}: {err}",
        target.display()
    );
    let left: Vec<_> = std::fs::read_dir(target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("keep.txt")],
        "target must be left as it was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_destination_conforms() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = LocalDestination::new(tmp.path());
    conformance::run_all(&dest, "conformance").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_destination_lists_page_by_page() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = LocalDestination::new(tmp.path());
    conformance::lists_page_by_page(&dest, "paged", 3, 3).await;
}

/// A plain archive of the sample tree and several blocks' worth of text.
fn plain_archive(compression: Algorithm) -> Vec<u8> {
    use service_backup_core::pipeline::archive::write_archive;

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    sample_tree(&src);
    std::fs::write(
        src.join("big.sql"),
        "INSERT INTO t VALUES (2);\n".repeat(200_000),
    )
    .unwrap();
    let spec = ArchiveSpec {
        source: src,
        compression,
        compression_level: compression.default_level(),
        key: None,
        recipients: Vec::new(),
        passphrase: None,
    };
    write_archive(&spec, Vec::new(), &NoProgress).unwrap().1
}

/// Runs `program args` with `input` on its standard input; its standard output, once it
/// succeeded.
fn output_of(program: &str, args: &[&str], input: &[u8]) -> String {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{program} {args:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks that a `tar -t` listing names the archive's entries.
fn assert_lists_the_sample(listing: &str) {
    for name in [
        "big.sql",
        "db/dump.sql",
        "db/sub/blob.bin",
        "link-to-dump",
        "script.sh",
    ] {
        assert!(listing.lines().any(|l| l == name), "{name} in {listing}");
    }
}

#[test]
fn a_plain_archive_is_read_by_the_system_gzip_and_tar() {
    let gz = plain_archive(Algorithm::Gzip);
    // Several gzip members, one stream to every gzip reader.
    let mut members = 0;
    let mut rest = &gz[..];
    while !rest.is_empty() {
        let mut member = flate2::bufread::GzDecoder::new(rest);
        std::io::copy(&mut member, &mut std::io::sink()).unwrap();
        rest = member.into_inner();
        members += 1;
    }
    assert!(members > 1, "{members} gzip member(s)");
    // gzip and tar are essential packages on Debian: their absence is a broken machine.
    output_of("gzip", &["-t", "-"], &gz);
    output_of("gzip", &["-dc"], &gz);
    assert_lists_the_sample(&output_of("tar", &["tzf", "-"], &gz));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_backups_round_trip_and_damage_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    sample_tree(&source);
    // Several blocks' worth of text, so that the stream has several frames.
    std::fs::write(
        source.join("big.sql"),
        "INSERT INTO t VALUES (3);\n".repeat(150_000),
    )
    .unwrap();
    let key = Key::generate().unwrap();
    let ring = Keyring::new(key.clone());
    let layout = Layout::new("svc/prod", None);
    for (i, (key, level, ext)) in [(Some(key), 3, ".tar.zst.enc"), (None, 19, ".tar.zst")]
        .into_iter()
        .enumerate()
    {
        let root = tmp.path().join(format!("d{i}"));
        let dest: Arc<dyn Destination> = Arc::new(LocalDestination::new(&root));
        let outcomes = run_backup(
            plan_with(&source, key.clone(), Algorithm::Zstd, level),
            vec![target("d", dest.clone())],
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        let manifest = outcomes[0].result.as_ref().unwrap();
        assert!(
            outcomes[0].archive_key.ends_with(ext),
            "{}",
            outcomes[0].archive_key
        );
        assert_eq!(manifest.compression.algorithm, "zstd");
        assert_eq!(manifest.compression.level, level);
        assert!(manifest.archive.ends_with(ext), "{}", manifest.archive);
        assert!(
            manifest.stored_bytes < 300_000 + 150_000 * 26 / 20,
            "{} stored",
            manifest.stored_bytes
        );
        let decryption = Decryption::new(key.as_ref().map(|_| ring.clone()));
        let entry = list_backups(&*dest, &layout).await.unwrap().remove(0);
        let out = tmp.path().join(format!("restored-{i}"));
        let stats = restore_backup(
            dest.clone(),
            &entry,
            &decryption,
            &RestoreInto::Dir {
                path: out.clone(),
                replace: false,
            },
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
        assert_eq!(stats.extracted.entries, 8);
        assert_same_tree(&source, &out);

        // A flipped byte in the middle, then the archive cut short by its last 100 bytes:
        // each is refused and the target keeps only what it had.
        let path = root.join(&entry.archive_key);
        let good = std::fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x40;
        let cut = good[..good.len() - 100].to_vec();
        for (what, bytes) in [("flipped", flipped), ("cut", cut)] {
            std::fs::write(&path, &bytes).unwrap();
            let target = tmp.path().join(format!("t{i}-{what}"));
            refused_as_corrupt(dest.clone(), &entry, &decryption, &target).await;
        }
    }
}

#[test]
fn a_plain_zstd_archive_is_read_by_the_system_zstd_and_tar() {
    let zst = plain_archive(Algorithm::Zstd);
    // tests/run.sh installs the zstd command, which `tar --zstd` runs.
    output_of("zstd", &["-t", "-q", "-"], &zst);
    assert_lists_the_sample(&output_of("tar", &["--zstd", "-tf", "-"], &zst));
}

/// Puts `archive` in place of `entry`'s archive and fixes its manifest's SHA-256 and size,
/// as someone who can write to the destination can; returns the entry as listed again.
async fn replace_archive(
    dest: &Arc<dyn Destination>,
    entry: &BackupEntry,
    archive: Vec<u8>,
) -> BackupEntry {
    use sha2::Digest as _;
    let mut manifest = entry.manifest.clone();
    manifest.sha256 = hex::encode(sha2::Sha256::digest(&archive));
    manifest.stored_bytes = archive.len() as u64;
    dest.put(&entry.archive_key, archive.into()).await.unwrap();
    dest.put(&entry.manifest_key, manifest.to_json().into())
        .await
        .unwrap();
    let listed = list_backups(&**dest, &Layout::new("svc/prod", None))
        .await
        .unwrap();
    listed
        .into_iter()
        .find(|e| e.manifest.name == entry.manifest.name)
        .unwrap()
}

/// Finding 5 of issue 20: another backup's archive copied over this one's, its manifest
/// fixed, is refused as corrupt (restore and verify) with both names; an archive written
/// before archives named their backup restores without the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_of_another_backup_is_refused_and_an_unbound_one_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    sample_tree(&source);
    let key = Key::generate().unwrap();
    let root = tmp.path().join("d");
    let dest: Arc<dyn Destination> = Arc::new(LocalDestination::new(&root));
    for _ in 0..2 {
        run_backup(
            plan(&source, Some(key.clone())),
            vec![target("d", dest.clone())],
            Arc::new(NoProgress),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    let layout = Layout::new("svc/prod", None);
    let entries = list_backups(&*dest, &layout).await.unwrap();
    let (newer, older) = (&entries[0], &entries[1]);
    let swapped = replace_archive(
        &dest,
        newer,
        std::fs::read(root.join(&older.archive_key)).unwrap(),
    )
    .await;
    let decryption = Decryption::new(Some(Keyring::new(key.clone())));
    let want = format!(
        "the archive belongs to backup {} (instance test-0, started ",
        older.manifest.name
    );
    for into in [
        RestoreInto::CheckOnly,
        RestoreInto::Dir {
            path: tmp.path().join("out"),
            replace: true,
        },
    ] {
        if let RestoreInto::Dir { path: dir, .. } = &into {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("keep.txt"), b"precious").unwrap();
        }
        let err = restore_backup(
            dest.clone(),
            &swapped,
            &decryption,
            &into,
            Arc::new(NoProgress),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(err.message().contains(&want), "{err}");
        assert!(
            err.message().contains(&format!(
                "but its manifest names backup {}",
                newer.manifest.name
            )),
            "{err}"
        );
        if let Some(dir) = into.path() {
            assert_eq!(
                std::fs::read_dir(dir).unwrap().count(),
                1,
                "the target changed"
            );
        }
    }

    // An archive of the format before the context stanza: restored, unchecked.
    let spec = ArchiveSpec {
        source: source.clone(),
        compression: Algorithm::Gzip,
        compression_level: 6,
        key: Some(key.clone()),
        recipients: Vec::new(),
        passphrase: None,
    };
    let (_, unbound) =
        service_backup_core::pipeline::archive::write_archive(&spec, Vec::new(), &NoProgress)
            .unwrap();
    assert_eq!(&unbound[24..26], &[0, 1], "one stanza: no context");
    let old = replace_archive(&dest, newer, unbound).await;
    let out = tmp.path().join("old");
    restore_backup(
        dest,
        &old,
        &decryption,
        &RestoreInto::Dir {
            path: out.clone(),
            replace: false,
        },
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert_same_tree(&source, &out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_that_point_anywhere_restore_as_they_were() {
    // The links a data service leaves in its dump folder: absolute, absolute into the
    // folder itself, relative and leaving it, and one through another link. A backup of
    // them verifies and restores them as they were.
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    std::fs::create_dir_all(source.join("releases/v2/db")).unwrap();
    std::fs::write(source.join("data.db"), b"important data").unwrap();
    std::fs::write(source.join("real.conf"), b"x").unwrap();
    std::fs::write(source.join("releases/v2/db/f"), b"x").unwrap();
    symlink("/var/log", source.join("wal")).unwrap();
    symlink(source.join("real.conf"), source.join("cfg")).unwrap();
    symlink("../../etc", source.join("up")).unwrap();
    symlink("releases/v2", source.join("current")).unwrap();
    symlink("current/db", source.join("data")).unwrap();
    let key = Key::generate().unwrap();
    let dest: Arc<dyn Destination> = Arc::new(LocalDestination::new(tmp.path().join("dest")));
    let outcomes = run_backup(
        plan(&source, Some(key.clone())),
        vec![target("a", dest.clone())],
        Arc::new(NoProgress),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    outcomes[0].result.as_ref().unwrap();
    let layout = Layout::new("svc/prod", None);
    let entries = list_backups(&*dest, &layout).await.unwrap();
    let entry = select(&entries, &Selector::Latest).unwrap();
    let decryption = Decryption::new(Some(Keyring::new(key)));
    restore_backup(
        dest.clone(),
        entry,
        &decryption,
        &RestoreInto::CheckOnly,
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    let out = tmp.path().join("restored");
    restore_backup(
        dest,
        entry,
        &decryption,
        &RestoreInto::Dir {
            path: out.clone(),
            replace: false,
        },
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert_same_tree(&source, &out);
    for (link, to) in [
        ("wal", Path::new("/var/log")),
        ("cfg", &source.join("real.conf")),
        ("up", Path::new("../../etc")),
        ("current", Path::new("releases/v2")),
        ("data", Path::new("current/db")),
    ] {
        assert_eq!(std::fs::read_link(out.join(link)).unwrap(), to, "{link}");
    }
    assert_eq!(std::fs::read(out.join("data/f")).unwrap(), b"x");
}

/// A file of `len` bytes that does not compress (xorshift from `seed`).
fn random_file(path: &Path, len: usize, seed: u64) {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ seed;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    std::fs::write(path, data).unwrap();
}

/// The staging folders of restores in `dir`.
fn staging_folders(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".service-backup-restore-")
        })
        .map(|e| e.path())
        .collect()
}

/// The checkpoint files in `state`.
fn checkpoints(state: &Path) -> usize {
    std::fs::read_dir(state).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .count()
    })
}

/// An encrypted backup of `source` into a local store at `store`, its entry and the
/// decryption that reads it.
async fn encrypted_backup(
    source: &Path,
    store: &Path,
) -> (Arc<dyn Destination>, BackupEntry, Decryption) {
    let key = Key::generate().unwrap();
    let local: Arc<dyn Destination> = Arc::new(LocalDestination::new(store));
    run_backup(
        plan(source, Some(key.clone())),
        vec![target("a", local.clone())],
        Arc::new(NoProgress),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let entries = list_backups(&*local, &Layout::new("svc/prod", None))
        .await
        .unwrap();
    let entry = select(&entries, &Selector::Latest).unwrap().clone();
    (local, entry, Decryption::new(Some(Keyring::new(key))))
}

/// A restore stopped by its store keeps its staging folder and checkpoint, and the next
/// restore of the same backup into the same target goes on from there, fetching only the
/// rest; when what it left was changed, the next restore starts over instead.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_stopped_by_its_store_goes_on_from_its_checkpoint() {
    use service_backup_core::destination::counting::Counting;
    use service_backup_core::ops::restore::restore_resumable;
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    sample_tree(&source);
    std::fs::create_dir_all(source.join("zz")).unwrap();
    random_file(&source.join("zz/big-1.bin"), 40 << 20, 1);
    random_file(&source.join("zz/big-2.bin"), 40 << 20, 2);
    let (local, entry, dec) = encrypted_backup(&source, &tmp.path().join("store")).await;
    let size = entry.manifest.stored_bytes;
    let store = Arc::new(Counting::new(local.clone()));
    let state = tmp.path().join("state");
    let restore = |out: std::path::PathBuf| {
        let (store, dec, entry, state) = (store.clone(), dec.clone(), entry.clone(), state.clone());
        async move {
            restore_resumable(
                store,
                &entry,
                &dec,
                &out,
                false,
                &state,
                Arc::new(NoProgress),
            )
            .await
        }
    };

    // Stopped at three quarters: the target untouched, the staging folder and checkpoint kept.
    let out = tmp.path().join("restored");
    store.cut_reads_at(size * 3 / 4);
    let err = restore(out.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Destination, "{err}");
    assert_eq!(walkdir(&out).len(), 0);
    assert_eq!(staging_folders(tmp.path()).len(), 1);
    assert_eq!(checkpoints(&state), 1);

    // Goes on: only the rest is fetched (a mark every 32 MiB: at least 30 MiB are not).
    store.cut_reads_at(u64::MAX);
    store.take_bytes();
    let stats = restore(out.clone()).await.unwrap();
    let fetched = store.take_bytes();
    assert!(fetched < size - (30 << 20), "{fetched} of {size} fetched");
    assert_same_tree(&source, &out);
    assert!(staging_folders(tmp.path()).is_empty());
    assert_eq!(checkpoints(&state), 0);
    let whole = tmp.path().join("whole");
    let full = restore_backup(
        local.clone(),
        &entry,
        &dec,
        &RestoreInto::Dir {
            path: whole,
            replace: false,
        },
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert_eq!(stats.extracted, full.extracted);

    // Stopped again; a file restored before the mark is changed: the next restore starts
    // over, fetches the whole archive and restores the exact tree.
    let out = tmp.path().join("restored-again");
    store.cut_reads_at(store.bytes_read() + size * 3 / 4);
    restore(out.clone()).await.unwrap_err();
    let staged = staging_folders(tmp.path()).pop().unwrap();
    std::fs::write(staged.join("db/dump.sql"), b"changed").unwrap();
    store.cut_reads_at(u64::MAX);
    store.take_bytes();
    restore(out.clone()).await.unwrap();
    assert!(store.take_bytes() >= size, "it did not start over");
    assert_same_tree(&source, &out);
    assert!(staging_folders(tmp.path()).is_empty());
    assert_eq!(checkpoints(&state), 0);
}

/// Every path of a tree with its link target, as bytes: names that are not UTF-8 exactly.
fn names_as_bytes(root: &Path) -> Vec<(Vec<u8>, Option<Vec<u8>>, u32)> {
    use std::os::unix::ffi::OsStrExt as _;
    let mut out: Vec<_> = walkdir(root)
        .into_iter()
        .map(|p| {
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let link = meta.file_type().is_symlink().then(|| {
                std::fs::read_link(&p)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            });
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            (rel, link, meta.permissions().mode() & 0o7777)
        })
        .collect();
    out.sort();
    out
}

/// The index keeps names that are not UTF-8 with U+FFFD in place of their bad bytes: a
/// restore stopped after such a folder or link does not remake them from the index (they
/// would get the wrong names) but starts over, and restores the exact tree.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_stopped_after_names_that_are_not_utf8_starts_over_and_restores_them_exactly() {
    use service_backup_core::destination::counting::Counting;
    use service_backup_core::ops::restore::restore_resumable;
    use std::os::unix::ffi::OsStrExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let odd_dir = source.join(std::ffi::OsStr::from_bytes(b"a\xffdir"));
    std::fs::create_dir(&odd_dir).unwrap();
    std::fs::write(odd_dir.join("f"), b"in an odd folder").unwrap();
    std::fs::set_permissions(&odd_dir, std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink(
        std::ffi::OsStr::from_bytes(b"target\xff"),
        source.join(std::ffi::OsStr::from_bytes(b"b\xfflink")),
    )
    .unwrap();
    random_file(&source.join("c-big.bin"), 72 << 20, 3);
    let (local, entry, dec) = encrypted_backup(&source, &tmp.path().join("store")).await;
    let size = entry.manifest.stored_bytes;
    let store = Arc::new(Counting::new(local.clone()));
    let state = tmp.path().join("state");
    let out = tmp.path().join("restored");
    let restore = || {
        restore_resumable(
            store.clone(),
            &entry,
            &dec,
            &out,
            false,
            &state,
            Arc::new(NoProgress),
        )
    };
    store.cut_reads_at(size * 3 / 4);
    restore().await.unwrap_err();
    assert_eq!(checkpoints(&state), 1);
    store.cut_reads_at(u64::MAX);
    store.take_bytes();
    restore().await.unwrap();
    assert!(store.take_bytes() >= size, "it did not start over");
    assert_eq!(names_as_bytes(&out), names_as_bytes(&source));
    assert_eq!(checkpoints(&state), 0);
}
