//! The deployment of "Protecting backups from a compromised VM", end to end, with the real
//! binary, the daemon and its API, and moto (which enforces Object Lock; see
//! `tests/servers/moto-object-lock.patch`):
//! - an agent with recipients only and locked backups backs up to moto and cannot restore;
//! - an application developer sets a backup password through the API and decrypts a
//!   download with the password alone;
//! - an attacker with the agent's credentials can neither delete nor overwrite the locked
//!   backup (a write over its key adds a version; the locked one keeps its bytes);
//! - the operator, with the identity kept off the VM, restores on a fresh VM, also after the
//!   attacker's version is removed with the account's own credentials.

#[path = "common/api.rs"]
mod api;
mod common;

use std::path::Path;

use api::{ApiAgent, s3_client};
use aws_sdk_s3::primitives::ByteStream;
use common::{Run, run, run_with_stdin, sample_tree, tree};
use reqwest::{Method, StatusCode};
use serde_json::json;
use service_backup_testkit::{env, free_port, unique};

const SECRET: &str = "vm/COMPROMISED+secret+access+key/never-printed";
const ACCESS_KEY: &str = "AKIACOMPROMISED00001";
const TOKEN: &str = "tok-Compromised-5e6f7a8b9c";
const INSTANCE: &str = "inst-compromised";
const PASSWORD: &str = "Developer-Password-Compromised-1";

/// Writes `config.yml` in `dir`: one s3 destination with locked backups, encrypted for
/// `recipient` alone, the API on `port`.
fn write_config(dir: &Path, endpoint: &str, bucket: &str, recipient: &str, port: u16) {
    common::secret(SECRET);
    common::write_private(&dir.join("tokens"), format!("{TOKEN}\n"));
    let yaml = format!(
        "destinations:\n\
         - type: s3\n  name: objects\n  config:\n    bucket_name: {bucket}\n    bucket_path: pg/prod\n    \
         access_key_id: {ACCESS_KEY}\n    secret_access_key: {SECRET}\n    endpoint_url: {endpoint}\n    region: us-east-1\n    \
         immutability: {{mode: compliance, days: 1}}\n\
         source_folder: {source}\n\
         cron_schedule: \"0 0 1 1 *\"\n\
         state_dir: {state}\n\
         instance_id: {INSTANCE}\n\
         encryption:\n  recipients: [{recipient}]\n\
         api:\n  listen: 127.0.0.1:{port}\n  bearer_tokens_file: {tokens}\n",
        source = dir.join("source").display(),
        state = dir.join("state").display(),
        tokens = dir.join("tokens").display(),
    );
    std::fs::write(dir.join("config.yml"), yaml).unwrap();
}

/// The key of the one archive in `bucket`, and its versions (id, newest first).
async fn archive_versions(s3: &aws_sdk_s3::Client, bucket: &str) -> (String, Vec<String>) {
    let listed = s3
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let archives: Vec<_> = listed
        .versions()
        .iter()
        .filter(|v| v.key().unwrap().ends_with(".tar.gz.enc"))
        .collect();
    assert!(!archives.is_empty(), "{listed:?}");
    let key = archives[0].key().unwrap().to_string();
    assert!(
        archives.iter().all(|v| v.key() == Some(key.as_str())),
        "{listed:?}"
    );
    (
        key,
        archives
            .iter()
            .map(|v| v.version_id().unwrap().to_string())
            .collect(),
    )
}

async fn read_version(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, version: &str) -> Vec<u8> {
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .version_id(version)
        .send()
        .await
        .unwrap();
    object.body.collect().await.unwrap().to_vec()
}

