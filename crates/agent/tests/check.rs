//! `service-backup check`: a destination of each kind on the real test servers passes and
//! keeps nothing; each way a destination or an executable cannot work is a row with its
//! message, and leaves nothing in the destination; the binary's exit codes; and a probe
//! left behind by a crash is neither listed nor pruned, and is removed by the next check.
//!
//! | bad input | how it is made | what `check` reports | test |
//! | --- | --- | --- | --- |
//! | S3 credentials the server refuses | a moto of the test's own with authentication on (`INITIAL_NO_AUTH_ACTION_COUNT=0`), an access key it does not know | `destination NAME` failed, `InvalidAccessKeyId`, what to check; no bucket made | `s3_credentials_the_server_refuses` |
//! | S3 bucket name the server refuses | a 69-character name on moto | `InvalidBucketName`, check `bucket_name` | `s3_bucket_name_the_server_refuses` |
//! | Azure key the server refuses | Azurite, the account with another key | 403, the key's rights; the container holds nothing | `azure_key_the_server_refuses` |
//! | GCS key without rights | the key the test token endpoint refuses | no access token, 401 `invalid_grant`; no bucket made | `gcs_key_the_token_endpoint_refuses` |
//! | SSH server with another host key | an sshd with only its ed25519 host key, `fingerprint` of its RSA key | the fingerprints, no login, nothing written | `ssh_server_with_another_host_key` |
//! | server that never answers | a loopback port that accepts and says nothing, as S3 endpoint and SSH server, `--timeout 2` | each destination did not complete a probe within 2 s, what to check; the command ends in seconds | `servers_that_never_answer_fail_within_the_timeout` |
//! | executable not executable | `source_executable` a file of mode 0644 | not executable by this user, chmod +x | `executables_that_cannot_run` |
//! | executable missing | `cleanup_executable` a path that does not exist | does not exist, fix the path | `executables_that_cannot_run` |
//!
//! Each row's exit code (1, naming each failed check) is the binary's, as
//! `the_binary_exits_0_1_or_2` shows for failed destinations and executables together.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use service_backup::cli::check::{Report, report};
use service_backup::config::{self, Config};
use service_backup::destinations;
use service_backup_core::layout::Layout;
use service_backup_testkit::{Sshd, env, moto, unique};

/// The S3 secret of these tests' configurations.
const S3_SECRET: &str = "check/S3+secret+access+key/never-printed";
/// An Azure account key that is not the account's (base64, as a real one).
const WRONG_AZURE_KEY: &str =
    "d3Jvbmcta2V5LW9mLXRoZS1jaGVjay10ZXN0cy1uZXZlci1wcmludGVkLTAxMjM0NQ==";

/// A folder with `config.yml` (these `destinations`, a source folder, a schedule and
/// `extra` lines), loaded as the agent loads it.
struct Site {
    _dir: tempfile::TempDir,
    config: Config,
}

impl Site {
    fn new(destinations: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("source")).unwrap();
        let yaml = format!(
            "destinations:\n{destinations}source_folder: {d}/source\n\
             cron_schedule: \"0 3 * * *\"\nstate_dir: {d}/state\n{extra}",
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("config.yml"), yaml).unwrap();
        let config = config::load(&dir.path().join("config.yml"))
            .unwrap_or_else(|e| panic!("the test configuration is invalid: {:?}", e.problems()));
        Self { _dir: dir, config }
    }

    /// Runs every check, as `check` does, and adds the lines to the secrets scan.
    async fn check(&self) -> Report {
        let report = report(
            &self.config,
            Duration::from_mins(1),
            std::env::var_os("PATH"),
        )
        .await;
        let text = lines(&report);
        println!("{text}");
        common::printed(&text);
        for secret in [S3_SECRET, WRONG_AZURE_KEY, &env("SB_TEST_AZURE_KEY")] {
            assert!(!text.contains(secret), "a secret was printed:\n{text}");
        }
        report
    }

    /// The objects of the destination named `name`, from the store itself.
    async fn objects(&self, name: &str) -> service_backup_core::Result<Vec<String>> {
        let dest = self
            .config
            .destinations
            .iter()
            .find(|d| d.display_name() == name)
            .unwrap();
        let target = destinations::build(&self.config, dest)?;
        let listed = target.destination.list("").await?;
        Ok(listed.into_iter().map(|o| o.key).collect())
    }
}

