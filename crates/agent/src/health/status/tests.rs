//! The status rules of the README, one by one.

use chrono::{DateTime, Duration, Utc};

use super::*;

fn at(hours: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + Duration::hours(hours)
}

/// A daily schedule, watched since hour 0, the last backup a success at hour 24, now hour 30.
fn healthy() -> Inputs {
    Inputs {
        now: at(30),
        since: at(0),
        last_backup: Some(LastBackup {
            at: at(24),
            succeeded: true,
            stored: vec!["a".into(), "b".into()],
            failed: Vec::new(),
            reason: None,
        }),
        last_success: Some(at(24)),
        period: Some(Duration::hours(24)),
        threshold: 80,
        full_disks: Vec::new(),
        drill_failed: None,
    }
}

fn failed(stored: &[&str], failed: &[&str]) -> LastBackup {
    LastBackup {
        at: at(29),
        succeeded: false,
        stored: stored.iter().map(ToString::to_string).collect(),
        failed: failed.iter().map(ToString::to_string).collect(),
        reason: Some("connection refused".into()),
    }
}

#[test]
fn ok_when_nothing_is_wrong() {
    let s = assess(&healthy());
    assert_eq!(s.level, Level::Ok);
    assert_eq!(
        s.description,
        "Backups are up to date: the last one succeeded at 2026-12-02T00:00:00Z."
    );
}

#[test]
fn error_when_the_last_backup_failed_on_every_destination() {
    let mut i = healthy();
    i.last_backup = Some(failed(&[], &["a", "b"]));
    let s = assess(&i);
    assert_eq!(s.level, Level::Error);
    assert!(
        s.description.starts_with(
            "The last backup at 2026-12-02T05:00:00Z failed on every destination: connection refused."
        ),
        "{}",
        s.description
    );
}

#[test]
fn error_when_no_backup_succeeded_within_two_periods() {
    let mut i = healthy();
    i.now = at(24 + 48 + 1);
    let s = assess(&i);
    assert_eq!(s.level, Level::Error);
    assert!(
        s.description
            .contains("more than two schedule periods (2 days) ago"),
        "{}",
        s.description
    );
    // Exactly two periods is not yet overdue (then a warning: over 1.5).
    i.now = at(24 + 48);
    assert_eq!(assess(&i).level, Level::Warning);
}

#[test]
fn a_fresh_agent_is_not_error_before_two_periods_since_it_started() {
    let mut i = healthy();
    i.last_backup = None;
    i.last_success = None;
    i.now = at(47);
    let s = assess(&i);
    assert_eq!(s.level, Level::Ok, "{}", s.description);
    assert_eq!(s.description, "No backup has run yet; none is overdue.");
    i.now = at(49);
    let s = assess(&i);
    assert_eq!(s.level, Level::Error);
    assert!(
        s.description
            .starts_with("No backup has succeeded since 2026-12-01T00:00:00Z"),
        "{}",
        s.description
    );
}

#[test]
fn no_schedule_means_no_freshness_rule() {
    let mut i = healthy();
    i.period = None;
    i.now = at(24 * 30);
    assert_eq!(assess(&i).level, Level::Ok);
}

#[test]
fn degraded_when_the_last_backup_failed_on_some_destinations() {
    let mut i = healthy();
    i.last_backup = Some(failed(&["a"], &["b"]));
    let s = assess(&i);
    assert_eq!(s.level, Level::Degraded);
    assert!(
        s.description
            .starts_with("The last backup at 2026-12-02T05:00:00Z failed on b but reached a"),
        "{}",
        s.description
    );
}

#[test]
fn degraded_when_a_restore_drill_failed() {
    let mut i = healthy();
    i.drill_failed = Some("checksum mismatch".into());
    let s = assess(&i);
    assert_eq!(s.level, Level::Degraded);
    assert!(
        s.description
            .starts_with("The last restore drill failed: checksum mismatch."),
        "{}",
        s.description
    );
}

#[test]
fn warning_when_a_disk_is_over_the_parachute_threshold() {
    let mut i = healthy();
    i.full_disks = vec![FullDisk {
        name: "persistent".into(),
        used_percent: 91,
    }];
    let s = assess(&i);
    assert_eq!(s.level, Level::Warning);
    assert!(
        s.description
            .starts_with("The persistent disk is 91% full, at or over the threshold of 80%."),
        "{}",
        s.description
    );
}

#[test]
fn warning_when_the_last_success_is_older_than_one_and_a_half_periods() {
    let mut i = healthy();
    i.now = at(24 + 37);
    let s = assess(&i);
    assert_eq!(s.level, Level::Warning);
    assert!(
        s.description
            .contains("more than 1.5 schedule periods (36 hours) ago"),
        "{}",
        s.description
    );
    i.now = at(24 + 35);
    assert_eq!(assess(&i).level, Level::Ok);
}

#[test]
fn the_worst_finding_wins_and_only_its_findings_are_described() {
    let mut i = healthy();
    i.last_backup = Some(failed(&[], &["a", "b"]));
    i.drill_failed = Some("bad".into());
    i.full_disks = vec![FullDisk {
        name: "system".into(),
        used_percent: 99,
    }];
    let s = assess(&i);
    assert_eq!(s.level, Level::Error);
    assert!(!s.description.contains("drill") && !s.description.contains("disk"));
    assert_eq!(
        [Level::Ok, Level::Warning, Level::Degraded, Level::Error].map(Level::value),
        [0, 1, 2, 3]
    );
}

#[test]
fn periods_read_in_words() {
    assert_eq!(words(Duration::hours(48)), "2 days");
    assert_eq!(words(Duration::hours(36)), "36 hours");
    assert_eq!(words(Duration::seconds(3)), "3 seconds");
    assert_eq!(words(Duration::minutes(1)), "1 minute");
}

/// Attack finding 5: the public description (`GET /health`, no token) carries no reason,
/// destination name or check output; the full description keeps them.
#[test]
fn the_public_description_has_no_reasons_or_names() {
    let mut i = healthy();
    i.last_backup = Some(LastBackup {
        reason: Some("s3 bucket bkt: cannot write p/2026/12/06/x.tar.gz".into()),
        ..failed(&["a"], &["secret-bucket-dest"])
    });
    i.drill_failed = Some("the restore check executable exited with code 4".into());
    let s = assess(&i);
    assert_eq!(s.level, Level::Degraded);
    assert!(s.description.contains("bkt") && s.description.contains("code 4"));
    assert_eq!(
        s.public,
        "The last backup at 2026-12-02T05:00:00Z failed on 1 of 2 destinations. \
         The last restore drill failed. \
         The reason is in the agent's logs and its task list (service-backup tasks CONFIG)."
    );
    i.last_backup = Some(failed(&[], &["a", "b"]));
    let s = assess(&i);
    assert_eq!(s.level, Level::Error);
    assert!(
        s.public.starts_with(
            "The last backup at 2026-12-02T05:00:00Z failed on every destination. The reason"
        ) && !s.public.contains("refused"),
        "{}",
        s.public
    );
    assert_eq!(assess(&healthy()).public, assess(&healthy()).description);
}
