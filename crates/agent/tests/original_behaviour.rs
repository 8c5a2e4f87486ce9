//! The original release's observable behaviour, assertion by assertion: each test quotes
//! the original test (file and expected text) it ports. What the original's tests assert and
//! ours deliberately does otherwise is listed in the README's "Differences from the original
//! release".

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use common::Env;
use common::host::{Agent, script, wait_until};
use serde_json::Value;

/// The JSON log lines of `stdout`.
fn lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON line: {l}")))
        .collect()
}

/// The lines of the run: from the first line with a `backup_guid` on (start-up warnings,
/// such as the `state_dir`'s mode, come before it).
fn run_lines(lines: &[Value]) -> &[Value] {
    let first = lines
        .iter()
        .position(|l| l["data"]["backup_guid"].is_string())
        .unwrap_or_else(|| panic!("no line with a backup_guid: {lines:#?}"));
    &lines[first..]
}

/// The position of the first line whose action is `action`.
fn position(lines: &[Value], action: &str) -> usize {
    lines
        .iter()
        .position(|l| common::action(l) == action)
        .unwrap_or_else(|| panic!("no {action:?} in {lines:#?}"))
}

#[test]
fn with_an_identifier_every_line_of_a_run_is_in_the_with_identifier_session() {
    let env = Env::new();
    let id = script(&env, "id.sh", "echo FakeIdentifier");
    let dump = script(&env, "dump.sh", "echo dumped");
    let clean = script(&env, "clean.sh", "true");
    env.write_config(&format!(
        "service_identifier_executable: {id}\nsource_executable: {dump}\ncleanup_executable: {clean}\n"
    ));
    let out = env.run(&["backup", "config.yml"]);
    out.expect(0);
    let lines = lines(&out.stdout);
    // s3_integration_test.go, "logs events with the data element including an identifier":
    // Say("ServiceBackup.WithIdentifier.Perform backup started"), `"backup_guid":`,
    // `"identifier":"FakeIdentifier"`, "ServiceBackup.WithIdentifier.Perform backup completed
    // successfully", "ServiceBackup.WithIdentifier.Upload backup started", …
    // "ServiceBackup.WithIdentifier.Upload backup completed successfully",
    // "ServiceBackup.WithIdentifier.Cleanup completed", in this order.
    let order = [
        "Perform backup started",
        "Perform backup completed successfully",
        "Upload backup started",
        "Upload backup completed successfully",
        "Cleanup started",
        "Cleanup completed successfully",
    ];
    let at: Vec<usize> = order.iter().map(|a| position(&lines, a)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "out of order: {at:?}");
    let guid = lines[at[0]]["data"]["backup_guid"].as_str().unwrap();
    // satori/go.uuid's NewV4, as executor.go makes it: a version 4, RFC 4122 variant UUID.
    let v4 = guid.len() == 36
        && guid.as_bytes()[14] == b'4'
        && matches!(guid.as_bytes()[19], b'8' | b'9' | b'a' | b'b');
    assert!(v4, "{guid}");
    // From the first step on (the identifier's own output comes before it is known).
    for line in &lines[at[0]..] {
        let message = line["message"].as_str().unwrap();
        assert!(
            message.starts_with("ServiceBackup.WithIdentifier."),
            "{line}"
        );
        assert_eq!(line["data"]["identifier"], "FakeIdentifier", "{line}");
        assert_eq!(line["data"]["backup_guid"], guid, "{line}");
        assert_eq!(line["data"]["session"], "1", "{line}");
        assert_eq!(line["source"], "ServiceBackup");
    }
    // "… and a destination name is provided": Say(`"destination_name":"bar"`) (ours: "disk").
    let upload = &lines[at[3]];
    assert_eq!(upload["data"]["destination_name"], "disk");
    // executor_test.go, "logs the upload metadata information":
    // Say(`"duration_in_seconds":\d`), Say(`"size_in_bytes":200`).
    assert!(
        upload["data"]["duration_in_seconds"].is_number(),
        "{upload}"
    );
    assert!(
        upload["data"]["size_in_bytes"].as_u64().unwrap() > 0,
        "{upload}"
    );
    // The dump's output line carries the run's guid and identifier too.
    let output = lines
        .iter()
        .find(|l| l["data"]["line"] == "dumped")
        .expect("the dump's output line");
    assert_eq!(common::action(output), "Executable output");
    assert_eq!(output["data"]["identifier"], "FakeIdentifier");
    assert_eq!(output["data"]["backup_guid"], guid);
}

