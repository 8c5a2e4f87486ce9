//! Immutable backups on S3 (issue 25, part 3), with the real binary and a moto of the
//! test's own (the moto of `tests/servers/s3.sh`, which carries the Object Lock of
//! multipart uploads through: see `tests/servers/moto-object-lock.patch`).
//!
//! Time is moved with libfaketime on both the agent and moto, which checks locks against
//! its own clock: both read their offset from one file (`FAKETIME_TIMESTAMP_FILE`, read
//! again at each clock call with `FAKETIME_NO_CACHE=1`), so rewriting it moves the clock
//! of the running moto and of every later agent run at once.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Run, binary, sample_tree};
use service_backup_testkit::{ServerProcess, env, moto, unique};

const SECRET: &str = "lock/IMMUTABLE+secret+access+key/never-printed";

/// Writes `config.yml` in `dir`: one s3 destination at `endpoint`, locked by `lock` (a
/// YAML mapping, or `null`), the last backup kept.
fn write_config(dir: &Path, endpoint: &str, bucket: &str, lock: &str) {
    common::secret(SECRET);
    let yaml = format!(
        "destinations:\n\
         - type: s3\n  name: objects\n  config:\n    bucket_name: {bucket}\n    bucket_path: pg/prod\n    \
         access_key_id: AKIALOCKED0000000001\n    secret_access_key: {SECRET}\n    endpoint_url: {endpoint}\n    \
         immutability: {lock}\n\
         source_folder: {source}\n\
         cron_schedule: \"*/5 * * * *\"\n\
         state_dir: {state}\n\
         retention: {{keep_last: 1}}\n",
        source = dir.join("source").display(),
        state = dir.join("state").display(),
    );
    std::fs::write(dir.join("config.yml"), yaml).unwrap();
}

/// The clock both processes read: an offset such as `+0` or `+2d` in a file.
struct Clock {
    file: std::path::PathBuf,
    lib: String,
}

impl Clock {
    fn new(dir: &Path) -> Self {
        let clock = Self {
            file: dir.join("faketime"),
            lib: env("SB_TEST_LIBFAKETIME"),
        };
        clock.set("+0");
        clock
    }

    fn set(&self, offset: &str) {
        std::fs::write(&self.file, format!("{offset}\n")).unwrap();
    }

    fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", self.lib.clone()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
        ]
    }

    fn moto(&self) -> ServerProcess {
        self.vars()
            .into_iter()
            .fold(moto(), |server, (k, v)| server.env(k, v))
            .started()
    }

    fn run(&self, dir: &Path, args: &[&str]) -> Run {
        let out = Command::new(binary())
            .args(args)
            .current_dir(dir)
            .envs(self.vars())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Run::from(out)
    }
}

fn names(dir: &Path, clock: &Clock) -> Vec<String> {
    let list = clock.run(dir, &["list", "config.yml", "--json"]);
    list.expect(0);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    let mut names: Vec<String> = listed
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// The line of `text` that names `name`.
fn line_of<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(name))
        .unwrap_or_else(|| panic!("no line names {name}:\n{text}"))
}

#[test]
fn a_locked_backup_is_kept_by_prune_until_its_lock_ends() {
    let dir = tempfile::tempdir().unwrap();
    let vm = dir.path();
    sample_tree(&vm.join("source"));
    let clock = Clock::new(vm);
    let server = clock.moto();
    write_config(
        vm,
        &server.url(""),
        &unique("locked"),
        "{mode: governance, days: 1}",
    );

    clock.run(vm, &["backup", "config.yml"]).expect(0);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Its prune after the backup finds the first one locked: kept, no failure.
    let second = clock.run(vm, &["backup", "config.yml"]);
    second.expect(0);
    let both = names(vm, &clock);
    assert_eq!(both.len(), 2, "{both:?}");
    // The bucket the agent created has Object Lock; the check's probe is written unlocked
    // and deleted, every version of it.
    let check = clock.run(vm, &["check", "config.yml"]);
    check.expect(0);
    assert!(
        check
            .stdout
            .contains("ok     destination objects: wrote, listed, read back and deleted"),
        "{}",
        check.all()
    );
    let (older, newer) = (&both[0], &both[1]);

    let dry = clock.run(vm, &["prune", "config.yml", "--dry-run"]);
    dry.expect(0);
    let line = line_of(&dry.stdout, older);
    assert!(line.trim_start().starts_with("keep"), "{line}");
    assert!(line.contains("(locked until 20"), "{line}");
    let pruned = clock.run(vm, &["prune", "config.yml"]);
    pruned.expect(0);
    let line = line_of(&pruned.stdout, older);
    assert!(
        line.trim_start().starts_with("keep") && line.contains("locked until"),
        "{line}"
    );
    assert!(!pruned.stderr.contains("error"), "{}", pruned.stderr);
    assert_eq!(names(vm, &clock), both, "nothing deleted while locked");

    // Two days later (for moto and the agent alike) the lock has ended.
    clock.set("+2d");
    let pruned = clock.run(vm, &["prune", "config.yml"]);
    pruned.expect(0);
    let line = line_of(&pruned.stdout, older);
    assert!(line.trim_start().starts_with("delete"), "{}", pruned.stdout);
    assert!(
        pruned.stdout.contains("deleted 1 backup(s)"),
        "{}",
        pruned.stdout
    );
    assert_eq!(names(vm, &clock), std::slice::from_ref(newer));
}

/// The keys of the objects and of the multipart uploads in `bucket`, from moto's XML.
fn stored_keys(endpoint: &str, bucket: &str) -> (usize, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let get = |query: &'static str| {
            let url = format!("{endpoint}/{bucket}?{query}");
            async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
        };
        let objects = get("list-type=2").await;
        let uploads = get("uploads").await;
        (
            objects.matches("<Key>").count(),
            uploads.matches("<UploadId>").count(),
        )
    })
}

#[test]
fn bad_input_an_s3_bucket_without_object_lock_under_immutability() {
    let dir = tempfile::tempdir().unwrap();
    let vm = dir.path();
    sample_tree(&vm.join("source"));
    let server = moto().started();
    let endpoint = server.url("");
    let bucket = unique("unlocked");
    // A first backup without immutability: the agent creates the bucket, without Object Lock.
    write_config(vm, &endpoint, &bucket, "null");
    let first = Command::new(binary())
        .args(["backup", "config.yml"])
        .current_dir(vm)
        .output()
        .unwrap();
    Run::from(first).expect(0);
    let before = stored_keys(&endpoint, &bucket);
    assert_eq!(before, (2, 0), "an archive and its manifest");

    write_config(vm, &endpoint, &bucket, "{mode: compliance, days: 30}");
    let expected = format!(
        "s3 bucket {bucket} has no Object Lock: immutability needs a bucket created with Object Lock enabled"
    );
    let run = |args: &[&str]| {
        Run::from(
            Command::new(binary())
                .args(args)
                .current_dir(vm)
                .output()
                .unwrap(),
        )
    };
    let check = run(&["check", "config.yml"]);
    check.expect(1);
    assert!(
        check
            .stdout
            .contains(&format!("FAILED destination objects: {expected}")),
        "{}",
        check.all()
    );
    let backup = run(&["backup", "config.yml"]);
    backup.expect(1);
    assert!(backup.all().contains(&expected), "{}", backup.all());
    assert!(
        backup.all().contains("create one with Object Lock enabled"),
        "{}",
        backup.all()
    );
    assert!(!backup.all().contains(SECRET));
    // Nothing partial: no object and no upload beside the first backup's.
    assert_eq!(stored_keys(&endpoint, &bucket), before);
}
