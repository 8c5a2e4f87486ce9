//! `ls` and `restore --include` with the real binary on a local destination: what a
//! backup holds, read from its archive's index, and one file or folder brought back alone.

mod common;

use common::Env;
use sha2::Digest as _;

/// `len` bytes that no compressor shrinks, written to `path`, so that the archive has
/// several blocks of 1 MiB.
fn random_file(path: &std::path::Path, len: usize, seed: u64) {
    std::fs::write(path, service_backup_testkit::incompressible(len, seed | 1)).unwrap();
}

fn env_with_blocks() -> Env {
    let env = Env::new();
    random_file(&env.path("source/aaa-big.bin"), 5_000_000, 3);
    std::fs::create_dir_all(env.path("source/conf/extra")).unwrap();
    std::fs::write(env.path("source/conf/main.conf"), b"main = 1\n").unwrap();
    std::fs::write(env.path("source/conf/extra/more.conf"), b"more = 2\n").unwrap();
    random_file(&env.path("source/zzz-last.bin"), 1_048_576, 5);
    env
}

#[test]
fn ls_lists_entries_with_mode_size_time_and_filters_by_path() {
    let env = env_with_blocks();
    let item = env.backup();
    let name = item["name"].as_str().unwrap();

    let out = env.run(&["ls", "config.yml", "--json"]);
    out.expect(0);
    let entries: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    let paths: Vec<&str> = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    for p in [
        "aaa-big.bin",
        "conf",
        "conf/main.conf",
        "dump.sql",
        "link",
        "sub/deeper/empty",
    ] {
        assert!(paths.contains(&p), "{p} not in {paths:?}");
    }
    let big = entries.iter().find(|e| e["path"] == "aaa-big.bin").unwrap();
    assert_eq!(big["type"], "file");
    assert_eq!(big["size"], 5_000_000);
    assert!(big["mtime"].as_str().unwrap().ends_with('Z'), "{big}");
    let link = entries.iter().find(|e| e["path"] == "link").unwrap();
    assert_eq!(link["link_target"], "sub/blob.bin");
    assert_eq!(
        entries.iter().find(|e| e["path"] == "conf").unwrap()["type"],
        "dir"
    );

    // Named, filtered by a folder and a glob: the table shows only those.
    let out = env.run(&["ls", "config.yml", "--backup", name, "conf", "*.sql"]);
    out.expect(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", out.stdout);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("drwx") && l.ends_with(" conf"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("-rw") && l.ends_with(" conf/extra/more.conf"))
    );
    assert!(lines.iter().any(|l| l.ends_with(" dump.sql")));
    assert!(!out.stdout.contains("aaa-big.bin"));
    assert!(!out.stdout.contains('{'), "no JSON in the table");

    // A path that matches nothing is an error that names it.
    let out = env.run(&["ls", "config.yml", "nothing/here"]);
    out.expect(1);
    assert!(
        out.stderr.contains("\"nothing/here\" matches nothing"),
        "{}",
        out.stderr
    );
}

#[test]
fn restore_include_brings_back_one_file_and_one_folder_alone() {
    let env = env_with_blocks();
    env.backup();

    let target = env.path("one");
    env.run(&[
        "restore",
        "config.yml",
        "--target",
        target.to_str().unwrap(),
        "--include",
        "zzz-last.bin",
    ])
    .expect(0);
    let want = std::fs::read(env.path("source/zzz-last.bin")).unwrap();
    let got = std::fs::read(target.join("zzz-last.bin")).unwrap();
    assert!(
        sha2::Sha256::digest(&want) == sha2::Sha256::digest(&got),
        "restored bytes differ"
    );
    let names: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["zzz-last.bin"], "only the file");

    let target = env.path("folder");
    env.run(&[
        "restore",
        "config.yml",
        "--target",
        target.to_str().unwrap(),
        "--include",
        "conf/",
    ])
    .expect(0);
    assert_eq!(
        std::fs::read(target.join("conf/extra/more.conf")).unwrap(),
        b"more = 2\n"
    );
    assert_eq!(
        std::fs::read(target.join("conf/main.conf")).unwrap(),
        b"main = 1\n"
    );
    assert!(!target.join("dump.sql").exists());

    // An include that matches nothing names it, exits 1, and writes nothing.
    include_refused(
        &env,
        "none",
        &["conf", "no/such/*.file"],
        "\"no/such/*.file\" matches nothing",
    );
}