#[test]
fn without_an_identifier_no_line_mentions_one() {
    let env = Env::new();
    let out = env.run(&["backup", "config.yml"]);
    out.expect(0);
    // executor_test.go, "logs do not mention identifier at all":
    // Expect(log).ToNot(gbytes.Say("identifier")); and "logs with a guid for the backup":
    // Say(`"backup_guid":`).
    assert!(!out.stdout.contains("identifier"), "{}", out.stdout);
    let lines = lines(&out.stdout);
    assert!(
        run_lines(&lines)
            .iter()
            .all(|l| l["data"]["backup_guid"].is_string())
    );
    assert!(lines.iter().all(
        |l| l["message"].as_str().unwrap().starts_with("ServiceBackup.")
            && !l["message"].as_str().unwrap().contains("WithIdentifier")
            && l["data"].get("session").is_none()
    ));
    // executor_test.go, "source_executable not provided … should continue with upload":
    // Say("source_executable not provided, skipping performing of backup"),
    // Say("Upload backup started"), Say("Upload backup completed successfully");
    // s3_integration_test.go, "when cleanup-cmd is not provided": Say("Cleanup command not
    // provided").
    let at: Vec<usize> = [
        "source_executable not provided, skipping performing of backup",
        "Upload backup started",
        "Upload backup completed successfully",
        "Cleanup command not provided",
    ]
    .iter()
    .map(|a| position(&lines, a))
    .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "out of order: {at:?}");
}

#[test]
fn an_empty_identifier_opens_no_session_and_a_missing_one_is_not_found() {
    let env = Env::new();
    let empty = script(&env, "id.sh", "echo");
    env.write_config(&format!("service_identifier_executable: {empty}\n"));
    let out = env.run(&["backup", "config.yml"]);
    out.expect(0);
    // executor.go opens the WithIdentifier session only for a non-empty identifier.
    assert!(!out.stdout.contains("WithIdentifier"), "{}", out.stdout);
    assert!(!out.stdout.contains("\"identifier\""), "{}", out.stdout);

    env.write_config("service_identifier_executable: /path/to/nowhere\n");
    let out = env.run(&["backup", "config.yml"]);
    // executor_test.go, "does not exist": Say("Service identifier command not found"),
    // ToNot(Say(`"identifier"`)), and the backup goes on.
    out.expect(0);
    let lines = lines(&out.stdout);
    let line = &lines[position(&lines, "Service identifier command not found")];
    assert_eq!(line["log_level"], 2);
    assert!(line["data"]["error"].is_string(), "{line}");
    assert!(!out.stdout.contains("\"identifier\""), "{}", out.stdout);
    position(&lines, "Upload backup completed successfully");
}

#[test]
fn a_failing_cleanup_is_logged_and_the_backup_still_succeeds() {
    let env = Env::new();
    env.write_config("cleanup_executable: ls /not/a/valid/directory\n");
    let out = env.run(&["backup", "config.yml"]);
    // s3_integration_test.go, "when the cleanup command fails with non-zero exit code":
    // Say("Cleanup completed with error"); executor.go does not return the cleanup's error,
    // so manual-backup exits 0.
    out.expect(0);
    let lines = lines(&out.stdout);
    let line = &lines[position(&lines, "Cleanup completed with error")];
    assert_eq!(line["log_level"], 2);
    assert!(
        line["data"]["error"]
            .as_str()
            .unwrap()
            .contains("cleanup executable"),
        "{line}"
    );
}

#[test]
fn a_failing_dump_is_a_perform_error_and_nothing_is_uploaded() {
    let env = Env::new();
    env.write_config("source_executable: ls /not/a/valid/directory\n");
    let out = env.run(&["backup", "config.yml"]);
    // s3_integration_test.go, "when the backup creation command fails with non-zero exit
    // code": Say("Perform backup completed with error"); s3 "when backup fails": "exits with
    // non-zero status" (ours: 1, the operation failed).
    out.expect(1);
    let lines = lines(&out.stdout);
    let line = &lines[position(&lines, "Perform backup completed with error")];
    assert_eq!(line["log_level"], 2);
    assert!(line["data"]["error"].is_string());
    for never in [
        "Upload backup started",
        "Cleanup started",
        "Cleanup command not provided",
    ] {
        assert!(
            !lines.iter().any(|l| common::action(l) == never),
            "{never}: {}",
            out.stdout
        );
    }
    let backups = env.path("backups");
    assert!(!backups.exists() || common::host::files(&backups).is_empty());
}