fn lines(report: &Report) -> String {
    let mut out: Vec<String> = report
        .findings
        .iter()
        .map(service_backup::cli::check::Finding::line)
        .collect();
    out.push(report.schedule.clone());
    out.join("\n")
}

/// The one failed finding of `report`, which must be `subject`'s.
fn only_failure<'a>(report: &'a Report, subject: &str) -> &'a str {
    assert_eq!(report.failed(), [subject], "{}", lines(report));
    &report.finding(subject).unwrap().text
}

fn local(name: &str, path: &Path) -> String {
    format!(
        "- type: local\n  name: {name}\n  config:\n    path: {}\n",
        path.display()
    )
}

fn s3(name: &str, endpoint: &str, bucket: &str, key_id: &str) -> String {
    common::secret(S3_SECRET);
    format!(
        "- type: s3\n  name: {name}\n  config:\n    bucket_name: {bucket}\n    bucket_path: redis/prod\n    \
         access_key_id: {key_id}\n    secret_access_key: {S3_SECRET}\n    endpoint_url: {endpoint}\n    region: us-east-1\n"
    )
}

fn azure(name: &str, key: &str, container: &str) -> String {
    common::secret(key);
    format!(
        "- type: azure\n  name: {name}\n  config:\n    storage_account: {account}\n    \
         storage_access_key: {key}\n    container: {container}\n    path: redis/prod\n    endpoint: {endpoint}\n",
        account = env("SB_TEST_AZURE_ACCOUNT"),
        endpoint = env("SB_TEST_AZURE_ENDPOINT"),
    )
}

fn gcs(name: &str, key_var: &str, bucket: &str) -> String {
    let json = std::fs::read_to_string(env(key_var)).unwrap();
    format!(
        "- type: gcs\n  name: {name}\n  config:\n    service_account_json: |\n      {json}\n    \
         project_id: {project}\n    bucket_name: {bucket}\n    bucket_path: redis/prod\n    endpoint: {endpoint}\n",
        json = json.trim(),
        project = env("SB_TEST_GCS_PROJECT"),
        endpoint = env("SB_TEST_GCS_ENDPOINT"),
    )
}

fn scp(name: &str, port: u16, destination: &Path, fingerprint: &str) -> String {
    let key: String = std::fs::read_to_string(env("SB_TEST_SCP_KEY"))
        .unwrap()
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    format!(
        "- type: scp\n  name: {name}\n  config:\n    server: 127.0.0.1\n    port: {port}\n    \
         user: {user}\n    destination: {dest}\n    fingerprint: \"{fingerprint}\"\n    key: |\n{key}",
        user = env("SB_TEST_SCP_USER"),
        dest = destination.display(),
    )
}

