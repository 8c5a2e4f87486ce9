//! backup → list → verify → restore → decrypt with the real binary on a local destination.

mod common;

use std::os::unix::fs::PermissionsExt as _;

use common::{Env, run_with_stdin, tree};

#[test]
fn backup_list_verify_restore_round_trip() {
    let env = Env::new();
    let out = env.run(&["backup", "config.yml"]);
    out.expect(0);
    let messages: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON line: {l}")))
        .collect();
    let texts: Vec<&str> = messages.iter().map(common::action).collect();
    // No source_executable here: the original's executor.go logs "source_executable not
    // provided, skipping performing of backup" instead of "Perform backup started".
    for m in [
        "source_executable not provided, skipping performing of backup",
        "Upload backup started",
        "Upload backup completed successfully",
        "Cleanup command not provided",
    ] {
        assert!(texts.contains(&m), "missing {m:?} in {texts:?}");
    }
    let done = messages
        .iter()
        .find(|m| common::action(m) == "Upload backup completed successfully")
        .unwrap();
    assert_eq!(done["source"], "ServiceBackup");
    assert_eq!(done["log_level"], 1);
    assert_eq!(done["data"]["destination_name"], "disk");
    assert!(done["data"]["backup_guid"].as_str().unwrap().len() == 36);
    assert!(done["data"]["duration_in_seconds"].is_number());
    assert!(done["data"]["size_in_bytes"].as_u64().unwrap() > 400_000);
    assert!(
        !out.all().contains(&env.key_text()),
        "the key leaked into the logs"
    );

    let list = env.run(&["list", "config.yml", "--json"]);
    list.expect(0);
    let items: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(items.len(), 1);
    let item = &items[0];
    for field in [
        "name",
        "instance_id",
        "destination",
        "started_at",
        "finished_at",
        "size_in_bytes",
        "stored_bytes",
        "key",
    ] {
        assert!(!item[field].is_null(), "list --json lacks {field}: {item}");
    }
    let key = item["key"].as_str().unwrap();
    let today = chrono::Local::now().format("%Y/%m/%d").to_string();
    assert!(
        key.starts_with(&today) && key.ends_with(".tar.gz.enc"),
        "{key}"
    );
    assert!(
        env.path("backups")
            .join(key.replace(".tar.gz.enc", ".json"))
            .exists()
    );

    let table = env.run(&["list", "config.yml"]);
    table.expect(0);
    assert!(table.stdout.contains(item["name"].as_str().unwrap()));

    env.run(&["verify", "config.yml"]).expect(0);
    env.run(&["restore", "config.yml", "--target", "restored"])
        .expect(0);
    assert_eq!(tree(&env.path("source")), tree(&env.path("restored")));
    let mode = std::fs::metadata(env.path("restored/sub/blob.bin"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        std::fs::metadata(env.path("source/sub/blob.bin"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    );
}

#[test]
fn restore_picks_by_name_and_by_time() {
    let env = Env::new();
    let first = env.backup();
    std::fs::write(env.path("source/dump.sql"), "changed\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = env.backup();
    assert_ne!(first["name"], second["name"]);

    env.run(&["restore", "config.yml", "--target", "latest"])
        .expect(0);
    assert_eq!(
        std::fs::read(env.path("latest/dump.sql")).unwrap(),
        b"changed\n"
    );

    let name = first["name"].as_str().unwrap();
    env.run(&[
        "restore",
        "config.yml",
        "--backup",
        name,
        "--target",
        "named",
    ])
    .expect(0);
    assert!(
        std::fs::read(env.path("named/dump.sql"))
            .unwrap()
            .starts_with(b"INSERT")
    );

    let before = second["started_at"].as_str().unwrap();
    env.run(&[
        "restore",
        "config.yml",
        "--before",
        before,
        "--target",
        "before",
    ])
    .expect(0);
    assert!(
        std::fs::read(env.path("before/dump.sql"))
            .unwrap()
            .starts_with(b"INSERT")
    );

    let none = env.run(&[
        "restore",
        "config.yml",
        "--before",
        "2001-01-01T00:00:00Z",
        "--target",
        "x",
    ]);
    none.expect(1);
    assert!(
        none.stderr.contains("no complete backup started before"),
        "{}",
        none.stderr
    );
    assert!(
        !env.path("x").exists(),
        "a failed restore must not leave its target behind"
    );
}

#[test]
fn a_downloaded_archive_restores_decrypts_and_extracts_without_config() {
    let env = Env::new();
    let item = env.backup();
    let archive = env.archive_of(&item);
    let archive = archive.to_str().unwrap();

    env.run(&[
        "restore",
        "--file",
        archive,
        "--key-file",
        "backup.key",
        "--target",
        "from-file",
    ])
    .expect(0);
    assert_eq!(tree(&env.path("source")), tree(&env.path("from-file")));

    env.run(&["verify", "--file", archive, "--key-file", "backup.key"])
        .expect(0);

    env.run(&[
        "decrypt",
        "--key-file",
        "backup.key",
        "--output",
        "plain.tar.gz",
        archive,
    ])
    .expect(0);
    std::fs::create_dir(env.path("by-tar")).unwrap();
    let tar = std::process::Command::new("tar")
        .args(["xzf", "../plain.tar.gz"])
        .current_dir(env.path("by-tar"))
        .status()
        .unwrap();
    assert!(tar.success(), "system tar reads the decrypted archive");
    assert_eq!(tree(&env.path("source")), tree(&env.path("by-tar")));

    let piped = run_with_stdin(
        env.dir.path(),
        &["decrypt", "--key-file", "backup.key"],
        Some(&std::fs::read(archive).unwrap()),
    );
    piped.expect(0);
    assert_eq!(
        piped.raw_stdout,
        std::fs::read(env.path("plain.tar.gz")).unwrap()
    );

    env.run(&[
        "decrypt",
        "--key-file",
        "backup.key",
        "--extract",
        "extracted",
        archive,
    ])
    .expect(0);
    assert_eq!(tree(&env.path("source")), tree(&env.path("extracted")));
}

#[test]
fn without_a_key_backups_are_plain_tar_gz_and_a_warning_is_logged() {
    let env = Env::new();
    let d = env.dir.path().display();
    let yaml = format!(
        "destinations:\n- type: local\n  config:\n    path: {d}/backups\nsource_folder: {d}/source\ncron_schedule: \"@daily\"\n"
    );
    std::fs::write(env.path("plain.yml"), yaml).unwrap();
    let out = env.run(&["backup", "plain.yml"]);
    out.expect(0);
    assert!(
        out.stdout.contains("No encryption key is configured"),
        "{}",
        out.stdout
    );
    let list = env.run(&["list", "plain.yml", "--json"]);
    let items: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    let key = items[0]["key"].as_str().unwrap();
    assert!(key.ends_with(".tar.gz") && !key.ends_with(".enc"), "{key}");
    env.run(&["restore", "plain.yml", "--target", "out"])
        .expect(0);
    assert_eq!(tree(&env.path("source")), tree(&env.path("out")));
}

#[test]
fn keygen_writes_a_private_key_and_never_overwrites() {
    let env = Env::new();
    let mode = std::fs::metadata(env.path("backup.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let before = env.key_text();
    let again = env.run(&["keygen", "--output", "backup.key"]);
    again.expect(2);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(env.key_text(), before);
    let printed = env.run(&["keygen"]);
    printed.expect(0);
    assert_eq!(printed.stdout.trim().len(), 44);
}

#[test]
fn an_archive_without_manifest_is_invisible() {
    let env = Env::new();
    let item = env.backup();
    let manifest = env
        .archive_of(&item)
        .with_extension("")
        .with_extension("json");
    let manifest = manifest.to_str().unwrap().replace(".tar.json", ".json");
    std::fs::remove_file(&manifest).unwrap();
    let list = env.run(&["list", "config.yml", "--json"]);
    list.expect(0);
    assert_eq!(list.stdout.trim(), "[]");
    let out = env.run(&["restore", "config.yml", "--target", "t"]);
    out.expect(1);
    assert!(
        out.stderr.contains("there is no complete backup"),
        "{}",
        out.stderr
    );
}

#[test]
fn demo_runs_the_quick_start() {
    let env = Env::new();
    let out = env.run(&["demo", "--dir", "demo"]);
    out.expect(0);
    assert!(
        out.stdout
            .contains("restored folder is identical to the source"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_new_vm_with_another_instance_id_restores_the_only_instance_under_the_prefix() {
    let env = Env::new();
    env.write_config("instance_id: old-vm\nstate_dir: state-old\n");
    env.run(&["backup", "config.yml"]).expect(0);

    // The replacement VM: another instance id (its host name changed), no state.
    env.write_config("instance_id: new-vm\nstate_dir: state-new\n");
    let target = env.path("restored");
    let restored = env.run(&[
        "restore",
        "config.yml",
        "--target",
        target.to_str().unwrap(),
    ]);
    restored.expect(0);
    assert!(
        restored.all().contains("only instance under this prefix"),
        "{}",
        restored.all()
    );
    assert_eq!(tree(&target), tree(&env.path("source")));

    // With two other instances under the prefix nothing is guessed.
    env.write_config("instance_id: other-vm\nstate_dir: state-other\n");
    env.run(&["backup", "config.yml"]).expect(0);
    env.write_config("instance_id: third-vm\nstate_dir: state-third\n");
    let elsewhere = env.path("elsewhere");
    let refused = env.run(&[
        "restore",
        "config.yml",
        "--target",
        elsewhere.to_str().unwrap(),
    ]);
    refused.expect(1);
    assert!(
        refused.all().contains("--from-instance"),
        "{}",
        refused.all()
    );
    assert!(!elsewhere.exists(), "a refused restore wrote its target");
}

#[test]
fn zstd_backups_restore_and_decrypt_to_what_tar_reads() {
    let env = Env::new();
    env.write_config("compression: zstd\n");
    let item = env.backup();
    let key = item["key"].as_str().unwrap();
    assert!(key.ends_with(".tar.zst.enc"), "{key}");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            env.path("backups")
                .join(key.replace(".tar.zst.enc", ".json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["compression"]["algorithm"], "zstd");
    assert_eq!(manifest["compression"]["level"], 3);

    env.run(&["verify", "config.yml"]).expect(0);
    env.run(&["restore", "config.yml", "--target", "restored"])
        .expect(0);
    assert_eq!(tree(&env.path("source")), tree(&env.path("restored")));

    // A gzip backup after it: both restore, each by its own compression.
    env.write_config("");
    let gzip = env.backup();
    assert!(gzip["key"].as_str().unwrap().ends_with(".tar.gz.enc"));
    let name = item["name"].as_str().unwrap();
    env.restore_into(name, &env.path("older"), &[]).expect(0);
    assert_eq!(tree(&env.path("source")), tree(&env.path("older")));

    let archive = env.archive_of(&item);
    let archive = archive.to_str().unwrap();
    env.run(&[
        "decrypt",
        "--key-file",
        "backup.key",
        "--output",
        "plain.tar.zst",
        archive,
    ])
    .expect(0);
    std::fs::create_dir(env.path("by-tar")).unwrap();
    // tests/run.sh installs the zstd command that `tar --zstd` runs.
    let tar = std::process::Command::new("tar")
        .args(["--zstd", "-xf", "../plain.tar.zst"])
        .current_dir(env.path("by-tar"))
        .status()
        .unwrap();
    assert!(tar.success(), "system tar reads the decrypted archive");
    assert_eq!(tree(&env.path("source")), tree(&env.path("by-tar")));
}

#[test]
fn symlinks_that_point_anywhere_are_backed_up_verified_and_restored_as_they_were() {
    // The links a data service leaves in its dump folder: absolute, absolute into the
    // folder itself, relative and leaving it, and one through another link.
    use std::os::unix::fs::symlink;
    let env = Env::new();
    let source = env.path("source");
    std::fs::create_dir_all(source.join("releases/v2/db")).unwrap();
    std::fs::write(source.join("real.conf"), b"x").unwrap();
    std::fs::write(source.join("releases/v2/db/f"), b"x").unwrap();
    let links = [
        ("wal", "/var/log".to_string()),
        ("cfg", source.join("real.conf").display().to_string()),
        ("up", "../../etc".to_string()),
        ("current", "releases/v2".to_string()),
        ("data", "current/db".to_string()),
    ];
    for (at, to) in &links {
        symlink(to, source.join(at)).unwrap();
    }
    env.run(&["backup", "config.yml"]).expect(0);
    env.run(&["verify", "config.yml"]).expect(0);
    env.run(&["restore", "config.yml", "--target", "restored"])
        .expect(0);
    assert_eq!(tree(&source), tree(&env.path("restored")));
    for (at, to) in &links {
        assert_eq!(
            std::fs::read_link(env.path("restored").join(at)).unwrap(),
            std::path::Path::new(to),
            "{at}"
        );
    }
    // Restoring only some paths keeps working too.
    env.run(&[
        "restore",
        "config.yml",
        "--target",
        "some",
        "--include",
        "wal",
        "--include",
        "data",
    ])
    .expect(0);
    assert_eq!(
        std::fs::read_link(env.path("some/wal")).unwrap(),
        std::path::Path::new("/var/log")
    );
}