/// A backup made before archives carried an index (a plain one here, with its index cut
/// off): `ls` says so and lists it from the whole archive; `restore --include` refuses it
/// with a message that says what to do.
#[test]
fn a_backup_without_an_index_is_listed_the_slow_way_and_include_says_why_not() {
    let env = Env::new();
    let d = env.dir.path().display();
    std::fs::write(
        env.path("config.yml"),
        format!(
            "destinations:\n- type: local\n  name: disk\n  config:\n    path: {d}/backups\n\
             source_folder: {d}/source\ncron_schedule: \"*/5 * * * *\"\n"
        ),
    )
    .unwrap();
    let item = env.backup();
    let archive = env.archive_of(&item);
    let mut bytes = std::fs::read(&archive).unwrap();
    // The footer's index start: 8 bytes into the footer, 50 bytes before the end (gzip).
    let at = bytes.len() - 50 + 8;
    let start = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    bytes.truncate(usize::try_from(start).unwrap());
    std::fs::write(&archive, &bytes).unwrap();
    let manifest_path = archive.with_file_name(format!("{}.json", item["name"].as_str().unwrap()));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["stored_bytes"] = bytes.len().into();
    manifest["sha256"] = hex::encode(sha2::Sha256::digest(&bytes)).into();
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();

    let out = env.run(&["ls", "config.yml"]);
    out.expect(0);
    assert!(out.stderr.contains("has no index"), "{}", out.stderr);
    assert!(
        out.stdout.lines().any(|l| l.ends_with(" sub/deeper/empty")),
        "{}",
        out.stdout
    );

    let out = env.run(&[
        "restore",
        "config.yml",
        "--target",
        "t",
        "--include",
        "dump.sql",
    ]);
    out.expect(2);
    assert!(out.stderr.contains("has no index"), "{}", out.stderr);
    assert!(out.stderr.contains("without --include"), "{}", out.stderr);
    assert!(!env.path("t").exists());
    // The whole backup still restores.
    env.run(&["restore", "config.yml", "--target", "t"])
        .expect(0);
}

