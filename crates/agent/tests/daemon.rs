//! The daemon through the real binary: schedules, executables, logs, overlap, signals.

mod common;

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, binary};
use serde_json::Value;

/// A running daemon whose stdout (the JSON log) goes to a file.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(env: &Env) -> Self {
        let log = env.path(&format!("daemon-{}.log", std::process::id()));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary())
            .args(["run", "config.yml"])
            .current_dir(env.dir.path())
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON log line: {l}")))
            .collect()
    }

    fn count(&self, message: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| common::action(l) == message)
            .count()
    }

    /// Waits until `message` was logged `n` times.
    fn wait_for(&self, message: &str, n: usize, limit: Duration) {
        let start = Instant::now();
        while self.count(message) < n {
            assert!(
                start.elapsed() < limit,
                "{message:?} not logged {n} times within {limit:?}:\n{}",
                self.dump()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn dump(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Sends SIGTERM and returns the exit code and how long the exit took.
    fn terminate(mut self) -> (i32, Duration, String) {
        self.signal("TERM");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                self.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (status.code().unwrap_or(-1), start.elapsed(), err);
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the daemon did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn script(env: &Env, name: &str, body: &str) -> String {
    let path = env.path(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn listed(env: &Env) -> Vec<Value> {
    let out = env.run(&["list", "config.yml", "--json"]);
    out.expect(0);
    serde_json::from_str(&out.stdout).unwrap()
}

fn tasks(env: &Env) -> Vec<Value> {
    let out = env.run(&["tasks", "config.yml", "--json"]);
    out.expect(0);
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn scheduled_backups_run_the_executables_in_order_and_log_as_the_original() {
    let env = Env::new();
    let order = env.path("order.txt");
    let o = order.display();
    let id = script(&env, "id.sh", "echo redis-instance-7");
    let dump = script(
        &env,
        "dump.sh",
        &format!("echo dump \"$@\" >> {o}\necho dumping to stdout"),
    );
    let clean = script(&env, "clean.sh", &format!("echo cleanup >> {o}"));
    env.write_config(&format!(
        "cron_schedule: \"* * * * * *\"\nsource_executable: {dump} --fast now\ncleanup_executable: {clean}\nservice_identifier_executable: {id}\n"
    ));
    let daemon = Daemon::start(&env);
    // The cleanup runs only after a complete upload: the end of a successful run.
    daemon.wait_for("Cleanup completed successfully", 2, Duration::from_secs(20));
    let (code, took, stderr) = daemon.terminate();
    assert_eq!(code, 0, "{stderr}");
    assert!(took < Duration::from_secs(15));

    let lines = std::fs::read_to_string(&order).unwrap();
    let mut expected = String::new();
    for _ in 0..lines.lines().count() / 2 {
        expected.push_str("dump --fast now\ncleanup\n");
    }
    assert!(
        lines.starts_with("dump --fast now\ncleanup\ndump --fast now\ncleanup\n"),
        "{lines}"
    );
    assert_eq!(lines, expected);
    assert!(listed(&env).len() >= 2);
    let log = std::fs::read_to_string(
        env.dir
            .path()
            .join(format!("daemon-{}.log", std::process::id())),
    )
    .unwrap();
    let values: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = &values[0];
    // The original's main.go and scheduler.go: logger "ServiceBackup" with no session.
    assert_eq!(first["message"], "ServiceBackup.Service-backup Started");
    assert_eq!(
        values.last().unwrap()["message"],
        "ServiceBackup.All backup processes terminated. Exiting"
    );
    // s3_integration_test.go: "ServiceBackup.WithIdentifier.Perform backup started", then
    // `"identifier":"FakeIdentifier"` on each line of the run.
    assert!(
        values
            .iter()
            .any(|v| v["message"] == "ServiceBackup.WithIdentifier.Perform backup started")
    );
    for m in [
        "Perform backup started",
        "Perform backup completed successfully",
        "Upload backup started",
        "Upload backup completed successfully",
        "Cleanup started",
        "Cleanup completed successfully",
    ] {
        let line = values
            .iter()
            .find(|v| common::action(v) == m)
            .unwrap_or_else(|| panic!("{m} missing"));
        assert_eq!(
            line["data"]["identifier"], "redis-instance-7",
            "{m}: {line}"
        );
        assert_eq!(
            line["data"]["backup_guid"].as_str().unwrap().len(),
            36,
            "{m}"
        );
        assert_eq!(line["source"], "ServiceBackup");
        assert_eq!(line["data"]["session"], "1", "{m}: {line}");
    }
    // An executable's output line is data of a fixed message (it can no longer pose as one
    // of the agent's messages), and carries the run's guid and identifier.
    let output = values
        .iter()
        .find(|v| v["data"]["stream"] == "stdout" && v["data"]["line"] == "dumping to stdout")
        .expect("the dump's output line");
    assert_eq!(common::action(output), "Executable output");
    assert_eq!(output["data"]["identifier"], "redis-instance-7");
    assert_eq!(output["data"]["backup_guid"].as_str().unwrap().len(), 36);
    let done: Vec<&Value> = values
        .iter()
        .filter(|v| common::action(v) == "Upload backup completed successfully")
        .collect();
    assert!(done[0]["data"]["size_in_bytes"].as_u64().unwrap() > 0);
    assert_eq!(done[0]["data"]["destination_name"], "disk");
    assert!(
        !log.contains(&env.key_text()),
        "the key leaked into the logs"
    );
    let t = tasks(&env);
    assert!(
        t.iter()
            .filter(|t| t["status"] == "done" && t["trigger"] == "schedule")
            .count()
            >= 2,
        "{t:?}"
    );
}

#[test]
fn sigterm_stops_a_slow_dump_and_leaves_no_backup() {
    let env = Env::new();
    let marker = env.path("dump-saw-term");
    let dump = script(
        &env,
        "slow.sh",
        &format!(
            "trap 'echo term > {}; exit 143' TERM\nsleep 30 &\nwait",
            marker.display()
        ),
    );
    env.write_config(&format!(
        "cron_schedule: \"* * * * * *\"\nsource_executable: {dump}\n"
    ));
    let daemon = Daemon::start(&env);
    daemon.wait_for("Perform backup started", 1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let (code, took, stderr) = daemon.terminate();
    assert_eq!(code, 0, "{stderr}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(marker.exists(), "the dump did not receive SIGTERM");
    assert!(listed(&env).is_empty(), "no backup may be visible");
    let t = tasks(&env);
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(
        (t[0]["status"].as_str(), t[0]["reason"].as_str()),
        (Some("failed"), Some("terminated"))
    );
}

#[test]
fn an_executable_that_ignores_sigterm_is_killed_in_time() {
    let env = Env::new();
    let dump = script(
        &env,
        "stubborn.sh",
        "trap '' TERM\nwhile true; do sleep 1; done",
    );
    env.write_config(&format!(
        "cron_schedule: \"* * * * * *\"\nsource_executable: {dump}\n"
    ));
    let daemon = Daemon::start(&env);
    daemon.wait_for("Perform backup started", 1, Duration::from_secs(10));
    let (code, took, stderr) = daemon.terminate();
    assert_eq!(code, 0, "{stderr}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[test]
fn overlapping_runs_are_rejected_or_queued_as_configured() {
    for (exit_if_in_progress, message) in [
        (
            true,
            "Backup currently in progress, exiting. Another backup will not be able to start until this is completed.",
        ),
        (
            false,
            "A backup is already queued; this one is coalesced with it",
        ),
    ] {
        let env = Env::new();
        let dump = script(&env, "slow.sh", "sleep 2.5");
        env.write_config(
            &format!("cron_schedule: \"* * * * * *\"\nsource_executable: {dump}\nexit_if_in_progress: {exit_if_in_progress}\n")
                ,
        );
        let daemon = Daemon::start(&env);
        daemon.wait_for(message, 1, Duration::from_secs(15));
        if exit_if_in_progress {
            let level = daemon
                .lines()
                .into_iter()
                .find(|l| common::action(l) == message)
                .unwrap()["log_level"]
                .clone();
            assert_eq!(level, 2, "logged at error");
            // A manual backup started while the daemon works obeys the same rule.
            let manual = env.run(&["backup", "config.yml"]);
            manual.expect(1);
            assert!(
                manual.stderr.contains("Backup currently in progress"),
                "{}",
                manual.stderr
            );
        } else {
            daemon.wait_for(
                "Backup queued behind the one in progress",
                1,
                Duration::from_secs(10),
            );
        }
        let (code, _, stderr) = daemon.terminate();
        assert_eq!(code, 0, "{stderr}");
    }
}

#[test]
fn no_destinations_idles_until_sigterm() {
    let env = Env::new();
    std::fs::write(env.path("config.yml"), "destinations: []\n").unwrap();
    let daemon = Daemon::start(&env);
    daemon.wait_for("Backups Disabled", 1, Duration::from_secs(10));
    let (code, took, _) = daemon.terminate();
    assert_eq!(code, 0);
    assert!(took < Duration::from_secs(5));
}

#[test]
fn sigkill_mid_run_then_restart_marks_the_task_interrupted_and_recovers() {
    let env = Env::new();
    let dump = script(&env, "slow.sh", "sleep 30");
    env.write_config(&format!(
        "cron_schedule: \"* * * * * *\"\nsource_executable: {dump}\n"
    ));
    let mut daemon = Daemon::start(&env);
    daemon.wait_for("Perform backup started", 1, Duration::from_secs(10));
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    // The dump was in its own process group: it outlives a SIGKILLed agent; end it.
    let _ = Command::new("pkill").args(["-f", &dump]).status();
    assert!(listed(&env).is_empty());
    env.write_config("cron_schedule: \"* * * * * *\"\n");
    let t = tasks(&env);
    assert_eq!(
        (t[0]["status"].as_str(), t[0]["reason"].as_str()),
        (Some("failed"), Some("interrupted")),
        "{t:?}"
    );
    let daemon = Daemon::start(&env);
    // Without a cleanup executable the original's last line of a successful run.
    daemon.wait_for("Cleanup command not provided", 1, Duration::from_secs(15));
    let (code, _, _) = daemon.terminate();
    assert_eq!(code, 0);
    assert!(!listed(&env).is_empty());
}

/// Runs `service-backup ARGS` and returns its output and its peak resident memory in KiB.
fn run_measured(env: &Env, args: &[&str]) -> (common::Run, u64) {
    let mut child = common::piped(env.dir.path()).args(args).spawn().unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        out.read_to_end(&mut s).unwrap();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        err.read_to_end(&mut s).unwrap();
        s
    });
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        let status = std::fs::read_to_string(&status_file).unwrap_or_default();
        if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
            peak = peak.max(line.split_whitespace().nth(1).unwrap().parse().unwrap());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = child.wait().unwrap();
    let stdout = reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    let run = common::Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        raw_stdout: stdout,
    };
    (run, peak)
}

#[test]
fn an_executable_that_prints_megabytes_keeps_memory_flat() {
    let env = Env::new();
    // 64 MB on one line, then 200,000 short lines.
    let dump = script(
        &env,
        "loud.sh",
        "head -c 64000000 /dev/zero | tr '\\0' 'x'\nseq 1 200000",
    );
    env.write_config(&format!("source_executable: {dump}\n"));
    let (out, peak_kib) = run_measured(&env, &["backup", "config.yml"]);
    out.expect(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines.iter().all(|l| l.len() < 4096),
        "a log line was not cut"
    );
    assert!(lines.len() < 1100, "{} log lines", lines.len());
    assert!(out.stdout.contains("More output lines were not logged"));
    assert!(
        peak_kib > 0 && peak_kib < 64 * 1024,
        "peak RSS {peak_kib} KiB"
    );
}

#[test]
fn sigterm_mid_upload_aborts_and_leaves_nothing_visible() {
    let env = Env::new();
    let status = Command::new("sh")
        .args([
            "-c",
            &format!(
                "head -c 300000000 /dev/urandom > {}",
                env.path("source/big.bin").display()
            ),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    env.write_config("cron_schedule: \"* * * * * *\"\n");
    let daemon = Daemon::start(&env);
    daemon.wait_for("Upload backup started", 1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        daemon.count("Upload backup completed successfully"),
        0,
        "the upload finished too soon to test"
    );
    let (code, took, stderr) = daemon.terminate();
    assert_eq!(code, 0, "{stderr}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(listed(&env).is_empty(), "no backup may be visible");
    let mut leftovers = vec![];
    let mut stack = vec![env.path("backups")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                leftovers.push(p);
            }
        }
    }
    assert!(
        leftovers.is_empty(),
        "files left in the destination: {leftovers:?}"
    );
    let t = tasks(&env);
    assert_eq!(
        (t[0]["status"].as_str(), t[0]["reason"].as_str()),
        (Some("failed"), Some("terminated")),
        "{t:?}"
    );
}

#[test]
fn failing_identifier_and_missing_or_failing_dump_are_logged() {
    let env = Env::new();
    let bad_id = script(&env, "id.sh", "exit 3");
    env.write_config(&format!(
        "service_identifier_executable: {bad_id}\nsource_executable: /no/such/dump\n"
    ));
    let out = env.run(&["backup", "config.yml"]);
    out.expect(1);
    // The original's executor_test.go: "Service identifier command returned error", and
    // no `"identifier"` anywhere; s3_integration_test.go: a failing source executable logs
    // "Perform backup completed with error".
    assert!(
        out.stdout
            .contains("\"ServiceBackup.Service identifier command returned error\""),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("\"identifier\""), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("\"ServiceBackup.Perform backup completed with error\""),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("Upload backup started"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("/no/such/dump"), "{}", out.stderr);
    assert!(listed(&env).is_empty());
    let failing = script(&env, "fail.sh", "echo cannot dump >&2\nexit 4");
    env.write_config(&format!("source_executable: {failing}\n"));
    let out = env.run(&["backup", "config.yml"]);
    out.expect(1);
    assert!(
        out.stderr.contains("failed (exit status: 4)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("cannot dump"),
        "the executable's stderr is logged"
    );
    assert!(listed(&env).is_empty());
}

#[test]
fn a_corrupt_or_unusable_state_dir_is_a_clear_error() {
    let env = Env::new();
    std::fs::create_dir(env.path("state")).unwrap();
    std::fs::write(env.path("state/service-backup.sqlite3"), vec![0x42u8; 4096]).unwrap();
    env.write_config(&format!("state_dir: {}\n", env.path("state").display()));
    let out = env.run(&["backup", "config.yml"]);
    out.expect(1);
    assert!(
        out.stderr.contains("cannot be used") && out.stderr.contains("move it aside"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read(env.path("state/service-backup.sqlite3")).unwrap(),
        vec![0x42u8; 4096]
    );

    env.write_config("state_dir: /etc/hostname/state\n");
    let out = env.run(&["backup", "config.yml"]);
    out.expect(1);
    assert!(out.stderr.contains("state_dir"), "{}", out.stderr);
    assert!(listed(&env).is_empty());
}

#[test]
fn sighup_reloads_and_a_bad_new_config_keeps_the_old_one() {
    let env = Env::new();
    env.write_config("");
    let daemon = Daemon::start(&env);
    daemon.wait_for("Service-backup Started", 1, Duration::from_secs(10));
    std::fs::write(env.path("config.yml"), "destinations: [\n  broken").unwrap();
    daemon.signal("HUP");
    daemon.wait_for(
        "Configuration reload failed; keeping the previous configuration",
        1,
        Duration::from_secs(10),
    );
    env.write_config("");
    daemon.signal("HUP");
    daemon.wait_for("Configuration reloaded", 1, Duration::from_secs(10));
    let (code, _, _) = daemon.terminate();
    assert_eq!(code, 0);
}

#[test]
fn the_start_up_line_says_what_the_daemon_will_do_and_each_run_the_next_time() {
    let env = Env::new();
    env.run(&["keygen", "--output", "previous.key"]).expect(0);
    let previous = std::fs::read_to_string(env.path("previous.key")).unwrap();
    common::secret(previous.trim());
    let health = env.path("health.jsonl");
    env.write_config(&format!(
        "cron_schedule: \"*/2 * * * * *\"\nretention:\n  keep_last: 3\n\
         compression: zstd\n\
         health:\n  file: {}\n  interval: 1h\n",
        health.display()
    ));
    // A previous key beside the current one: both ids are named, neither key.
    let config = std::fs::read_to_string(env.path("config.yml"))
        .unwrap()
        .replace(
            "  key_file:",
            &format!(
                "  previous_key_files: [{}]\n  key_file:",
                env.path("previous.key").display()
            ),
        );
    std::fs::write(env.path("config.yml"), config).unwrap();
    let daemon = Daemon::start(&env);
    daemon.wait_for("Next backup scheduled", 1, Duration::from_secs(20));
    let (code, _, stderr) = daemon.terminate();
    assert_eq!(code, 0, "{stderr}");
    let lines = daemon_lines(&env);
    // The original's first line stays first; the summary follows it.
    assert_eq!(common::action(&lines[0]), "Service-backup Started");
    let summary = lines
        .iter()
        .find(|l| common::action(l) == "Service-backup configuration")
        .expect("the start-up summary");
    let data = &summary["data"];
    for field in [
        "version",
        "config",
        "schedule",
        "time_zone",
        "next_runs",
        "next_runs_utc",
        "destinations",
        "encryption",
        "compression",
        "retention",
        "api",
        "health_sinks",
    ] {
        assert!(data[field].is_string(), "{field} missing: {summary}");
    }
    assert_eq!(data["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(data["config"], "config.yml");
    assert_eq!(data["schedule"], "*/2 * * * * *");
    assert_eq!(data["destinations"], "disk (local)");
    assert_eq!(data["compression"], "zstd level 3");
    assert_eq!(data["retention"], "{keep_last: 3}");
    assert_eq!(data["api"], "none");
    assert_eq!(
        data["health_sinks"],
        format!("file {}", health.display()).as_str()
    );
    // Three run times, in the VM's zone and in UTC.
    let utc: Vec<&str> = data["next_runs_utc"]
        .as_str()
        .unwrap()
        .split(", ")
        .collect();
    assert_eq!(utc.len(), 3, "{summary}");
    assert!(utc.iter().all(|t| t.ends_with('Z')), "{summary}");
    assert_eq!(data["next_runs"].as_str().unwrap().split(", ").count(), 3);
    // The key ids as `list --json` shows them for the current key; never a key.
    let current_id = listed(&env)[0]["key_id"].as_str().unwrap().to_string();
    let encryption = data["encryption"].as_str().unwrap();
    assert!(
        encryption.starts_with(&format!("key {current_id} (previous ")),
        "{encryption}"
    );
    let log =
        std::fs::read_to_string(env.path(&format!("daemon-{}.log", std::process::id()))).unwrap();
    assert!(
        !log.contains(&env.key_text()),
        "the key leaked into the logs"
    );
    assert!(!log.contains(previous.trim()), "a previous key leaked");
    // After a run: when the next one comes, after the run's own lines.
    let next = lines
        .iter()
        .position(|l| common::action(l) == "Next backup scheduled")
        .unwrap();
    let done = lines
        .iter()
        .position(|l| common::action(l) == "Upload backup completed successfully")
        .unwrap();
    assert!(done < next, "the next run is told after the run");
    assert!(lines[next]["data"]["next"].as_str().unwrap().ends_with('Z'));
    assert!(lines[next]["data"]["next_local"].is_string());
}

/// The daemon's log lines of the test's run in `env`.
fn daemon_lines(env: &Env) -> Vec<Value> {
    std::fs::read_to_string(env.path(&format!("daemon-{}.log", std::process::id())))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn sigterm_and_sigint_stop_a_one_shot_backup_as_they_stop_the_daemon() {
    for signal in ["TERM", "INT"] {
        let env = Env::new();
        let started = env.path("dump-started");
        let dump = script(
            &env,
            "slow.sh",
            &format!("touch {}\nsleep 30 &\nwait", started.display()),
        );
        env.write_config(&format!("source_executable: {dump}\n"));
        let mut child = common::piped(env.dir.path())
            .args(["backup", "config.yml", "--json"])
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !started.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the dump did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let sent = Instant::now();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let out = loop {
            if child.try_wait().unwrap().is_some() {
                break child.wait_with_output().unwrap();
            }
            assert!(
                sent.elapsed() < Duration::from_secs(15),
                "SIG{signal}: the backup runs on"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let run = common::Run::from(out);
        // Exit 1, the message of a stopped run, and the document says so.
        run.expect(1);
        assert!(
            run.stderr.contains("error: the source executable")
                && run.stderr.contains("was stopped"),
            "SIG{signal}: {}",
            run.stderr
        );
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(doc["ok"], false, "{doc}");
        assert_eq!(doc["status"], "cancelled", "{doc}");
        // Nothing listed, nothing written, the task failed "terminated".
        assert!(listed(&env).is_empty(), "SIG{signal}: a backup is visible");
        let stored = std::fs::read_dir(env.path("backups")).map_or(0, Iterator::count);
        assert_eq!(stored, 0, "SIG{signal}: the destination holds something");
        let t = tasks(&env);
        assert_eq!(
            (t[0]["status"].as_str(), t[0]["reason"].as_str()),
            (Some("failed"), Some("terminated")),
            "SIG{signal}: {t:?}"
        );
    }
}
