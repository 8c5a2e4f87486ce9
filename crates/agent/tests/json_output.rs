//! The `--json` output of every command, pinned by snapshots (`tests/snapshots/`): one JSON
//! document on stdout, whatever the outcome, and the exit code of the human form. Values
//! that change from run to run (names, times, ids, paths, hashes, stored sizes) are
//! replaced by `[key]` before the comparison; the shape, the words and the stable counts
//! and sizes are compared as they are. A change of shape is a change of the documented
//! interface (README, "JSON output"): update the README with the snapshot.

mod common;

use common::{Env, Run, backup_names_out};
use serde_json::Value;

/// Keys whose values vary from run to run.
const VARYING: &[&str] = &[
    "backup_guid",
    "task_id",
    "id",
    "duration_in_seconds",
    "sha256",
    "key_id",
    "key",
    "file",
    "target",
    "config",
    "recipient",
    "recipient_id",
    "stored_bytes",
    "started_at",
    "finished_at",
    "created_at",
    "updated_at",
    "deleted_at",
    "text",
    "next_runs",
    "instance_id",
    "mtime",
];

/// `value` with the varying values replaced by `[key]` (nulls stay null, so that the
/// snapshot still shows which fields may be null), and `dir` and backup names replaced by
/// `[dir]` and `[name]` in text.
fn redact(value: Value, dir: &str) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if VARYING.contains(&k.as_str()) && !v.is_null() {
                        Value::String(format!("[{k}]"))
                    } else {
                        redact(v, dir)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| redact(v, dir)).collect()),
        Value::String(s) => Value::String(backup_names_out(&s.replace(dir, "[dir]"))),
        other => other,
    }
}

/// The one JSON document of `run`'s stdout, after checking the exit code.
fn document(run: &Run, code: i32) -> Value {
    run.expect(code);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        )
    })
}

/// The redacted document of `args` run in `env`, which must exit with `code`.
fn redacted(env: &Env, args: &[&str], code: i32) -> Value {
    let doc = document(&env.run(args), code);
    redact(doc, &env.dir.path().display().to_string())
}

#[test]
fn backup_list_tasks_restore_and_verify() {
    let env = Env::new();
    let backup = env.run(&["backup", "config.yml", "--json"]);
    let doc = document(&backup, 0);
    // The lager lines of a backup go to stdout without --json; with it, to stderr only.
    assert!(!backup.stdout.contains("\"source\":\"ServiceBackup\""));
    assert!(!backup.stdout.contains(&env.key_text()));
    let name = doc["name"].as_str().unwrap().to_string();
    insta::assert_json_snapshot!("backup", redact(doc, &env.dir.path().display().to_string()));
    insta::assert_json_snapshot!("list", redacted(&env, &["list", "config.yml", "--json"], 0));
    insta::assert_json_snapshot!(
        "tasks",
        redacted(&env, &["tasks", "config.yml", "--json"], 0)
    );
    insta::assert_json_snapshot!(
        "verify",
        redacted(&env, &["verify", "config.yml", "--json"], 0)
    );
    insta::assert_json_snapshot!(
        "verify_all",
        redacted(&env, &["verify", "config.yml", "--all", "--json"], 0)
    );
    let target = env.path("restored");
    let t = target.to_str().unwrap();
    let restore = redacted(
        &env,
        &[
            "restore",
            "config.yml",
            "--backup",
            &name,
            "--target",
            t,
            "--json",
        ],
        0,
    );
    insta::assert_json_snapshot!("restore", restore);
    let archive = env.archive_of(&env.run(&["list", "config.yml", "--json"]).stdout_items()[0]);
    let a = archive.to_str().unwrap();
    insta::assert_json_snapshot!(
        "verify_file",
        redacted(
            &env,
            &["verify", "--file", a, "--key-file", "backup.key", "--json"],
            0
        )
    );
    let again = env.path("again");
    insta::assert_json_snapshot!(
        "restore_file",
        redacted(
            &env,
            &[
                "restore",
                "--file",
                a,
                "--key-file",
                "backup.key",
                "--target",
                again.to_str().unwrap(),
                "--json"
            ],
            0
        )
    );
    // A failure is an error document with the exit code of the error line.
    insta::assert_json_snapshot!(
        "restore_missing_backup",
        redacted(
            &env,
            &[
                "restore",
                "config.yml",
                "--backup",
                "nope",
                "--target",
                t,
                "--json"
            ],
            1
        )
    );
}

