//! Catch-up after downtime and the backup window, through the real binary with its clock
//! moved by libfaketime (`FAKETIME="@…"` starts the process's wall clock at that instant;
//! the monotonic clock, which the daemon's timers use, is left alone).
//!
//! | case | how | what the agent must do |
//! | --- | --- | --- |
//! | downtime over three runs | a backup on 2026-12-01 at 03:00 (UTC, `0 3 * * *`), stopped, started on the 4th at 10:00 | one backup at once, task trigger `catch-up`, logged with the missed run 2026-12-04T03:00:00Z; not one per missed run |
//! | started again, clock not moved | the same a few minutes later | no backup |
//! | `catch_up: false` | started on the 8th | no backup |
//! | fresh VM | the task database removed, a backup in the destination | the catch-up is decided from the newest manifest |
//! | a backup dated in the future | a backup made with the clock at 2099, then started on the 3rd (and, as a fresh VM, on the 4th) | the 2099 backup is logged as ignored; one backup at once, counted from the 1st |
//! | brand-new instance | no task; in the destination only another instance's backup | no backup |
//! | `cron_jitter` | instance `kafka-0.events`, jitter 30m (offset 21m48s) | the daemon logs the offset and runs at 03:21:48, `check` prints it |
//! | `backup_window` | the same instance, window 22:00-06:00 on `0 3 * * *` | `check` prints its runs at 22:00 plus its offset, not at 03:00 |

mod common;

use std::time::Duration;

use common::host::{Agent, listed, no_panic, tasks};
use common::{Env, server_env};
use serde_json::Value;

/// Logged when a run succeeded without a cleanup executable: the end of a backup.
const RUN_DONE: &str = "Cleanup command not provided";
/// Logged at the start of every run without a source executable.
const RUN_STARTED: &str = "source_executable not provided, skipping performing of backup";

/// The env's config: `0 3 * * *` in the VM's zone (UTC in these tests), its own `state_dir`,
/// and `extra` lines.
fn write_config(env: &Env, extra: &str) {
    let d = env.dir.path().display();
    env.write_config(&format!(
        "cron_schedule: \"0 3 * * *\"\nstate_dir: {d}/state\n{extra}"
    ));
}

/// The daemon with its wall clock starting at `start` (UTC, `YYYY-MM-DD hh:mm:ss`).
fn daemon_at(env: &Env, tag: &str, start: &str) -> Agent {
    let lib = server_env("SB_TEST_LIBFAKETIME");
    let faketime = format!("@{start}");
    Agent::daemon(
        env,
        tag,
        &[
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME", faketime.as_str()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("TZ", "UTC"),
        ],
    )
}

/// Stops the daemon with SIGTERM and checks it exited well.
fn stop(daemon: Agent) {
    daemon.signal("TERM");
    let (run, _) = daemon.wait(Duration::from_secs(20));
    run.expect(0);
    no_panic(&run);
}

/// The lines of `daemon` whose message starts with `prefix`.
fn lines_starting(daemon: &Agent, prefix: &str) -> Vec<Value> {
    daemon
        .lines()
        .into_iter()
        .filter(|l| common::action(l).starts_with(prefix))
        .collect()
}

/// Waits for the daemon's catch-up decision (`decision`, or with `catch_up: false` a few
/// seconds after the start), then checks it started no backup and logged no catch-up.
fn expect_no_backup(daemon: &Agent, decision: Option<&str>) {
    daemon.wait_for("Service-backup Started", 1, Duration::from_secs(20));
    match decision {
        Some(line) => daemon.wait_for(line, 1, Duration::from_secs(30)),
        // Nothing to wait for: a catch-up would come right after the start.
        None => std::thread::sleep(Duration::from_secs(3)),
    }
    // A backup queued at the decision would have started by now: give it a moment.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(daemon.count(RUN_STARTED), 0, "no backup runs");
    assert!(lines_starting(daemon, "Catching up").is_empty());
}

const NOTHING_MISSED: &str = "No backup was missed since the last success";
const NO_HISTORY: &str = "No backup of this instance was found: nothing to catch up";

/// The backup tasks, oldest first.
fn backup_tasks(env: &Env) -> Vec<Value> {
    tasks(env)
        .into_iter()
        .filter(|t| t["kind"] == "backup")
        .collect()
}

/// A first backup, made by the daemon on its schedule at 2026-12-01 03:00 UTC.
fn first_backup_on_schedule(env: &Env) {
    let first = daemon_at(env, "first", "2026-12-01 02:59:57");
    first.wait_for(RUN_DONE, 1, Duration::from_mins(1));
    assert!(
        lines_starting(&first, "Catching up").is_empty(),
        "a brand-new instance has nothing to catch up"
    );
    assert_eq!(first.count(NO_HISTORY), 1);
    stop(first);
    let backups = backup_tasks(env);
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(
        (&backups[0]["status"], &backups[0]["trigger"]),
        (&"done".into(), &"schedule".into())
    );
}