/// An executable script in `dir`.
fn script(dir: &Path, name: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_of_each_kind_passes_and_keeps_nothing() {
    let scp_dir = PathBuf::from(env("SB_TEST_SCP_DIR")).join(unique("check"));
    let disk = tempfile::tempdir().unwrap();
    let bucket = unique("check");
    let container = unique("check");
    let gcs_bucket = unique("check");
    let destinations = [
        local("disk", disk.path()),
        s3(
            "objects",
            &env("SB_TEST_S3_ENDPOINT"),
            &bucket,
            "AKIACHECKTEST0000001",
        ),
        azure("blobs", &env("SB_TEST_AZURE_KEY"), &container),
        gcs("google", "SB_TEST_GCS_KEY_FILE", &gcs_bucket),
        scp(
            "ssh",
            env("SB_TEST_SCP_PORT").parse().unwrap(),
            &scp_dir,
            &env("SB_TEST_SCP_FINGERPRINT"),
        ),
    ]
    .concat();
    let bin = tempfile::tempdir().unwrap();
    let dump = script(bin.path(), "dump", 0o755);
    let site = Site::new(
        &destinations,
        &format!(
            "source_executable: {} --all\ncleanup_executable: true\n\
             deployment_name: redis-prod\nadd_deployment_name_to_backup_path: true\n",
            dump.display()
        ),
    );
    let report = site.check().await;
    let text = lines(&report);
    assert!(report.failed().is_empty(), "{text}");
    let subjects: Vec<&str> = report.findings.iter().map(|f| f.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "destination disk",
            "destination objects",
            "destination blobs",
            "destination google",
            "destination ssh",
            "source_executable",
            "cleanup_executable",
        ],
        "{text}"
    );
    for (name, place) in [
        ("disk", format!("local {}", disk.path().display())),
        ("objects", format!("s3 {bucket}")),
        (
            "ssh",
            format!(
                "scp {}@127.0.0.1:{}",
                env("SB_TEST_SCP_USER"),
                scp_dir.display()
            ),
        ),
    ] {
        let found = &report.finding(&format!("destination {name}")).unwrap().text;
        assert!(
            found.starts_with(
                "wrote, listed, read back and deleted redis-prod/service-backup-check-"
            ) || found.starts_with(
                "wrote, listed, read back and deleted redis/prod/redis-prod/service-backup-check-"
            ),
            "{found}"
        );
        assert!(found.contains(&format!(".probe in {place} (")), "{found}");
    }
    assert_eq!(
        report.finding("source_executable").unwrap().text,
        format!("{} exists and this user may execute it", dump.display())
    );
    assert!(
        report
            .schedule
            .starts_with("schedule \"0 3 * * *\": next runs in the VM's time zone "),
        "{}",
        report.schedule
    );
    assert_eq!(
        report.schedule.matches(":00:00 ").count(),
        3,
        "{}",
        report.schedule
    );

    // Every probe was deleted: the stores hold nothing.
    for name in ["disk", "objects", "blobs", "google", "ssh"] {
        let objects = site.objects(name).await.unwrap();
        assert!(objects.is_empty(), "{name}: {objects:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_credentials_the_server_refuses() {
    // Authentication on from the first request: every key this moto was not given is refused.
    let server = moto().env("INITIAL_NO_AUTH_ACTION_COUNT", "0").started();
    let endpoint = server.url("");
    let bucket = unique("refused");
    let site = Site::new(
        &s3("objects", &endpoint, &bucket, "AKIAUNKNOWNTOMOTO001"),
        "",
    );
    let report = site.check().await;
    let failed = only_failure(&report, "destination objects");
    assert!(
        failed.starts_with("cannot write a probe object: "),
        "{failed}"
    );
    assert!(failed.contains(&format!("s3 bucket {bucket}")), "{failed}");
    assert!(failed.contains("InvalidAccessKeyId"), "{failed}");
    assert!(failed.contains("access_key_id"), "what to fix: {failed}");
    // Nothing was made: the server's whole state has no bucket of that name.
    let state = reqwest::get(server.url("/moto-api/data.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(state.contains("\"s3\""), "{state}");
    assert!(!state.contains(&bucket), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_bucket_name_the_server_refuses() {
    let bucket = format!("{}-too-long", "c".repeat(60));
    let site = Site::new(
        &s3(
            "objects",
            &env("SB_TEST_S3_ENDPOINT"),
            &bucket,
            "AKIACHECKTEST0000001",
        ),
        "",
    );
    let report = site.check().await;
    let failed = only_failure(&report, "destination objects");
    assert!(
        failed.starts_with("cannot write a probe object: "),
        "{failed}"
    );
    assert!(failed.contains("InvalidBucketName"), "{failed}");
    assert!(failed.contains("bucket_name"), "what to fix: {failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_key_the_server_refuses() {
    let container = unique("refused");
    let right = azure("blobs", &env("SB_TEST_AZURE_KEY"), &container);
    let site = Site::new(&azure("blobs", WRONG_AZURE_KEY, &container), "");
    let report = site.check().await;
    let failed = only_failure(&report, "destination blobs");
    assert!(
        failed.starts_with("cannot write a probe object: "),
        "{failed}"
    );
    assert!(failed.contains("403"), "{failed}");
    assert!(failed.contains("key"), "what to fix: {failed}");
    // With the right key: nothing is there.
    let checked = Site::new(&right, "");
    match checked.objects("blobs").await {
        Ok(objects) => assert!(objects.is_empty(), "{objects:?}"),
        Err(e) => assert!(
            e.to_string().contains("not found") || e.to_string().contains("does not exist"),
            "{e}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_key_the_token_endpoint_refuses() {
    let bucket = unique("refused");
    let site = Site::new(&gcs("google", "SB_TEST_GCS_WRONG_KEY_FILE", &bucket), "");
    let report = site.check().await;
    let failed = only_failure(&report, "destination google");
    assert!(
        failed.starts_with("cannot write a probe object: "),
        "{failed}"
    );
    assert!(
        failed.contains(&format!("gcs bucket {bucket}: cannot get an access token")),
        "{failed}"
    );
    assert!(failed.contains("401 invalid_grant"), "{failed}");
    let private_key = std::fs::read_to_string(env("SB_TEST_GCS_WRONG_KEY_FILE")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&private_key).unwrap();
    for line in json["private_key"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
    {
        assert!(!failed.contains(line), "the key leaked: {failed}");
    }
    // With the right key: no bucket was made.
    let right = Site::new(&gcs("google", "SB_TEST_GCS_KEY_FILE", &bucket), "");
    let err = right.objects("google").await.unwrap_err();
    assert!(
        err.to_string().contains("the bucket does not exist"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_server_with_another_host_key() {
    // The shared server's ed25519 host key only; the configuration pins its RSA key.
    let sshd = Sshd::stopped();
    let keys = env("SB_TEST_SCP_HOST_KEYS");
    let ed25519 = keys.split(':').find(|k| k.ends_with("ed25519")).unwrap();
    sshd.set_host_keys([Path::new(ed25519)]);
    let sshd = sshd.started();
    let remote = tempfile::tempdir().unwrap();
    let dir = remote.path().join("backups");
    let pinned = env("SB_TEST_SCP_FINGERPRINT_RSA");
    let site = Site::new(&scp("ssh", sshd.port, &dir, &pinned), "");
    let report = site.check().await;
    let failed = only_failure(&report, "destination ssh");
    assert!(
        failed.starts_with("cannot write a probe object: "),
        "{failed}"
    );
    assert!(failed.contains(&pinned), "the pinned fingerprint: {failed}");
    assert!(
        failed.contains(&env("SB_TEST_SCP_FINGERPRINT")),
        "the presented one: {failed}"
    );
    assert!(failed.contains("fingerprint"), "what to fix: {failed}");
    // Refused before logging in: nothing written, no login.
    assert!(!dir.exists());
    let log = std::fs::read_to_string(sshd.dir().join("sshd.log")).unwrap_or_default();
    assert!(!log.contains("Accepted publickey"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executables_that_cannot_run() {
    let disk = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let plain = script(bin.path(), "dump", 0o644);
    let missing = bin.path().join("cleanup");
    let site = Site::new(
        &local("disk", disk.path()),
        &format!(
            "source_executable: {} --all\ncleanup_executable: {}\nrestore:\n  restore_executable: true\n",
            plain.display(),
            missing.display()
        ),
    );
    let report = site.check().await;
    assert_eq!(
        report.failed(),
        ["source_executable", "cleanup_executable"],
        "{}",
        lines(&report)
    );
    let uid = nix::unistd::getuid();
    assert_eq!(
        report.finding("source_executable").unwrap().line(),
        format!(
            "FAILED source_executable: {} is not executable by this user (uid {uid}; mode 0644) \
             (make it executable with chmod +x, or run the agent as a user that may execute it)",
            plain.display()
        )
    );
    assert_eq!(
        report.finding("cleanup_executable").unwrap().line(),
        format!(
            "FAILED cleanup_executable: {} does not exist (fix the path in the configuration, or install the executable there)",
            missing.display()
        )
    );
    assert!(report.finding("restore.restore_executable").unwrap().ok);
    assert!(report.finding("destination disk").unwrap().ok);
    assert!(site.objects("disk").await.unwrap().is_empty());
}

/// The agent resolves a relative path against its own working directory and a bare name
/// in its own `PATH`, neither of which is the caller's: a relative path fails the check
/// (it exists here, in the test's working directory), a bare name passes with a note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executables_the_agent_may_not_find_as_check_does() {
    let disk = tempfile::tempdir().unwrap();
    let here = std::env::current_dir().unwrap();
    let relative = "Cargo.toml";
    assert!(
        here.join(relative).is_file(),
        "the test runs in its crate's folder"
    );
    let site = Site::new(
        &local("disk", disk.path()),
        &format!(
            "source_executable: ./{relative} --all
restore:
  restore_executable: true
"
        ),
    );
    let report = site.check().await;
    assert_eq!(report.failed(), ["source_executable"], "{}", lines(&report));
    assert_eq!(
        report.finding("source_executable").unwrap().line(),
        format!(
            "FAILED source_executable: ./{relative} is a relative path: it depends on the agent's working directory, not this one's (give the executable's full path)"
        )
    );
    let bare = &report.finding("restore.restore_executable").unwrap().text;
    assert!(
        bare.ends_with(
            "exists and this user may execute it (found in this shell's PATH: the agent searches its own; a full path does not depend on it)"
        ),
        "{bare}"
    );
}

#[test]
fn the_binary_exits_0_1_or_2() {
    let site = tempfile::tempdir().unwrap();
    let d = site.path().display();
    std::fs::create_dir_all(site.path().join("source")).unwrap();
    let bin = site.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let dump = script(&bin, "dump", 0o755);
    let write = |extra: &str| {
        std::fs::write(
            site.path().join("config.yml"),
            format!(
                "destinations:\n{}source_folder: {d}/source\ncron_schedule: \"@daily\"\nstate_dir: {d}/state\n{extra}",
                local("disk", &site.path().join("backups"))
            ),
        )
        .unwrap();
    };

    write(&format!("source_executable: {}\n", dump.display()));
    let pass = common::run(site.path(), &["check", "config.yml"]);
    pass.expect(0);
    assert!(
        pass.stdout
            .starts_with("config.yml: valid; 1 destination(s)\n"),
        "{}",
        pass.stdout
    );
    assert!(
        pass.stdout
            .contains("\nok     destination disk: wrote, listed, read back and deleted "),
        "{}",
        pass.stdout
    );
    assert!(
        pass.stdout.contains("\nok     source_executable: "),
        "{}",
        pass.stdout
    );
    assert!(
        pass.stdout
            .contains("\nschedule \"@daily\": next runs in the VM's time zone "),
        "{}",
        pass.stdout
    );
    assert!(
        pass.stdout.ends_with("config.yml: every check passed\n"),
        "{}",
        pass.stdout
    );
    assert_eq!(pass.stderr, "");
    assert_eq!(
        service_backup_testkit::files_below(&site.path().join("backups")),
        Vec::<String>::new()
    );

    // A destination that cannot be written (its folder would be inside a file) and two
    // executables: each named, exit 1.
    std::fs::write(site.path().join("a-file"), "").unwrap();
    std::fs::write(
        site.path().join("config.yml"),
        format!(
            "destinations:\n{}{}source_folder: {d}/source\ncron_schedule: \"@daily\"\n\
             state_dir: {d}/state\nsource_executable: {d}/source\ncleanup_executable: nothing-of-this-name\n",
            local("disk", &site.path().join("backups")),
            local("broken", &site.path().join("a-file/backups")),
        ),
    )
    .unwrap();
    let fail = common::run(site.path(), &["check", "config.yml"]);
    fail.expect(1);
    assert!(
        fail.stdout.contains("\nok     destination disk: "),
        "{}",
        fail.stdout
    );
    assert!(
        fail.stdout
            .contains("\nFAILED destination broken: cannot write a probe object: "),
        "{}",
        fail.stdout
    );
    assert!(
        fail.stdout.contains("\nFAILED source_executable: "),
        "{}",
        fail.stdout
    );
    assert!(
        fail.stdout
            .contains("\nFAILED cleanup_executable: nothing-of-this-name is not found in PATH"),
        "{}",
        fail.stdout
    );
    assert_eq!(
        fail.stderr,
        "error: check failed for destination broken, source_executable, cleanup_executable\n"
    );

    // No destinations: nothing to probe, and no run times to show.
    std::fs::write(
        site.path().join("none.yml"),
        "destinations: []\ncron_schedule: \"0 3 * * *\"\n",
    )
    .unwrap();
    let none = common::run(site.path(), &["check", "none.yml"]);
    none.expect(0);
    assert_eq!(
        none.stdout,
        "none.yml: valid; no destinations, so backups are disabled\n\
         schedule: none (no destinations: backups are disabled)\n\
         none.yml: every check passed\n"
    );

    // An invalid configuration: `validate`'s own messages and exit code, and no probe.
    write("cron_schedule: \"61 * * * *\"\n");
    let validate = common::run(site.path(), &["validate", "config.yml"]);
    validate.expect(2);
    let check = common::run(site.path(), &["check", "config.yml"]);
    check.expect(2);
    assert_eq!(check.stderr, validate.stderr);
    assert_eq!(check.stdout, "");
    assert_eq!(
        service_backup_testkit::files_below(&site.path().join("backups")),
        Vec::<String>::new()
    );
}

/// A probe as a crash leaves it under `layout` in the local folder `root`: the object,
/// and the temporary file of an upload cut short, both `age` old.
fn plant_probe(root: &Path, layout: &Layout, age: chrono::Duration) -> (PathBuf, PathBuf) {
    let key = layout.probe_key(Utc::now() - age).unwrap();
    let object = root.join(&key);
    std::fs::create_dir_all(object.parent().unwrap()).unwrap();
    std::fs::write(&object, "service-backup check\n").unwrap();
    let name = object.file_name().unwrap().to_str().unwrap().to_string();
    let temp = object.with_file_name(format!(".{name}.tmp-0123456789abcdef"));
    std::fs::write(&temp, "service-").unwrap();
    let when = std::time::SystemTime::now() - age.to_std().unwrap();
    for path in [&object, &temp] {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
    (object, temp)
}

#[test]
fn a_probe_left_by_a_crash_is_neither_listed_nor_pruned_and_the_next_check_removes_it() {
    let env = common::Env::new();
    env.backup();
    env.backup();
    // Only now: a backup applies the retention policy itself.
    env.write_config("retention:\n  keep_last: 1\n");
    let root = env.path("backups");
    let layout = Layout::new("", None);
    let (old, old_temp) = plant_probe(&root, &layout, chrono::Duration::days(2));
    // One of a check that may still be running beside: left alone by everyone.
    let (fresh, fresh_temp) = plant_probe(&root, &layout, chrono::Duration::minutes(1));

    let list = env.run(&["list", "config.yml", "--json"]);
    list.expect(0);
    let items: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(items.len(), 2, "{}", list.stdout);
    assert!(
        !list.all().contains("service-backup-check"),
        "{}",
        list.all()
    );
    let table = env.run(&["list", "config.yml"]);
    table.expect(0);
    assert!(
        !table.all().contains("service-backup-check"),
        "{}",
        table.all()
    );

    let dry = env.run(&["prune", "config.yml", "--dry-run"]);
    dry.expect(0);
    // The plan names each backup, and nothing else.
    assert!(
        dry.stdout.contains("retention {keep_last: 1}"),
        "{}",
        dry.stdout
    );
    for item in &items {
        let name = item["name"].as_str().unwrap();
        assert!(dry.stdout.contains(name), "{name}: {}", dry.stdout);
    }
    assert!(!dry.all().contains("service-backup-check"), "{}", dry.all());
    let prune = env.run(&["prune", "config.yml"]);
    prune.expect(0);
    assert!(
        !prune.all().contains("service-backup-check"),
        "{}",
        prune.all()
    );
    for path in [&old, &old_temp, &fresh, &fresh_temp] {
        assert!(path.exists(), "prune removed {}", path.display());
    }

    let check = env.run(&["check", "config.yml"]);
    check.expect(0);
    assert!(
        check
            .stdout
            .contains("; removed 2 probe(s) left by interrupted checks\n"),
        "{}",
        check.stdout
    );
    assert!(!old.exists() && !old_temp.exists());
    assert!(fresh.exists() && fresh_temp.exists());
    let after = env.run(&["list", "config.yml", "--json"]);
    after.expect(0);
    assert!(
        !after.all().contains("service-backup-check"),
        "{}",
        after.all()
    );
}

/// A loopback port that accepts connections and never says anything: a frozen server.
fn black_hole() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    port
}

#[test]
fn servers_that_never_answer_fail_within_the_timeout() {
    let (s3_port, ssh_port) = (black_hole(), black_hole());
    let site = tempfile::tempdir().unwrap();
    let d = site.path().display();
    std::fs::create_dir_all(site.path().join("source")).unwrap();
    let destinations = [
        s3(
            "objects",
            &format!("http://127.0.0.1:{s3_port}"),
            "frozen",
            "AKIACHECKTEST0000001",
        ),
        scp(
            "ssh",
            ssh_port,
            Path::new("/srv/backups"),
            &env("SB_TEST_SCP_FINGERPRINT"),
        ),
    ]
    .concat();
    std::fs::write(
        site.path().join("config.yml"),
        format!("destinations:\n{destinations}source_folder: {d}/source\ncron_schedule: \"@daily\"\nstate_dir: {d}/state\n"),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let run = common::run(site.path(), &["check", "config.yml", "--timeout", "2"]);
    let took = started.elapsed();
    run.expect(1);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        run.stdout.contains(
            "\nFAILED destination objects: s3 frozen did not complete a probe within 2 s (check the endpoint or server"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "\nFAILED destination ssh: scp {}@127.0.0.1:/srv/backups did not complete a probe within 2 s",
            env("SB_TEST_SCP_USER")
        )),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.stderr.lines().last(),
        Some("error: check failed for destination objects, destination ssh"),
        "{}",
        run.stderr
    );
}
