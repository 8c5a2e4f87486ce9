//! Disaster-recovery drill on Azure Blob storage (Azurite), with the real binary: back up,
//! then list, restore and verify from a brand-new folder holding only the configuration
//! and the key, as on a fresh VM.

mod common;

use std::path::Path;

use common::{run, sample_tree, tree};
use service_backup_testkit::{env, unique};

/// `config.yml` in `dir`: one azure destination at `endpoint`, the key file beside it.
fn write_config(dir: &Path, source: &Path, endpoint: &str, container: &str) {
    let yaml = format!(
        "destinations:\n\
         - type: azure\n  name: blobs\n  config:\n\
         \x20   storage_account: {account}\n\
         \x20   storage_access_key: {key}\n\
         \x20   container: {container}\n\
         \x20   path: redis/prod\n\
         \x20   endpoint: {endpoint}\n\
         source_folder: {source}\n\
         cron_schedule: \"0 3 * * *\"\n\
         deployment_name: redis-dr\n\
         add_deployment_name_to_backup_path: true\n\
         encryption:\n  key_file: {dir}/backup.key\n",
        account = env("SB_TEST_AZURE_ACCOUNT"),
        key = env("SB_TEST_AZURE_KEY"),
        source = source.display(),
        dir = dir.display(),
    );
    std::fs::write(dir.join("config.yml"), yaml).unwrap();
}

/// The secrets of a configuration, none of which may be printed.
fn assert_no_secret(output: &str, dir: &Path) {
    let key = std::fs::read_to_string(dir.join("backup.key")).unwrap();
    for secret in [env("SB_TEST_AZURE_KEY"), key.trim().to_string()] {
        assert!(!output.contains(&secret), "a secret was printed:\n{output}");
    }
}

#[test]
fn backup_then_restore_on_a_fresh_vm() {
    let endpoint = env("SB_TEST_AZURE_ENDPOINT");
    let container = unique("dr");
    let vm = tempfile::tempdir().unwrap();
    let source = vm.path().join("source");
    sample_tree(&source);
    run(vm.path(), &["keygen", "--output", "backup.key"]).expect(0);
    write_config(vm.path(), &source, &endpoint, &container);
    let backup = run(vm.path(), &["backup", "config.yml"]);
    backup.expect(0);
    assert_no_secret(&backup.all(), vm.path());

    // A new VM: nothing but the configuration and the key.
    let fresh = tempfile::tempdir().unwrap();
    std::fs::copy(
        vm.path().join("backup.key"),
        fresh.path().join("backup.key"),
    )
    .unwrap();
    write_config(fresh.path(), &source, &endpoint, &container);
    let list = run(fresh.path(), &["list", "config.yml", "--json"]);
    list.expect(0);
    let items: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(items.len(), 1, "{}", list.stdout);
    assert_eq!(items[0]["destination"], "blobs");
    let key = items[0]["key"].as_str().unwrap();
    assert!(
        key.starts_with("redis/prod/redis-dr/") && key.ends_with(".tar.gz.enc"),
        "{key}"
    );

    let restore = run(
        fresh.path(),
        &["restore", "config.yml", "--target", "restored"],
    );
    restore.expect(0);
    assert_eq!(tree(&source), tree(&fresh.path().join("restored")));
    let verify = run(fresh.path(), &["verify", "config.yml"]);
    verify.expect(0);
    for out in [&list, &restore, &verify] {
        assert_no_secret(&out.all(), fresh.path());
    }
}

#[test]
fn backup_to_an_unreachable_server_fails_naming_the_destination() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}/{}", env("SB_TEST_AZURE_ACCOUNT"));
    let vm = tempfile::tempdir().unwrap();
    let source = vm.path().join("source");
    sample_tree(&source);
    run(vm.path(), &["keygen", "--output", "backup.key"]).expect(0);
    write_config(vm.path(), &source, &endpoint, "backups");
    let started = std::time::Instant::now();
    let backup = run(vm.path(), &["backup", "config.yml"]);
    backup.expect(1);
    assert!(
        started.elapsed() < std::time::Duration::from_mins(1),
        "{:?}",
        started.elapsed()
    );
    let all = backup.all();
    assert!(all.contains("blobs"), "{all}");
    assert!(
        all.contains("azure devstoreaccount1/backups") && all.contains(&endpoint),
        "{all}"
    );
    assert_no_secret(&all, vm.path());
}
