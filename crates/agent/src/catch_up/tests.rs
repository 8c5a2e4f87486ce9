use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Timelike as _, Utc};

use super::{Missed, last_recorded_success, last_stored_success, missed};
use crate::config::parse;
use crate::schedule::{Plan, Schedule};
use crate::tasks::Tasks;
use crate::tasks::store::{Discovered, TaskKind};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instants are valid RFC 3339")
        .with_timezone(&Utc)
}

fn plan(expr: &str) -> Plan {
    Plan::new(&Schedule::parse(expr).expect("valid"), None, "x")
}

#[test]
fn one_catch_up_for_any_number_of_missed_runs() {
    let daily = plan("CRON_TZ=UTC 0 3 * * *");
    let last = at("2026-12-01T03:00:04Z");
    // Stopped for three days: one catch-up, for the newest missed run.
    assert_eq!(
        missed(&daily, Some(last), at("2026-12-04T10:00:00Z")),
        Some(Missed {
            at: at("2026-12-04T03:00:00Z"),
            last_success: last
        })
    );
    // Started again the same day, before the next run: nothing missed.
    assert_eq!(missed(&daily, Some(last), at("2026-12-02T02:59:59Z")), None);
    // No history at all: a brand-new instance waits for its schedule.
    assert_eq!(missed(&daily, None, at("2026-12-04T10:00:00Z")), None);
}

#[test]
fn every_catches_up_after_more_than_one_interval() {
    let every = plan("@every 2h");
    let last = at("2026-12-01T03:00:00Z");
    assert_eq!(missed(&every, Some(last), at("2026-12-01T05:00:00Z")), None);
    assert_eq!(
        missed(&every, Some(last), at("2026-12-01T09:30:00Z")).map(|m| m.at),
        Some(at("2026-12-01T09:00:00Z"))
    );
}

/// The newest 03:00 UTC at or before `t`.
fn newest_three_oclock(t: DateTime<Utc>) -> DateTime<Utc> {
    let same_day = t
        .with_hour(3)
        .and_then(|t| t.with_minute(0))
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap();
    if same_day <= t {
        same_day
    } else {
        same_day - TimeDelta::days(1)
    }
}

#[tokio::test]
async fn the_decision_from_the_task_history() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = Tasks::open(&dir.path().join("state")).await.unwrap();
    assert_eq!(
        last_recorded_success(&tasks, Utc::now()).await.unwrap(),
        None
    );

    // A failed backup is no success.
    let failed = tasks.create(TaskKind::Backup, "schedule").await.unwrap();
    tasks.start(failed, "guid-1".into()).await.unwrap();
    tasks.fail(failed, None, "boom".into(), 1.0).await.unwrap();
    assert_eq!(
        last_recorded_success(&tasks, Utc::now()).await.unwrap(),
        None
    );

    // A backup found in a destination and recorded as discovered counts.
    let found = Discovered {
        name: "20261101T030000Z-x".into(),
        started_at: at("2026-11-01T03:00:00Z"),
        finished_at: at("2026-11-01T03:00:07Z"),
        size_in_bytes: 1,
        stored_bytes: 1,
    };
    tasks.backup_ids_for(vec![found]).await.unwrap();
    assert_eq!(
        last_recorded_success(&tasks, Utc::now()).await.unwrap(),
        Some(at("2026-11-01T03:00:07Z"))
    );

    let done = tasks.create(TaskKind::Backup, "schedule").await.unwrap();
    tasks.start(done, "guid-2".into()).await.unwrap();
    tasks
        .finish(done, Some("20261206T030000Z-x".into()), 1, 1, 1.0)
        .await
        .unwrap();
    let last = last_recorded_success(&tasks, Utc::now())
        .await
        .unwrap()
        .expect("a success");
    assert!((Utc::now() - last).num_seconds().abs() < 60, "{last}");

    let daily = plan("CRON_TZ=UTC 0 3 * * *");
    let later = last + TimeDelta::days(3);
    assert_eq!(
        missed(&daily, Some(last), later).map(|m| m.at),
        Some(newest_three_oclock(later)),
        "three days later: the newest run is caught up"
    );
    let soon = last + TimeDelta::seconds(1);
    let expect_none = newest_three_oclock(soon) <= last;
    assert_eq!(
        missed(&daily, Some(last), soon).is_none(),
        expect_none,
        "a second later nothing fired (unless 03:00 lies in that second)"
    );
}

#[tokio::test]
async fn a_destination_that_cannot_be_listed_holds_nothing_and_counts_for_nothing() {
    // An S3 endpoint that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "destinations:\n\
         - type: s3\n  name: silent\n  config: {{bucket_name: b, bucket_path: p, access_key_id: a, \
         secret_access_key: s, endpoint_url: 'http://127.0.0.1:{port}', region: us-east-1}}\n\
         - type: local\n  name: empty\n  config: {{path: {}}}\n\
         source_folder: /tmp\ncron_schedule: '0 3 * * *'\n",
        dir.path().display()
    );
    let config = parse(&yaml).unwrap_or_else(|e| panic!("{e}"));
    let state = tempfile::tempdir().unwrap();
    let tasks = Tasks::open(state.path()).await.unwrap();
    let start = Instant::now();
    let found = last_stored_success(&config, &tasks, "x", Duration::from_secs(2), Utc::now()).await;
    assert_eq!(found, None);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the listing took {:?}",
        start.elapsed()
    );
    drop(silent);
}