/// The refusal of a write-only agent: the message, its hint, exit code 2.
fn assert_write_only_refusal(r: &Run) {
    r.expect(2);
    assert!(
        r.stderr
            .contains("this VM holds no key that opens these backups"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("restores need --identity FILE"),
        "{}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compromised_vm_can_neither_read_nor_destroy_its_backups() {
    common::secret(PASSWORD);
    let endpoint = env("SB_TEST_S3_ENDPOINT");
    let bucket = unique("compromised");

    // The operator's laptop: the identity never goes to the VM.
    let laptop = tempfile::tempdir().unwrap();
    let keygen = run(laptop.path(), &["keygen", "--recipient", "ops.identity"]);
    keygen.expect(0);
    let recipient = keygen.stdout.trim().to_string();
    let identity = std::fs::read_to_string(laptop.path().join("ops.identity")).unwrap();
    common::secret(identity.lines().last().unwrap());

    // The VM: recipients only, locked backups, the API for the dashboard.
    let vm = tempfile::tempdir().unwrap();
    sample_tree(&vm.path().join("source"));
    let port = free_port();
    write_config(vm.path(), &endpoint, &bucket, &recipient, port);
    let daemon = ApiAgent::start(vm.path(), port, TOKEN, INSTANCE).await;

    // The developer sets a backup password; the next backup carries its stanza.
    let (status, body) = daemon
        .call(
            Method::PUT,
            &format!("/service-instances/{INSTANCE}/backups/password"),
            Some((
                "application/json",
                json!({"password": PASSWORD}).to_string(),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["applies_to"], "backups made from now on", "{body}");
    let id = daemon.backup().await;
    let (_, download) = daemon.download(id).await;

    // The developer opens the download with the password alone.
    let developer = tempfile::tempdir().unwrap();
    std::fs::write(developer.path().join("backup.tar.gz.enc"), &download).unwrap();
    run_with_stdin(
        developer.path(),
        &[
            "decrypt",
            "--passphrase-fd",
            "0",
            "--output",
            "backup.tar.gz",
            "backup.tar.gz.enc",
        ],
        Some(format!("{PASSWORD}\n").as_bytes()),
    )
    .expect(0);
    let by_password = std::fs::read(developer.path().join("backup.tar.gz")).unwrap();
    assert!(by_password.starts_with(&[0x1f, 0x8b]), "a plain .tar.gz");

    // The VM cannot read what it wrote: restore refuses before touching the target.
    let target = vm.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("precious.txt"), b"keep me").unwrap();
    let refused = run(
        vm.path(),
        &["restore", "config.yml", "--target", "target", "--force"],
    );
    assert_write_only_refusal(&refused);
    assert_eq!(
        tree(&target),
        vec![("precious.txt".to_string(), b"keep me".to_vec())]
    );
    drop(daemon);
    for file in ["daemon.log", "daemon.err"] {
        let log = std::fs::read_to_string(vm.path().join(file)).unwrap();
        assert!(
            !log.contains(PASSWORD) && !log.contains(SECRET),
            "{file}: {log}"
        );
    }

    // The attacker holds the agent's credentials: deleting the locked archive fails, by
    // key (a delete marker hides it from a listing, the version stays) and by version.
    let attacker = s3_client(&endpoint, ACCESS_KEY, SECRET);
    let (key, versions) = archive_versions(&attacker, &bucket).await;
    assert_eq!(versions.len(), 1, "{versions:?}");
    let locked = versions[0].clone();
    let original = read_version(&attacker, &bucket, &key, &locked).await;
    assert_eq!(original, download, "the download is the stored archive");
    let refused = attacker
        .delete_object()
        .bucket(&bucket)
        .key(&key)
        .version_id(&locked)
        .send()
        .await
        .expect_err("a locked version cannot be deleted");
    assert!(
        format!("{refused:?}").contains("AccessDenied"),
        "{refused:?}"
    );
    let refused = attacker
        .delete_object()
        .bucket(&bucket)
        .key(&key)
        .version_id(&locked)
        .bypass_governance_retention(true)
        .send()
        .await
        .expect_err("compliance mode: not even with the governance bypass");
    assert!(
        format!("{refused:?}").contains("AccessDenied"),
        "{refused:?}"
    );
    // An overwrite adds a version: the locked one keeps its bytes.
    attacker
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .body(ByteStream::from_static(b"ransom note"))
        .send()
        .await
        .unwrap();
    let (_, versions) = archive_versions(&attacker, &bucket).await;
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(
        read_version(&attacker, &bucket, &key, &locked).await,
        original
    );

    // The account's owner removes the attacker's version (it is not locked), and the
    // operator restores on a fresh VM with the identity brought from the laptop.
    let owner = s3_client(&endpoint, "AKIAACCOUNTOWNER0001", SECRET);
    let newest = versions.iter().find(|v| **v != locked).unwrap();
    owner
        .delete_object()
        .bucket(&bucket)
        .key(&key)
        .version_id(newest)
        .send()
        .await
        .unwrap();
    let fresh = tempfile::tempdir().unwrap();
    write_config(fresh.path(), &endpoint, &bucket, &recipient, free_port());
    common::restore_with_identity(fresh.path(), &laptop.path().join("ops.identity"));
    assert_eq!(
        tree(&vm.path().join("source")),
        tree(&fresh.path().join("restored"))
    );
    assert_eq!(
        read_version(&owner, &bucket, &key, &locked).await,
        original,
        "the locked version outlived the attack"
    );
}