#[test]
fn ls_lists_the_entries_and_an_error_is_a_document() {
    let env = Env::new();
    common::fixed_modes(&env.path("source"));
    env.run(&["backup", "config.yml"]).expect(0);
    insta::assert_json_snapshot!("ls", redacted(&env, &["ls", "config.yml", "--json"], 0));
    insta::assert_json_snapshot!(
        "ls_missing_backup",
        redacted(&env, &["ls", "config.yml", "--backup", "nope", "--json"], 1)
    );
    // A path that matches nothing: the array of what matched, exit 1, no second document.
    let out = env.run(&["ls", "config.yml", "sub", "no/such", "--json"]);
    let doc = document(&out, 1);
    assert_eq!(doc.as_array().map(Vec::len), Some(4), "{doc}");
    assert!(
        out.stderr.contains("\"no/such\" matches nothing"),
        "{}",
        out.stderr
    );
}

#[test]
fn prune_keeps_and_deletes_by_the_policy() {
    let env = Env::new();
    // Names hold the second they were made in: one second apart, the newest is known.
    env.run(&["backup", "config.yml"]).expect(0);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.run(&["backup", "config.yml"]).expect(0);
    // Set afterwards: a backup applies the retention itself once it is stored.
    env.write_config("retention:\n  keep_last: 1\n");
    insta::assert_json_snapshot!(
        "prune_dry_run",
        redacted(&env, &["prune", "config.yml", "--dry-run", "--json"], 0)
    );
    insta::assert_json_snapshot!(
        "prune",
        redacted(&env, &["prune", "config.yml", "--json"], 0)
    );
    assert_eq!(
        env.run(&["list", "config.yml", "--json"])
            .stdout_items()
            .len(),
        1
    );
}

#[test]
fn a_failed_and_a_disabled_backup() {
    let env = Env::new();
    env.write_config("source_executable: /bin/false\n");
    let failed = redacted(&env, &["backup", "config.yml", "--json"], 1);
    insta::assert_json_snapshot!("backup_failed", failed);
    std::fs::write(env.path("config.yml"), "destinations: []\n").unwrap();
    insta::assert_json_snapshot!(
        "backup_disabled",
        redacted(&env, &["backup", "config.yml", "--json"], 0)
    );
}

#[test]
fn validate_and_check() {
    let env = Env::new();
    insta::assert_json_snapshot!(
        "validate",
        redacted(&env, &["validate", "config.yml", "--json"], 0)
    );
    insta::assert_json_snapshot!(
        "check",
        redacted(&env, &["check", "config.yml", "--json"], 0)
    );
    let check = document(&env.run(&["check", "config.yml", "--json"]), 0);
    assert_eq!(check["schedule"]["next_runs"].as_array().unwrap().len(), 3);
    std::fs::write(
        env.path("config.yml"),
        "destinations:\n- type: local\n  config: {}\ncron_schedule: nope\n",
    )
    .unwrap();
    insta::assert_json_snapshot!(
        "validate_invalid",
        redacted(&env, &["validate", "config.yml", "--json"], 2)
    );
    insta::assert_json_snapshot!(
        "check_invalid",
        redacted(&env, &["check", "config.yml", "--json"], 2)
    );
    // A command line that does not parse is an error document too, when --json is in it.
    insta::assert_json_snapshot!(
        "usage_error",
        redacted(&env, &["validate", "config.yml", "--json", "--bogus"], 2)
    );
}

#[test]
fn keygen_prints_the_key_or_the_file() {
    let env = Env::new();
    let out = env.run(&["keygen", "--json"]);
    let doc = document(&out, 0);
    // The key is the command's output here, as it is without --json.
    let key = doc["key"].as_str().unwrap();
    assert_eq!(key.len(), 44, "{doc}");
    insta::assert_json_snapshot!("keygen", redact(doc, "-"));
    insta::assert_json_snapshot!(
        "keygen_output",
        redacted(&env, &["keygen", "--output", "new.key", "--json"], 0)
    );
    insta::assert_json_snapshot!(
        "keygen_recipient",
        redacted(&env, &["keygen", "--recipient", "id.txt", "--json"], 0)
    );
    let recipient = document(&env.run(&["keygen", "--recipient", "id2.txt", "--json"]), 0);
    assert!(
        recipient["recipient"]
            .as_str()
            .unwrap()
            .starts_with("sbrec1")
    );
    insta::assert_json_snapshot!(
        "keygen_exists",
        redacted(&env, &["keygen", "--output", "new.key", "--json"], 2)
    );
}

/// The items of a `list --json` run.
trait Items {
    fn stdout_items(&self) -> Vec<Value>;
}

impl Items for Run {
    fn stdout_items(&self) -> Vec<Value> {
        self.expect(0);
        serde_json::from_str(&self.stdout).unwrap()
    }
}