/// The same on an `s3` destination (moto): `ls` and `restore --include` of one file out of
/// a backup of many blocks; the restored bytes are the source's, and the restore fetched a
/// small part of the archive.
#[test]
fn ls_and_restore_include_on_s3() {
    use service_backup_testkit::{env, unique};
    let endpoint = env("SB_TEST_S3_ENDPOINT");
    let bucket = unique("browse");
    let env = env_with_blocks();
    let d = env.dir.path().display();
    std::fs::write(
        env.path("config.yml"),
        format!(
            "destinations:\n\
             - type: s3\n  name: objects\n  config:\n    bucket_name: {bucket}\n    bucket_path: svc\n    \
             access_key_id: AKIABROWSE0000000001\n    secret_access_key: browse/secret\n    endpoint_url: {endpoint}\n    region: us-east-1\n\
             source_folder: {d}/source\ncron_schedule: \"*/5 * * * *\"\n\
             encryption:\n  key_file: {d}/backup.key\n"
        ),
    )
    .unwrap();
    let item = env.backup();
    let stored = item["stored_bytes"].as_u64().unwrap();

    let out = env.run(&["ls", "config.yml", "conf"]);
    out.expect(0);
    assert_eq!(out.stdout.lines().count(), 4, "{}", out.stdout);

    let target = env.path("one");
    let out = env.run(&[
        "restore",
        "config.yml",
        "--target",
        target.to_str().unwrap(),
        "--include",
        "conf/main.conf",
    ]);
    out.expect(0);
    assert_eq!(
        std::fs::read(target.join("conf/main.conf")).unwrap(),
        b"main = 1\n"
    );
    assert!(!target.join("aaa-big.bin").exists());
    let fetched: u64 = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("fetched "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no fetched line in {}", out.stderr));
    println!("restore --include of one small file fetched {fetched} of {stored} bytes");
    // The small file shares a block of 1 MiB of input with its neighbours: one block, the
    // header and the index, of an archive of more than 7 MB.
    assert!(
        fetched < 1_300_000 && fetched * 5 < stored,
        "{fetched} of {stored}"
    );
}

/// A flipped byte in the index (inside its sealed chunk): `ls` and `restore --include`
/// refuse the backup as damaged (exit 1), and the restore writes nothing.
#[test]
fn a_damaged_index_is_refused_and_nothing_is_written() {
    let env = env_with_blocks();
    let item = env.backup();
    let archive = env.archive_of(&item);
    let mut bytes = std::fs::read(&archive).unwrap();
    // The index is at the payload's end: 300 bytes before it lie in its carriers.
    let at = bytes.len() - 300;
    bytes[at] ^= 0x40;
    std::fs::write(&archive, &bytes).unwrap();

    let out = env.run(&["ls", "config.yml"]);
    out.expect(1);
    assert!(
        out.stderr.contains("fails authentication"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "nothing listed: {}", out.stdout);

    include_refused(&env, "t", &["conf"], "fails authentication");
}

/// `restore --include INCLUDES` into the folder `target` of `env` fails with exit 1 and a
/// message holding `message`, and writes nothing.
fn include_refused(env: &Env, target: &str, includes: &[&str], message: &str) {
    let target = env.path(target);
    let mut args = vec![
        "restore",
        "config.yml",
        "--target",
        target.to_str().unwrap(),
        "--include",
    ];
    args.extend_from_slice(includes);
    let out = env.run(&args);
    out.expect(1);
    assert!(out.stderr.contains(message), "{}", out.stderr);
    assert!(!target.exists(), "nothing was written");
}

/// Every file, link and folder below `root` (work folders of restores included): its
/// content (a link's target), mode and modification time, to the nanosecond.
fn snapshot(root: &std::path::Path) -> Vec<(String, Vec<u8>, u32, i64, i64)> {
    use std::os::unix::fs::MetadataExt as _;
    fn walk(
        root: &std::path::Path,
        dir: &std::path::Path,
        out: &mut Vec<(String, Vec<u8>, u32, i64, i64)>,
    ) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let content = if meta.is_file() {
                std::fs::read(&p).unwrap()
            } else if meta.file_type().is_symlink() {
                std::fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                Vec::new()
            };
            // A folder's own time changes when an entry in it is replaced: files only.
            let (secs, nanos) = if meta.is_dir() {
                (0, 0)
            } else {
                (meta.mtime(), meta.mtime_nsec())
            };
            out.push((rel, content, meta.mode(), secs, nanos));
            if meta.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The names in `dir` that a restore works under (`.service-backup-…`).
fn work_folders(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".service-backup-"))
        .collect()
}

/// A live folder with the operator's own files, an older `conf/main.conf`, and a
/// `conf/` holding a file the backup does not have.
fn live_folder(env: &Env, name: &str) -> std::path::PathBuf {
    let live = env.path(name);
    std::fs::create_dir_all(live.join("notes")).unwrap();
    std::fs::create_dir_all(live.join("conf")).unwrap();
    std::fs::write(live.join("mine.txt"), b"the operator's own file\n").unwrap();
    std::fs::write(live.join("notes/keep.md"), b"keep me\n").unwrap();
    std::fs::write(live.join("conf/main.conf"), b"main = 0 (edited since)\n").unwrap();
    std::fs::write(live.join("conf/local.conf"), b"local = yes\n").unwrap();
    std::os::unix::fs::symlink("conf/local.conf", live.join("local-link")).unwrap();
    live
}

/// `snapshot` without the entries at or below `paths`.
fn without(
    snap: &[(String, Vec<u8>, u32, i64, i64)],
    paths: &[&str],
) -> Vec<(String, Vec<u8>, u32, i64, i64)> {
    snap.iter()
        .filter(|(p, ..)| {
            !paths
                .iter()
                .any(|x| p == x || p.starts_with(&format!("{x}/")))
        })
        .cloned()
        .collect()
}

#[test]
fn restore_include_into_a_live_folder_replaces_the_included_paths_and_nothing_else() {
    let env = env_with_blocks();
    env.backup();
    let live = live_folder(&env, "live");
    let live_arg = live.to_str().unwrap().to_string();
    let before = snapshot(&live);
    let around = work_folders(env.dir.path());

    // Without --force, an included path that exists is refused before anything is
    // written, naming it and the way to replace it.
    let out = env.run(&[
        "restore",
        "config.yml",
        "--target",
        &live_arg,
        "--include",
        "conf/main.conf",
    ]);
    out.expect(2);
    assert!(
        out.stderr.contains("already holds conf/main.conf") && out.stderr.contains("--force"),
        "{}",
        out.stderr
    );
    assert_eq!(
        snapshot(&live),
        before,
        "the refused restore changed the target"
    );
    assert_eq!(work_folders(env.dir.path()), around);

    // Without --force, paths that do not exist are merged in: nothing is overwritten.
    env.run(&[
        "restore",
        "config.yml",
        "--target",
        &live_arg,
        "--include",
        "dump.sql",
        "conf/extra/more.conf",
    ])
    .expect(0);
    assert_eq!(
        std::fs::read(live.join("dump.sql")).unwrap(),
        std::fs::read(env.path("source/dump.sql")).unwrap()
    );
    assert_eq!(
        std::fs::read(live.join("conf/extra/more.conf")).unwrap(),
        b"more = 2\n"
    );
    assert_eq!(
        without(&snapshot(&live), &["dump.sql", "conf/extra"]),
        before,
        "the merge changed what it did not restore"
    );
    let before = snapshot(&live);

    // With --force, the included file replaces the edited one; every other file, link and
    // folder is as it was, its time too.
    env.run(&[
        "restore",
        "config.yml",
        "--target",
        &live_arg,
        "--include",
        "conf/main.conf",
        "--force",
    ])
    .expect(0);
    assert_eq!(
        std::fs::read(live.join("conf/main.conf")).unwrap(),
        b"main = 1\n"
    );
    assert_eq!(
        without(&snapshot(&live), &["conf/main.conf"]),
        without(&before, &["conf/main.conf"]),
        "other entries changed"
    );
    assert!(work_folders(&live).is_empty(), "{:?}", work_folders(&live));
    assert_eq!(
        work_folders(env.dir.path()),
        around,
        "work folders left beside"
    );

    // A folder restored whole replaces that folder only: what the backup does not have in
    // it goes; the rest of the target stays.
    let live = live_folder(&env, "live2");
    std::fs::create_dir_all(live.join("conf/extra")).unwrap();
    std::fs::write(live.join("conf/extra/old.conf"), b"old\n").unwrap();
    let before = snapshot(&live);
    let out = env.run(&[
        "restore",
        "config.yml",
        "--target",
        live.to_str().unwrap(),
        "--include",
        "conf",
    ]);
    out.expect(2);
    assert!(out.stderr.contains("already holds conf,"), "{}", out.stderr);
    assert_eq!(snapshot(&live), before);
    env.run(&[
        "restore",
        "config.yml",
        "--target",
        live.to_str().unwrap(),
        "--include",
        "conf/",
        "--force",
    ])
    .expect(0);
    let names = |dir: &str| {
        let mut n: Vec<String> = std::fs::read_dir(live.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names("conf"), ["extra", "main.conf"]);
    assert_eq!(names("conf/extra"), ["more.conf"]);
    assert_eq!(
        without(&snapshot(&live), &["conf"]),
        without(&before, &["conf"]),
        "entries outside conf changed"
    );
    assert_eq!(
        work_folders(env.dir.path()),
        around,
        "work folders left beside"
    );
}

/// A folder above an included path that is a symbolic link (or a file) in the target is
/// refused before anything is written, with or without --force: the restore would write
/// through the link, outside the target.
#[test]
fn restore_include_never_writes_through_a_link_in_the_target() {
    let env = env_with_blocks();
    env.backup();
    let live = env.path("live");
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("main.conf"), b"not the target's\n").unwrap();
    std::os::unix::fs::symlink(&elsewhere, live.join("conf")).unwrap();
    let (before, outside) = (snapshot(&live), snapshot(&elsewhere));
    for extra in [&[][..], &["--force"][..]] {
        let mut args = vec![
            "restore",
            "config.yml",
            "--target",
            live.to_str().unwrap(),
            "--include",
            "conf/main.conf",
        ];
        args.extend_from_slice(extra);
        let out = env.run(&args);
        out.expect(2);
        assert!(
            out.stderr.contains("holds conf as a symbolic link"),
            "{}",
            out.stderr
        );
        assert_eq!(snapshot(&live), before);
        assert_eq!(snapshot(&elsewhere), outside);
    }
}

/// A restore of two paths whose second cannot be put in place (its folder is read-only
/// for the agent's user): the first, already in place, is put back, and the target is
/// as it was.
#[test]
fn restore_include_that_fails_half_way_puts_everything_back() {
    assert!(
        common::is_root(),
        "this row runs the agent as nobody, which needs root (the suite runs as root)"
    );
    let env = env_with_blocks();
    env.backup();
    let live = live_folder(&env, "live");
    std::fs::write(live.join("dump.sql"), b"the operator's dump\n").unwrap();
    // Everything belongs to nobody, who runs the agent; the target's top folder is
    // read-only for nobody, `conf/` is not.
    let status = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(env.dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let chmod = |p: &std::path::Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    chmod(env.dir.path(), 0o755);
    chmod(&live, 0o555);
    let before = snapshot(&live);
    let around = work_folders(env.dir.path());
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(common::binary())
        .args([
            "restore",
            "config.yml",
            "--target",
            live.to_str().unwrap(),
            "--include",
            "conf/main.conf",
            "dump.sql",
            "--force",
        ])
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    let out = common::Run::from(out);
    out.expect(1);
    assert!(
        out.stderr.contains("was left as it was") && out.stderr.contains("Permission denied"),
        "{}",
        out.stderr
    );
    assert_eq!(snapshot(&live), before, "the target changed");
    assert_eq!(
        std::fs::read(live.join("conf/main.conf")).unwrap(),
        b"main = 0 (edited since)\n"
    );
    assert_eq!(
        work_folders(env.dir.path()),
        around,
        "work folders left beside"
    );
    chmod(&live, 0o755);
}

/// Plants, beside the real backup `item`, a backup that says it started at `at`: its
/// manifest the core fixture's, describing a copy of the real archive (which is bound to
/// the real backup, so the planted one fails its binding check). Returns its name.
fn plant(env: &Env, item: &serde_json::Value, at: chrono::DateTime<chrono::Utc>) -> String {
    use service_backup_core::manifest::{Manifest, planted};
    let archive = env.archive_of(item);
    let real_name = item["name"].as_str().unwrap();
    let real = Manifest::from_json(
        &std::fs::read(archive.with_file_name(format!("{real_name}.json"))).unwrap(),
    )
    .unwrap();
    let mut forged = planted::manifest(&real.instance_id, at);
    let ext = archive
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .strip_prefix(real_name)
        .unwrap()
        .to_string();
    forged.archive = format!("{}{ext}", forged.name);
    forged.file_count = real.file_count;
    forged.plain_bytes = real.plain_bytes;
    forged.stored_bytes = real.stored_bytes;
    forged.sha256.clone_from(&real.sha256);
    forged.compression.clone_from(&real.compression);
    forged.encryption.clone_from(&real.encryption);
    // In the day folder of its time, as an attacker would put it: prefix/YYYY/MM/DD.
    let prefix = archive.ancestors().nth(4).unwrap();
    let day = prefix.join(at.format("%Y/%m/%d").to_string());
    std::fs::create_dir_all(&day).unwrap();
    std::fs::copy(&archive, day.join(&forged.archive)).unwrap();
    std::fs::write(day.join(format!("{}.json", forged.name)), forged.to_json()).unwrap();
    forged.name
}

/// Someone who can write to the bucket planted backups newer than the real one, pointing
/// at copies of its archive: `restore` of the latest passes over them, saying which and
/// why, and restores the real one; a planted backup named with --backup is refused, never
/// replaced by another; a backup dated more than a day ahead is not even tried; and when
/// the three newest are all planted, the restore gives up naming each.
#[test]
fn restore_of_the_latest_passes_over_planted_backups_that_are_not_genuine() {
    let env = Env::new();
    let item = env.backup();
    let real = item["name"].as_str().unwrap().to_string();
    let now = chrono::Utc::now();
    let near = plant(&env, &item, now + chrono::TimeDelta::hours(1));
    let far = plant(&env, &item, now + chrono::TimeDelta::days(30));

    let out = env.run(&["restore", "config.yml", "--target", "t1", "--json"]);
    out.expect(0);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["backup"], real.as_str(), "{}", out.stdout);
    let warned = |name: &str, what: &str| {
        out.stderr
            .lines()
            .any(|l| l.contains(name) && l.contains(what))
    };
    assert!(
        warned(&near, "passing over this backup, which is not genuine")
            && warned(&near, "swapped or copied from another backup"),
        "{}",
        out.stderr
    );
    assert!(warned(&far, "more than a day from now"), "{}", out.stderr);
    assert_eq!(
        common::tree(&env.path("t1")),
        common::tree(&env.path("source")),
        "the real backup is restored"
    );

    // Named explicitly: refused, no other backup in its place, nothing written.
    let out = env.run(&["restore", "config.yml", "--backup", &near, "--target", "t2"]);
    out.expect(1);
    assert!(
        out.stderr.contains("swapped or copied from another backup")
            && !out.stderr.contains("passing over"),
        "{}",
        out.stderr
    );
    assert!(!env.path("t2").exists());

    // The three newest all planted: no older backup is tried past them, each is named.
    let more = [
        plant(&env, &item, now + chrono::TimeDelta::hours(2)),
        plant(&env, &item, now + chrono::TimeDelta::hours(3)),
    ];
    let out = env.run(&["restore", "config.yml", "--target", "t3"]);
    out.expect(1);
    assert!(
        out.stderr
            .contains("none of the 3 newest backups is genuine")
            && [&near, &more[0], &more[1]]
                .iter()
                .all(|n| out.stderr.contains(n.as_str())),
        "{}",
        out.stderr
    );
    assert!(!env.path("t3").exists());
}

/// Backups made by the release of before archives carried an index (the workspace at the
/// commit before the index, "core: Destination gains `get_range` and `list_after`…"), one with
/// gzip and one with zstd, of the tree `previous_release_tree` makes, kept as that release
/// stored them in `fixtures/previous-release/`: a full restore and `verify` read them
/// unchanged, `ls` lists them from the whole archive saying so, and `restore --include`
/// refuses them with the hint to restore them whole.
#[test]
fn backups_made_by_the_release_before_the_index_restore_unchanged() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = Env::new();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/previous-release");
    let day = env.path("backups/2026/12/06");
    std::fs::create_dir_all(&day).unwrap();
    for entry in std::fs::read_dir(fixture.join("backups/2026/12/06")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), day.join(entry.file_name())).unwrap();
    }
    let key = std::fs::read_to_string(fixture.join("backup.key")).unwrap();
    common::secret(key.trim());
    common::write_private(&env.path("backup.key"), key);
    previous_release_tree(&env.path("expected"));

    for (name, compression) in [
        ("20261206T170239Z-vm-104ad145", "gzip"),
        ("20261206T170239Z-vm-79ce34ac", "zstd"),
    ] {
        let target = env.path(&format!("restored-{compression}"));
        env.restore_into(name, &target, &[]).expect(0);
        assert_eq!(
            common::tree(&target),
            common::tree(&env.path("expected")),
            "{compression}"
        );
        for (path, mode) in [("sub", 0o750), ("sub/blob.bin", 0o600), ("dump.sql", 0o644)] {
            let got = std::fs::metadata(target.join(path))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(got & 0o7777, mode, "{compression}: {path}");
        }
        env.run(&["verify", "config.yml", "--backup", name])
            .expect(0);

        let out = env.run(&["ls", "config.yml", "--backup", name, "--json"]);
        out.expect(0);
        assert!(out.stderr.contains("has no index"), "{}", out.stderr);
        let entries: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
        let mut paths: Vec<&str> = entries
            .iter()
            .map(|e| e["path"].as_str().unwrap())
            .collect();
        paths.sort_unstable();
        assert_eq!(
            paths,
            [
                "dump.sql",
                "empty-dir",
                "link",
                "sub",
                "sub/blob.bin",
                "sub/deeper",
                "sub/deeper/empty"
            ],
            "{compression}"
        );
        let link = entries.iter().find(|e| e["path"] == "link").unwrap();
        assert_eq!(link["link_target"], "sub/blob.bin");
        let dump = entries.iter().find(|e| e["path"] == "dump.sql").unwrap();
        assert_eq!(dump["size"], 3_120_000);

        let partial = env.path(&format!("partial-{compression}"));
        let out = env.restore_into(name, &partial, &["--include", "dump.sql"]);
        out.expect(2);
        assert!(out.stderr.contains("has no index"), "{}", out.stderr);
        assert!(!partial.exists());
    }
}

