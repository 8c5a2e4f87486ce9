//! Disaster-recovery drill on an `s3` destination (moto, started by `tests/run.sh`), with
//! the real binary: back up, then on a "fresh VM" holding only the configuration and the
//! key, list, restore and verify. And a backup to a store that cannot be reached.

mod common;

use std::path::Path;

use common::{run, sample_tree, tree};
use service_backup_testkit::{env, unique};

const SECRET: &str = "dr/DRILL+secret+access+key/must-never-be-printed";
const KEY_ID: &str = "AKIADRILLKEYID000001";

/// Writes `config.yml` in `dir`: one s3 destination, the key beside the config.
fn write_config(dir: &Path, endpoint: &str, bucket: &str, source: &Path) {
    common::secret(SECRET);
    let yaml = format!(
        "destinations:\n\
         - type: s3\n  name: objects\n  config:\n    bucket_name: {bucket}\n    bucket_path: redis/prod\n    \
         access_key_id: {KEY_ID}\n    secret_access_key: {SECRET}\n    endpoint_url: {endpoint}\n    region: us-east-1\n\
         source_folder: {source}\n\
         cron_schedule: \"*/5 * * * *\"\n\
         deployment_name: redis-prod\n\
         add_deployment_name_to_backup_path: true\n\
         encryption:\n  key_file: backup.key\n",
        source = source.display()
    );
    std::fs::write(dir.join("config.yml"), yaml).unwrap();
}

fn assert_no_secret(output: &str) {
    assert!(!output.contains(SECRET), "the secret leaked:\n{output}");
}

#[test]
fn disaster_recovery_drill_on_s3() {
    let endpoint = env("SB_TEST_S3_ENDPOINT");
    let bucket = unique("drill");
    let vm = tempfile::tempdir().unwrap();
    let source = vm.path().join("source");
    sample_tree(&source);
    std::fs::write(
        source.join("sub/large.rdb"),
        service_backup_testkit::incompressible(17 * 1024 * 1024 + 3, 0x9E37_79B9_7F4A_7C15),
    )
    .unwrap();
    write_config(vm.path(), &endpoint, &bucket, &source);
    run(vm.path(), &["keygen", "--output", "backup.key"]).expect(0);
    let backup = run(vm.path(), &["backup", "config.yml"]);
    backup.expect(0);
    assert_no_secret(&backup.all());

    // A brand-new VM: nothing but the configuration and the key.
    let fresh = tempfile::tempdir().unwrap();
    for file in ["config.yml", "backup.key"] {
        std::fs::copy(vm.path().join(file), fresh.path().join(file)).unwrap();
    }
    let list = run(fresh.path(), &["list", "config.yml", "--json"]);
    list.expect(0);
    assert_no_secret(&list.all());
    let items: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(items.len(), 1, "{}", list.stdout);
    assert_eq!(items[0]["destination"], "objects");
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
    assert_no_secret(&restore.all());
    assert_eq!(tree(&source), tree(&fresh.path().join("restored")));

    let verify = run(fresh.path(), &["verify", "config.yml"]);
    verify.expect(0);
    assert_no_secret(&verify.all());
}

#[test]
fn backup_to_an_unreachable_s3_fails_naming_the_destination() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bucket = unique("unreachable");
    let vm = tempfile::tempdir().unwrap();
    let source = vm.path().join("source");
    sample_tree(&source);
    write_config(
        vm.path(),
        &format!("http://127.0.0.1:{port}"),
        &bucket,
        &source,
    );
    run(vm.path(), &["keygen", "--output", "backup.key"]).expect(0);
    let backup = run(vm.path(), &["backup", "config.yml"]);
    backup.expect(1);
    let all = backup.all();
    assert_no_secret(&all);
    let failed = all
        .lines()
        .find(|l| l.contains("Upload backup completed with error"))
        .unwrap_or_else(|| panic!("no upload error line:\n{all}"));
    assert!(failed.contains("objects"), "{failed}");
    assert!(failed.contains(&format!("s3 bucket {bucket}")), "{failed}");
    assert!(failed.contains("unreachable"), "{failed}");
}