#[tokio::test]
async fn a_success_dated_in_the_future_is_ignored() {
    // Attack finding 6: a backup dated 2099 made the start log "No backup was missed".
    let dir = tempfile::tempdir().unwrap();
    let tasks = Tasks::open(&dir.path().join("state")).await.unwrap();
    let discovered = |name: &str, end: &str| Discovered {
        name: name.into(),
        started_at: at(end),
        finished_at: at(end),
        size_in_bytes: 1,
        stored_bytes: 1,
    };
    tasks
        .backup_ids_for(vec![
            discovered("20261101T030000Z-x", "2026-11-01T03:00:07Z"),
            discovered("20991231T235900Z-x", "2099-12-31T23:59:00Z"),
        ])
        .await
        .unwrap();
    let now = at("2026-12-03T12:00:00Z");
    assert_eq!(
        last_recorded_success(&tasks, now).await.unwrap(),
        Some(at("2026-11-01T03:00:07Z"))
    );
    // Within the hour of skew prune allows, a success still counts.
    let close = at("2026-12-03T12:59:00Z");
    tasks
        .backup_ids_for(vec![discovered(
            "20261203T125800Z-x",
            "2026-12-03T12:59:00Z",
        )])
        .await
        .unwrap();
    assert_eq!(
        last_recorded_success(&tasks, now).await.unwrap(),
        Some(close)
    );
}

#[tokio::test]
async fn the_last_stored_success_comes_from_the_catalog_refreshed_first() {
    use service_backup_core::destination::LocalDestination;
    use service_backup_core::layout::Layout;
    use service_backup_core::manifest::planted;

    // A fresh VM among others on one prefix: this instance's newest backup counts, another
    // instance's newer one does not, and what was read stays in the catalog, so that the
    // next start refreshes it incrementally instead of reading the prefix whole again.
    let root = tempfile::tempdir().unwrap();
    let dest = LocalDestination::new(root.path());
    let layout = Layout::new("", None);
    for (instance, time) in [
        ("x", "2026-12-01T03:00:04Z"),
        ("x", "2026-12-02T03:00:09Z"),
        ("y", "2026-12-03T03:00:00Z"),
    ] {
        let m = planted::manifest(instance, at(time));
        planted::put(&dest, &layout, at(time).date_naive(), &m).await;
    }
    let (config, tasks, _state, found) = last_success_in(root.path(), "").await;
    assert_eq!(found, Some(at("2026-12-02T03:00:09Z")));
    let (held, refreshed_at) = crate::catalog::cached(&config, &tasks, "x").await.unwrap();
    let names: Vec<_> = held
        .iter()
        .flat_map(|(_, entries)| entries.iter().map(|e| e.manifest.name.as_str()))
        .collect();
    assert_eq!(
        names,
        ["20261202T030009Z-x-0000abcd", "20261201T030004Z-x-0000abcd"]
    );
    assert!(refreshed_at.is_some(), "the refresh is recorded");
}

#[tokio::test]
async fn an_agent_that_encrypts_takes_no_plain_backup_for_its_last_success() {
    use service_backup_core::destination::LocalDestination;
    use service_backup_core::layout::Layout;
    use service_backup_core::manifest::{Encryption, planted};

    // Attacker's review: a plain manifest planted under this instance's name held off the
    // catch-up of a fresh VM whose agent encrypts (prune does not trust it either).
    let root = tempfile::tempdir().unwrap();
    let dest = LocalDestination::new(root.path());
    let layout = Layout::new("", None);
    let mut own = planted::manifest("x", at("2026-12-01T03:00:04Z"));
    own.encryption = Some(Encryption {
        algorithm: "aes-256-gcm".into(),
        key_id: "k".into(),
    });
    planted::put(&dest, &layout, own.started_at.date_naive(), &own).await;
    let plain = planted::manifest("x", at("2026-12-04T03:00:00Z"));
    planted::put(&dest, &layout, plain.started_at.date_naive(), &plain).await;
    let key = "encryption: {key: \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"}\n";
    let (_, _, _state, found) = last_success_in(root.path(), key).await;
    assert_eq!(found, Some(at("2026-12-01T03:00:04Z")));
}

/// The last success of instance `x` at noon on 5 December 2026 with one `local` destination
/// at `root` (and the configuration lines `extra`): the configuration, the task database
/// (in the folder returned) and what was found.
async fn last_success_in(
    root: &std::path::Path,
    extra: &str,
) -> (
    crate::config::Config,
    Tasks,
    tempfile::TempDir,
    Option<DateTime<Utc>>,
) {
    let yaml = format!(
        "destinations:\n- type: local\n  name: disk\n  config: {{path: {}}}\n\
         source_folder: /tmp\ncron_schedule: '0 3 * * *'\n{extra}",
        root.display()
    );
    let config = parse(&yaml).unwrap_or_else(|e| panic!("{e}"));
    let state = tempfile::tempdir().unwrap();
    let tasks = Tasks::open(state.path()).await.unwrap();
    let now = at("2026-12-05T12:00:00Z");
    let found = last_stored_success(&config, &tasks, "x", Duration::from_secs(20), now).await;
    (config, tasks, state, found)
}
