//! Disaster-recovery drill on a `gcs` destination (fake-gcs-server and the test token
//! endpoint, started by `tests/run.sh`), with the real binary: back up, then on a "fresh
//! VM" holding only the configuration and the key, list, restore and verify. And backups
//! with a key the token endpoint refuses and with a key that is not one.

mod common;

use std::path::Path;

use common::{run, sample_tree, server_env, tree, unique};

/// The test service account's JSON key.
fn service_account(var: &str) -> String {
    std::fs::read_to_string(server_env(var)).unwrap()
}

/// The lines of the private key inside a JSON key, for leak checks.
fn key_lines(json: &str) -> Vec<String> {
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    value["private_key"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_string)
        .collect()
}

/// Writes `config.yml` in `dir`: one gcs destination with the original's keys plus
/// `bucket_path` and `endpoint`, the key beside the config.
fn write_config(dir: &Path, json: &str, bucket: &str, source: &Path) {
    let yaml = format!(
        "destinations:\n\
         - type: gcs\n  name: google\n  config:\n    service_account_json: |\n      {json}\n    \
         project_id: {project}\n    bucket_name: {bucket}\n    bucket_path: redis/prod\n    endpoint: {endpoint}\n\
         source_folder: {source}\n\
         cron_schedule: \"*/5 * * * *\"\n\
         deployment_name: redis-prod\n\
         add_deployment_name_to_backup_path: true\n\
         encryption:\n  key_file: backup.key\n",
        json = json.trim(),
        project = server_env("SB_TEST_GCS_PROJECT"),
        endpoint = server_env("SB_TEST_GCS_ENDPOINT"),
        source = source.display()
    );
    std::fs::write(dir.join("config.yml"), yaml).unwrap();
}

fn assert_no_secret(json: &str, output: &str) {
    for line in key_lines(json) {
        assert!(!output.contains(&line), "the private key leaked:\n{output}");
    }
    assert!(
        !output.contains("PRIVATE KEY"),
        "the private key leaked:\n{output}"
    );
}

#[test]
fn disaster_recovery_drill_on_gcs() {
    let json = service_account("SB_TEST_GCS_KEY_FILE");
    let bucket = unique("drill");
    let vm = tempfile::tempdir().unwrap();
    let source = vm.path().join("source");
    sample_tree(&source);
    std::fs::write(
        source.join("sub/large.rdb"),
        service_backup_testkit::incompressible(17 * 1024 * 1024 + 3, 0x9E37_79B9_7F4A_7C15),
    )
    .unwrap();
    write_config(vm.path(), &json, &bucket, &source);
    run(vm.path(), &["keygen", "--output", "backup.key"]).expect(0);
    let backup = run(vm.path(), &["backup", "config.yml"]);
    backup.expect(0);
    assert_no_secret(&json, &backup.all());

    // A brand-new VM: nothing but the configuration and the key.
    let fresh = tempfile::tempdir().unwrap();
    for file in ["config.yml", "backup.key"] {
        std::fs::copy(vm.path().join(file), fresh.path().join(file)).unwrap();
    }
    let list = run(fresh.path(), &["list", "config.yml", "--json"]);
    list.expect(0);
    assert_no_secret(&json, &list.all());
    let items: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(items.len(), 1, "{}", list.stdout);
    assert_eq!(items[0]["destination"], "google");
    let key = items[0]["key"].as_str().unwrap();
    assert!(
        key.starts_with("redis/prod/redis-prod/") && key.ends_with(".tar.gz.enc"),
        "{key}"
    );
    assert!(items[0]["stored_bytes"].as_u64().unwrap() > 17 * 1024 * 1024);

    let restore = run(
        fresh.path(),
        &["restore", "config.yml", "--target", "restored"],
    );
    restore.expect(0);
    assert_no_secret(&json, &restore.all());
    assert_eq!(tree(&source), tree(&fresh.path().join("restored")));

    let verify = run(fresh.path(), &["verify", "config.yml"]);
    verify.expect(0);
    assert_no_secret(&json, &verify.all());
}

/// The line of a failed backup that says why the upload failed.
fn upload_error(all: &str) -> String {
    all.lines()
        .find(|l| l.contains("Upload backup completed with error"))
        .unwrap_or_else(|| panic!("no upload error line:\n{all}"))
        .to_string()
}

#[test]
fn backup_with_a_refused_key_fails_naming_the_destination_and_leaves_nothing() {
    let json = service_account("SB_TEST_GCS_WRONG_KEY_FILE");
    let bucket = unique("refused");
    let vm = tempfile::tempdir().unwrap();
    let source = vm.path().join("source");
    sample_tree(&source);
    write_config(vm.path(), &json, &bucket, &source);
    run(vm.path(), &["keygen", "--output", "backup.key"]).expect(0);
    let backup = run(vm.path(), &["backup", "config.yml"]);
    backup.expect(1);
    let all = backup.all();
    assert_no_secret(&json, &all);
    let failed = upload_error(&all);
    assert!(failed.contains("google"), "{failed}");
    assert!(
        failed.contains(&format!("gcs bucket {bucket}: cannot get an access token")),
        "{failed}"
    );
    assert!(failed.contains("401 invalid_grant"), "{failed}");

    // With the right key, the same configuration sees no bucket and no backup.
    write_config(
        vm.path(),
        &service_account("SB_TEST_GCS_KEY_FILE"),
        &bucket,
        &source,
    );
    let list = run(vm.path(), &["list", "config.yml", "--json"]);
    assert!(
        list.all().contains("the bucket does not exist"),
        "{}",
        list.all()
    );
}

#[test]
fn backup_with_a_key_that_is_not_one_fails_before_any_request() {
    // The original's fixture value: valid for `validate` (presence only), not for a backup.
    let vm = tempfile::tempdir().unwrap();
    let source = vm.path().join("source");
    sample_tree(&source);
    write_config(
        vm.path(),
        "{\"key\":\"value\"}",
        &unique("notakey"),
        &source,
    );
    run(vm.path(), &["keygen", "--output", "backup.key"]).expect(0);
    run(vm.path(), &["validate", "config.yml"]).expect(0);
    let backup = run(vm.path(), &["backup", "config.yml"]);
    backup.expect(1);
    let failed = upload_error(&backup.all());
    assert!(
        failed.contains("destination google: gcs bucket")
            && failed.contains("service_account_json has no client_email"),
        "{failed}"
    );
}