#[test]
fn an_upload_failure_is_not_a_perform_failure() {
    let env = Env::new();
    let dump = script(&env, "dump.sh", "true");
    let clean = script(&env, "clean.sh", "true");
    // A destination that cannot be written: its folder is a file.
    std::fs::write(env.path("not-a-folder"), "x").unwrap();
    let d = env.dir.path().display();
    std::fs::write(
        env.path("config.yml"),
        format!(
            "destinations:\n- type: local\n  config:\n    path: {d}/not-a-folder/backups\n\
             source_folder: {d}/source\ncron_schedule: '@daily'\n\
             source_executable: {dump}\ncleanup_executable: {clean}\n"
        ),
    )
    .unwrap();
    let out = env.run(&["backup", "config.yml"]);
    out.expect(1);
    let lines = lines(&out.stdout);
    // executor.go: "Perform backup completed successfully" once the source executable
    // exited 0, before "Upload backup started"; s3_integration_test.go, "when credentials
    // are invalid": Say("ServiceBackup.Upload backup completed with error"); the cleanup
    // runs only after a successful upload.
    let performed = position(&lines, "Perform backup completed successfully");
    let started = position(&lines, "Upload backup started");
    let failed = position(&lines, "Upload backup completed with error");
    assert!(performed < started && started < failed, "{lines:#?}");
    assert_eq!(
        lines[failed]["message"],
        "ServiceBackup.Upload backup completed with error"
    );
    assert_eq!(lines[failed]["log_level"], 2);
    for never in ["Perform backup completed with error", "Cleanup started"] {
        assert!(!lines.iter().any(|l| common::action(l) == never), "{never}");
    }
}

#[test]
fn sigterm_reaches_the_dump_which_may_finish_and_no_new_backup_starts() {
    let env = Env::new();
    let evidence = env.path("evidence");
    let started = env.path("started");
    // The original's term-trapper fixture: records its start, and on SIGTERM sleeps a while
    // before leaving its evidence and exiting 129.
    let dump = script(
        &env,
        "trapper.sh",
        &format!(
            "trap 'sleep 1; touch {}; exit 129' TERM\ntouch {}\nsleep 30 &\nwait",
            evidence.display(),
            started.display()
        ),
    );
    env.write_config(&format!(
        "cron_schedule: \"* * * * * *\"\nsource_executable: {dump}\n"
    ));
    let daemon = Agent::daemon(&env, "daemon", &[]);
    wait_until("the dump started", Duration::from_secs(10), || {
        started.exists()
    });
    daemon.signal("TERM");
    let (run, _) = daemon.wait(Duration::from_secs(15));
    // process_manager_integration_test.go, "propagates a TERM signal to child backup
    // commands": the evidence file exists, Say("All backup processes terminated"); "doesn't
    // start a new backup after a sigterm is received": strings.Count(…, "Perform backup
    // started") == 1.
    assert!(evidence.exists(), "the dump did not get SIGTERM");
    let lines = lines(&run.stdout);
    assert_eq!(
        lines.last().map(common::action),
        Some("All backup processes terminated. Exiting"),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.matches("Perform backup started").count(), 1);
}

#[test]
fn lines_written_to_the_journal_start_with_their_priority() {
    let env = Env::new();
    env.write_config("source_executable: ls /not/a/valid/directory\n");
    // The stream systemd hands over is named in JOURNAL_STREAM as device:inode; here stdout
    // is a file, which stands in for the journal's socket.
    let log = env.path("journal.log");
    std::fs::write(&log, "").unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let agent = Agent::start(
        &env,
        "journal",
        &["backup", "config.yml"],
        &[("JOURNAL_STREAM", &stream)],
    );
    let (run, _) = agent.wait(Duration::from_secs(30));
    run.expect(1);
    let error = run
        .stdout
        .lines()
        .find(|l| l.contains("Perform backup completed with error"))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(error.starts_with("<3>{\"timestamp\":"), "{error}");
    assert!(
        run.stdout
            .lines()
            .all(|l| l.starts_with("<3>{") || l.starts_with("<6>{") || l.starts_with("<4>{")),
        "{}",
        run.stdout
    );
    // Another stream named (the journal is not this stdout): no prefix.
    let agent = Agent::start(
        &env,
        "file",
        &["backup", "config.yml"],
        &[("JOURNAL_STREAM", "1:2")],
    );
    let (run, _) = agent.wait(Duration::from_secs(30));
    run.expect(1);
    assert!(
        run.stdout.lines().all(|l| l.starts_with('{')),
        "{}",
        run.stdout
    );
}