/// The tree the backups in `fixtures/previous-release/` were made of.
fn previous_release_tree(root: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    service_backup_testkit::trees::dump_file(&root.join("dump.sql"), 7, 120_000);
    service_backup_testkit::trees::noise_file(&root.join("sub/blob.bin"), 4096, 11);
    std::fs::write(root.join("sub/deeper/empty"), b"").unwrap();
    std::os::unix::fs::symlink("sub/blob.bin", root.join("link")).unwrap();
    std::fs::set_permissions(
        root.join("sub/blob.bin"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(root.join("sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
}

/// A file whose name is not UTF-8 (the index keeps it with U+FFFD in place of its bad
/// bytes) cannot be put in place by its name: `restore --include` says so before anything
/// is written; including the folder above it restores it with its exact name.
#[test]
fn include_of_a_name_that_is_not_utf8_says_why_and_its_folder_restores_it() {
    use std::os::unix::ffi::OsStrExt as _;
    let env = Env::new();
    let odd = std::ffi::OsStr::from_bytes(b"odd\xffname.conf");
    std::fs::create_dir_all(env.path("source/conf")).unwrap();
    std::fs::write(env.path("source/conf").join(odd), b"odd = 1\n").unwrap();
    env.backup();

    let out = env.run(&[
        "restore",
        "config.yml",
        "--target",
        "t",
        "--include",
        "conf/odd*",
    ]);
    out.expect(2);
    assert!(
        out.stderr.contains("cannot be restored alone"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("not UTF-8"), "{}", out.stderr);
    assert!(!env.path("t").exists());

    let out = env.run(&[
        "restore",
        "config.yml",
        "--target",
        "t",
        "--include",
        "conf",
    ]);
    out.expect(0);
    assert_eq!(
        std::fs::read(env.path("t/conf").join(odd)).unwrap(),
        b"odd = 1\n"
    );
}