#[test]
fn downtime_over_several_runs_catches_up_once() {
    let env = Env::new();
    write_config(&env, "");
    first_backup_on_schedule(&env);

    // Stopped over the runs of the 2nd, 3rd and 4th: one backup at once, for the newest.
    let second = daemon_at(&env, "second", "2026-12-04 10:00:00");
    second.wait_for(RUN_DONE, 1, Duration::from_mins(1));
    let caught = lines_starting(&second, "Catching up");
    assert_eq!(caught.len(), 1, "{caught:?}");
    // 2026-12-04T03:00:00Z: the newest run of `0 3 * * *` before the restart.
    assert_eq!(
        common::action(&caught[0]),
        "Catching up a backup missed at 2026-12-04T03:00:00Z"
    );
    assert_eq!(caught[0]["data"]["last_success_from"], "the task database");
    // Not one per missed run: nothing more starts.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(second.count(RUN_STARTED), 1);
    stop(second);
    let backups = backup_tasks(&env);
    assert_eq!(backups.len(), 2, "{backups:?}");
    assert_eq!(
        (&backups[1]["status"], &backups[1]["trigger"]),
        (&"done".into(), &"catch-up".into())
    );
    assert_eq!(listed(&env, &[]).len(), 2, "two backups in the destination");

    // Started again without the clock passing a run: nothing to catch up.
    let third = daemon_at(&env, "third", "2026-12-04 10:05:00");
    expect_no_backup(&third, Some(NOTHING_MISSED));
    stop(third);

    // catch_up: false: days of missed runs, and nothing runs until the schedule does.
    write_config(&env, "catch_up: false\n");
    let fourth = daemon_at(&env, "fourth", "2026-12-08 10:00:00");
    expect_no_backup(&fourth, None);
    assert_eq!(fourth.count(NOTHING_MISSED), 0, "no decision is made");
    stop(fourth);
    assert_eq!(backup_tasks(&env).len(), 2);
}

#[test]
fn a_fresh_vm_decides_from_the_newest_manifest() {
    let env = Env::new();
    write_config(&env, "");
    first_backup_on_schedule(&env);
    // A new VM: the persistent disk's task database is gone, the destination keeps the
    // backup (of the same instance: the host name, as no instance_id is set).
    std::fs::remove_dir_all(env.path("state")).unwrap();

    let fresh = daemon_at(&env, "fresh", "2026-12-03 12:00:00");
    fresh.wait_for(RUN_DONE, 1, Duration::from_mins(1));
    let caught = lines_starting(&fresh, "Catching up");
    assert_eq!(caught.len(), 1, "{caught:?}");
    assert_eq!(
        common::action(&caught[0]),
        "Catching up a backup missed at 2026-12-03T03:00:00Z"
    );
    assert_eq!(caught[0]["data"]["last_success_from"], "the destinations");
    stop(fresh);
    let backups = backup_tasks(&env);
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(backups[0]["trigger"], "catch-up");
    assert_eq!(listed(&env, &[]).len(), 2);
}

#[test]
fn another_instances_backups_are_no_history_of_this_one() {
    let env = Env::new();
    write_config(&env, "instance_id: redis-0\n");
    first_backup_on_schedule(&env);
    std::fs::remove_dir_all(env.path("state")).unwrap();
    // The same destination, another instance: a brand-new instance, nothing to catch up.
    write_config(&env, "instance_id: redis-1\n");
    let other = daemon_at(&env, "other", "2026-12-03 12:00:00");
    expect_no_backup(&other, Some(NO_HISTORY));
    stop(other);
}

