//! Write-only agents (issue 25, part 1), with the real binary and an `s3` destination
//! (moto, started by `tests/run.sh`): an agent configured with `encryption.recipients`
//! only backs up, lists and prunes, and refuses to restore or verify, leaving the target
//! untouched; an operator with the identity, on a fresh VM, restores byte for byte.

mod common;

use std::path::Path;

use common::{Run, run, sample_tree, tree};
use service_backup_testkit::{env, unique};

const SECRET: &str = "wo/WRITE+only+secret+access+key/never-printed";

/// Writes `config.yml` in `dir`: one s3 destination, encrypted for `recipient` alone, the
/// last backup kept.
fn write_config(dir: &Path, endpoint: &str, bucket: &str, source: &Path, recipient: &str) {
    common::secret(SECRET);
    let yaml = format!(
        "destinations:\n\
         - type: s3\n  name: objects\n  config:\n    bucket_name: {bucket}\n    bucket_path: pg/prod\n    \
         access_key_id: AKIAWRITEONLY0000001\n    secret_access_key: {SECRET}\n    endpoint_url: {endpoint}\n    region: us-east-1\n\
         source_folder: {source}\n\
         cron_schedule: \"*/5 * * * *\"\n\
         state_dir: {state}\n\
         retention: {{keep_last: 1}}\n\
         encryption:\n  recipients: [{recipient}]\n",
        source = source.display(),
        state = dir.join("state").display(),
    );
    std::fs::write(dir.join("config.yml"), yaml).unwrap();
}

fn listed(dir: &Path) -> Vec<serde_json::Value> {
    let list = run(dir, &["list", "config.yml", "--json"]);
    list.expect(0);
    serde_json::from_str(&list.stdout).unwrap()
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
    assert!(r.stderr.contains("kept off the VM"), "{}", r.stderr);
}

#[test]
fn a_write_only_agent_backs_up_and_only_the_identity_restores() {
    let endpoint = env("SB_TEST_S3_ENDPOINT");
    let bucket = unique("writeonly");

    // The operator's laptop: an identity that never goes to the VM.
    let laptop = tempfile::tempdir().unwrap();
    let keygen = run(laptop.path(), &["keygen", "--recipient", "ops.identity"]);
    keygen.expect(0);
    let recipient = keygen.stdout.trim().to_string();
    assert!(recipient.starts_with("sbrec1"), "{}", keygen.stdout);
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(laptop.path().join("ops.identity"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let identity = std::fs::read_to_string(laptop.path().join("ops.identity")).unwrap();
    common::secret(identity.lines().last().unwrap());
    assert!(
        identity.contains(&format!("# recipient: {recipient}")),
        "{identity}"
    );
    let again = run(laptop.path(), &["keygen", "--recipient", "ops.identity"]);
    again.expect(2);
    assert!(
        again.stderr.contains("ops.identity already exists"),
        "{}",
        again.stderr
    );
    assert_eq!(
        std::fs::read_to_string(laptop.path().join("ops.identity")).unwrap(),
        identity,
        "keygen overwrote an identity"
    );

    // The VM: recipients only. Two backups; the retention keeps the newer one.
    let vm = tempfile::tempdir().unwrap();
    let source = vm.path().join("source");
    sample_tree(&source);
    write_config(vm.path(), &endpoint, &bucket, &source, &recipient);
    run(vm.path(), &["validate", "config.yml"]).expect(0);
    run(vm.path(), &["backup", "config.yml"]).expect(0);
    // Backup names order by the second: the second backup must be newer by its name too.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(source.join("second.txt"), b"made by the second backup\n").unwrap();
    let second = run(vm.path(), &["backup", "config.yml"]);
    second.expect(0);
    assert!(!second.all().contains(SECRET));
    let items = listed(vm.path());
    assert_eq!(
        items.len(),
        1,
        "the prune after the backup kept one: {items:?}"
    );
    let name = items[0]["name"].as_str().unwrap().to_string();
    assert!(
        items[0]["key"].as_str().unwrap().ends_with(".tar.gz.enc"),
        "{items:?}"
    );
    let prune = run(vm.path(), &["prune", "config.yml"]);
    prune.expect(0);
    assert!(!prune.all().contains("ignored"), "{}", prune.all());

    // The VM cannot read what it wrote: restore and verify refuse before touching anything.
    let target = vm.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("precious.txt"), b"keep me").unwrap();
    let restore = run(
        vm.path(),
        &["restore", "config.yml", "--target", "target", "--force"],
    );
    assert_write_only_refusal(&restore);
    assert_eq!(
        tree(&target),
        vec![("precious.txt".to_string(), b"keep me".to_vec())],
        "the target changed"
    );
    assert_write_only_refusal(&run(vm.path(), &["verify", "config.yml"]));

    // A fresh VM with the configuration and the identity, brought by the operator.
    let fresh = tempfile::tempdir().unwrap();
    write_config(fresh.path(), &endpoint, &bucket, &source, &recipient);
    common::restore_with_identity(fresh.path(), &laptop.path().join("ops.identity"));
    assert_eq!(tree(&source), tree(&fresh.path().join("restored")));
    run(
        fresh.path(),
        &[
            "verify",
            "config.yml",
            "--identity",
            "ops.identity",
            "--backup",
            &name,
        ],
    )
    .expect(0);

    // Another identity opens nothing, and says which recipients it needed and tried.
    run(laptop.path(), &["keygen", "--recipient", "other.identity"]).expect(0);
    std::fs::copy(
        laptop.path().join("other.identity"),
        fresh.path().join("other.identity"),
    )
    .unwrap();
    let wrong = run(
        fresh.path(),
        &["verify", "config.yml", "--identity", "other.identity"],
    );
    wrong.expect(1);
    assert!(
        wrong
            .stderr
            .contains("the archive was encrypted for recipient ")
            && wrong
                .stderr
                .contains("but the given identities are for recipient "),
        "{}",
        wrong.stderr
    );
}

#[test]
fn a_downloaded_archive_of_a_write_only_agent_decrypts_with_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let keygen = run(dir.path(), &["keygen", "--recipient", "ops.identity"]);
    keygen.expect(0);
    let recipient = keygen.stdout.trim().to_string();
    let source = dir.path().join("source");
    sample_tree(&source);
    let yaml = format!(
        "destinations:\n- type: local\n  config: {{path: {backups}}}\nsource_folder: {source}\n\
         cron_schedule: \"@daily\"\nstate_dir: {state}\nencryption: {{recipients: [{recipient}]}}\n",
        backups = dir.path().join("backups").display(),
        source = source.display(),
        state = dir.path().join("state").display(),
    );
    std::fs::write(dir.path().join("config.yml"), yaml).unwrap();
    run(dir.path(), &["backup", "config.yml"]).expect(0);
    let items = listed(dir.path());
    let key = items[0]["key"].as_str().unwrap();
    let archive = dir.path().join("backups").join(key);
    let file = archive.file_name().unwrap().to_str().unwrap().to_string();
    std::fs::copy(&archive, dir.path().join(&file)).unwrap();

    let decrypt = run(
        dir.path(),
        &[
            "decrypt",
            "--identity",
            "ops.identity",
            "--extract",
            "out",
            &file,
        ],
    );
    decrypt.expect(0);
    assert_eq!(tree(&source), tree(&dir.path().join("out")));
    // Without it, decrypt is told how it is called.
    let missing = run(dir.path(), &["decrypt", "--output", "x.tar.gz", &file]);
    missing.expect(2);
    assert!(!dir.path().join("x.tar.gz").exists());
}