#[test]
fn without_destinations_nothing_is_backed_up_and_the_original_says_so() {
    let env = Env::new();
    std::fs::write(
        env.path("config.yml"),
        "destinations: []\ncron_schedule: '* * * * * *'\nmissing_properties_message: custom message\n",
    )
    .unwrap();
    // cmd/manual-backup/main.go: "No destination provided - skipping backup", then the dummy
    // executor's "Backups Disabled", exit 0.
    let out = env.run(&["backup", "config.yml"]);
    out.expect(0);
    let lines = lines(&out.stdout);
    let skipped = position(&lines, "No destination provided - skipping backup");
    assert!(skipped < position(&lines, "Backups Disabled"));
    // main.go logs the same before "Service-backup Started"; s3_integration_test.go, "when
    // no destination is specified": Say("Backups Disabled"), and "doesn't exit until
    // terminated".
    let mut daemon = Agent::daemon(&env, "daemon", &[]);
    daemon.wait_for("Backups Disabled", 1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon exited"
    );
    let lines = daemon.lines();
    assert!(
        position(&lines, "No destination provided - skipping backup")
            < position(&lines, "Service-backup Started")
    );
    daemon.signal("TERM");
    let (run, _) = daemon.wait(Duration::from_secs(15));
    run.expect(0);
}

#[test]
fn a_failed_manual_backup_ends_with_error_running_backup() {
    let env = Env::new();
    env.write_config("source_executable: ls /not/a/valid/directory\n");
    let out = env.run(&["backup", "config.yml"]);
    // cmd/manual-backup/main.go: logger.Error("Error running backup", err) (then exit 2;
    // ours exits 1, the README's code for a failed operation).
    out.expect(1);
    let lines = lines(&out.stdout);
    let last = lines.last().unwrap();
    assert_eq!(last["message"], "ServiceBackup.Error running backup");
    assert_eq!(last["log_level"], 2);
    assert!(
        last["data"]["error"]
            .as_str()
            .unwrap()
            .contains("source executable")
    );
}

#[test]
fn a_backup_due_while_one_runs_is_rejected_before_it_performs() {
    const IN_PROGRESS: &str = "Backup currently in progress, exiting. Another backup will not be able to start until this is completed.";
    let env = Env::new();
    let dump = script(&env, "slow.sh", "sleep 2.5");
    let id = script(&env, "id.sh", "echo FakeIdentifier");
    env.write_config(&format!(
        "cron_schedule: \"* * * * * *\"\nsource_executable: {dump}\nexit_if_in_progress: true\nservice_identifier_executable: {id}\n"
    ));
    let daemon = Agent::daemon(&env, "daemon", &[]);
    daemon.wait_for(IN_PROGRESS, 1, Duration::from_secs(15));
    daemon.signal("TERM");
    let (run, _) = daemon.wait(Duration::from_secs(15));
    run.expect(0);
    let lines = lines(&run.stdout);
    // executor_test.go, "rejects the upload": MatchError("Backup currently in progress,
    // exiting. …"), strings.Count(log, "Perform backup started") == 1 for two runs, the
    // message in the log; executor.go logs it with Error(errMsg, err), so data.error too.
    let performed: Vec<&Value> = lines
        .iter()
        .filter(|l| common::action(l) == "Perform backup started")
        .map(|l| &l["data"]["backup_guid"])
        .collect();
    let rejected: Vec<&Value> = lines
        .iter()
        .filter(|l| common::action(l) == IN_PROGRESS)
        .collect();
    assert!(!rejected.is_empty());
    for line in rejected {
        assert_eq!(line["log_level"], 2, "{line}");
        assert_eq!(line["data"]["error"], IN_PROGRESS, "{line}");
        // The rejected run is a run of its own: a guid, and the identifier that
        // s3_integration_test.go's alert names ("service instance FakeIdentifier").
        assert!(line["data"]["backup_guid"].is_string(), "{line}");
        assert_eq!(line["data"]["identifier"], "FakeIdentifier", "{line}");
        assert!(
            line["message"]
                .as_str()
                .unwrap()
                .starts_with("ServiceBackup.WithIdentifier."),
            "{line}"
        );
        assert!(
            !performed.contains(&&line["data"]["backup_guid"]),
            "a rejected run performed: {line}"
        );
    }
}

#[test]
fn lines_from_the_archive_threads_carry_the_run_s_fields() {
    let env = Env::new();
    let id = script(&env, "id.sh", "echo FakeIdentifier");
    env.write_config(&format!("service_identifier_executable: {id}\n"));
    // A restore's work folder in the source: the archive (on a blocking thread) skips it
    // with a warning.
    std::fs::create_dir(env.path("source/.service-backup-restore-x")).unwrap();
    let out = env.run(&["backup", "config.yml"]);
    out.expect(0);
    let lines = lines(&out.stdout);
    let warning = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("not archiving a restore's work folder"))
        })
        .unwrap_or_else(|| panic!("no warning: {}", out.stdout));
    // executor_test.go, "logs with the identifier for each event": `"identifier":
    // "unit-identifier"` after every step; the original had no other threads, ours must
    // carry the fields over to them.
    assert_eq!(warning["data"]["identifier"], "FakeIdentifier", "{warning}");
    assert!(warning["data"]["backup_guid"].is_string(), "{warning}");
}