#[test]
fn a_jitter_moves_this_instances_runs_by_its_offset() {
    let env = Env::new();
    // 21m48s: the first 8 bytes of SHA-256("kafka-0.events") as a fraction of 30 minutes.
    let offset =
        service_backup::schedule::offset_within(chrono::TimeDelta::minutes(30), "kafka-0.events");
    assert_eq!(offset.num_seconds(), 21 * 60 + 48);
    write_config(&env, "cron_jitter: 30m\ninstance_id: kafka-0.events\n");

    let check = std::process::Command::new(common::binary())
        .args(["check", "config.yml"])
        .current_dir(env.dir.path())
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let check = common::Run::from(check);
    check.expect(0);
    let line = check
        .stdout
        .lines()
        .find(|l| l.starts_with("schedule "))
        .unwrap_or_else(|| panic!("{}", check.all()))
        .to_string();
    assert!(
        line.starts_with(
            "schedule \"0 3 * * *\" with cron_jitter 30m (this instance's offset 21m48s): \
             next runs in the VM's time zone UTC: "
        ),
        "{line}"
    );
    assert_eq!(line.matches(" 03:21:48 +00:00").count(), 3, "{line}");

    let daemon = daemon_at(&env, "jitter", "2026-12-01 03:21:45");
    daemon.wait_for(RUN_DONE, 1, Duration::from_mins(1));
    let spread = lines_starting(&daemon, "Backups of this instance run at a fixed offset");
    assert_eq!(spread.len(), 1);
    assert_eq!(spread[0]["data"]["offset"], "21m48s");
    assert_eq!(spread[0]["data"]["within"], "cron_jitter 30m");
    assert_eq!(spread[0]["data"]["next"], "2026-12-01T03:21:48Z");
    stop(daemon);
    let items = listed(&env, &[]);
    assert_eq!(items.len(), 1);
    // The backup's name carries its start time: 03:21:48, not 03:00.
    let name = items[0]["name"].as_str().unwrap();
    assert!(name.starts_with("20261201T0321"), "{name}");
}

#[test]
fn check_prints_the_runs_of_this_instance_in_its_window() {
    let env = Env::new();
    write_config(
        &env,
        "backup_window: \"22:00-06:00\"\ninstance_id: kafka-0.events\n",
    );
    let offset =
        service_backup::schedule::offset_within(chrono::TimeDelta::hours(8), "kafka-0.events");
    let run = chrono::NaiveTime::from_hms_opt(22, 0, 0).unwrap() + offset;
    let check = std::process::Command::new(common::binary())
        .args(["check", "config.yml"])
        .current_dir(env.dir.path())
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let check = common::Run::from(check);
    check.expect(0);
    let line = check
        .stdout
        .lines()
        .find(|l| l.starts_with("schedule "))
        .unwrap_or_else(|| panic!("{}", check.all()))
        .to_string();
    let expected = format!(
        "schedule \"0 3 * * *\" with backup_window 22:00-06:00 (this instance's offset {}): ",
        service_backup::schedule::go_duration(offset)
    );
    assert!(line.starts_with(&expected), "{line}");
    // Every day at the window's start plus the offset, whatever the schedule's 03:00.
    let at = format!(" {} +00:00", run.format("%H:%M:%S"));
    assert_eq!(line.matches(&at).count(), 3, "{line}");
}

#[test]
fn a_backup_dated_in_the_future_does_not_stop_the_catch_up() {
    // Attack finding 6: a manifest dated 2099 in the destination (or a clock that jumped
    // forward) made the start log "No backup was missed", however long the downtime.
    let env = Env::new();
    write_config(&env, "");
    first_backup_on_schedule(&env);
    // The daemon with its clock at 2099 catches up the runs since the 1st: a backup dated
    // 2099-12-30, in the task database and in the destination.
    let ahead = daemon_at(&env, "ahead", "2099-12-30 12:00:00");
    ahead.wait_for(RUN_DONE, 1, Duration::from_mins(1));
    stop(ahead);
    assert_eq!(listed(&env, &[]).len(), 2);
    let ignored =
        "Catch-up: a backup dated more than 1 hour(s) after this machine's clock is ignored";
    for (tag, start, missed, from) in [
        (
            "task-db",
            "2026-12-03 12:00:00",
            "2026-12-03T03:00:00Z",
            "the task database",
        ),
        (
            "fresh-vm",
            "2026-12-04 12:00:00",
            "2026-12-04T03:00:00Z",
            "the destinations",
        ),
    ] {
        if tag == "fresh-vm" {
            std::fs::remove_dir_all(env.path("state")).unwrap();
        }
        let later = daemon_at(&env, tag, start);
        later.wait_for(RUN_DONE, 1, Duration::from_mins(1));
        let caught = lines_starting(&later, "Catching up");
        assert_eq!(caught.len(), 1, "{tag}: {caught:?}");
        assert_eq!(
            common::action(&caught[0]),
            format!("Catching up a backup missed at {missed}")
        );
        assert_eq!(caught[0]["data"]["last_success_from"], from, "{tag}");
        let warned = lines_starting(&later, ignored);
        assert!(
            warned.iter().any(|l| l["data"]["dated"]
                .as_str()
                .unwrap_or_default()
                .starts_with("2099-12-30")),
            "{tag}: {warned:?}"
        );
        assert_eq!(
            later.count("No backup was missed since the last success"),
            0
        );
        stop(later);
    }
}
