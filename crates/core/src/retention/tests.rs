//! The policy against a table of what each rule keeps across days, weeks and months.

use chrono::TimeZone as _;

use super::*;

fn name(y: i32, m: u32, d: u32, h: u32) -> String {
    let t = Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap();
    format!("{}-redis-0-0000abcd", t.format("%Y%m%dT%H%M%SZ"))
}

/// Two sound backups a day, 03:00 and 15:00 UTC, from 1 January to 15 March 2026
/// (a Sunday, so the ISO week 9–15 March is whole).
fn season() -> Vec<Candidate> {
    let mut out = Vec::new();
    let mut day = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let last = chrono::NaiveDate::from_ymd_opt(2026, 3, 15).unwrap();
    while day <= last {
        for h in [3, 15] {
            out.push(Candidate {
                name: name(day.year(), day.month(), day.day(), h),
                sound: true,
            });
        }
        day = day.succ_opt().unwrap();
    }
    out
}

fn kept(policy: &Policy, candidates: &[Candidate]) -> Vec<String> {
    plan(policy, candidates)
        .into_iter()
        .filter(Decision::keep)
        .map(|d| d.name)
        .collect()
}

#[test]
fn each_rule_keeps_what_restic_keeps() {
    let all = season();
    let n = |m, d, h| name(2026, m, d, h);
    let table: Vec<(Policy, Vec<String>)> = vec![
        (
            Policy {
                keep_last: Some(3),
                ..Policy::default()
            },
            vec![n(3, 15, 15), n(3, 15, 3), n(3, 14, 15)],
        ),
        (
            // Strictly after newest - 2 days: 13 March 15:00 is out.
            Policy {
                keep_days: Some(2),
                ..Policy::default()
            },
            vec![n(3, 15, 15), n(3, 15, 3), n(3, 14, 15), n(3, 14, 3)],
        ),
        (
            Policy {
                keep_daily: Some(3),
                ..Policy::default()
            },
            vec![n(3, 15, 15), n(3, 14, 15), n(3, 13, 15)],
        ),
        (
            // ISO weeks end on Sunday: 15 March and 8 March are the last of theirs.
            Policy {
                keep_weekly: Some(3),
                ..Policy::default()
            },
            vec![n(3, 15, 15), n(3, 8, 15), n(3, 1, 15)],
        ),
        (
            Policy {
                keep_monthly: Some(3),
                ..Policy::default()
            },
            vec![n(3, 15, 15), n(2, 28, 15), n(1, 31, 15)],
        ),
        (
            // More months asked than exist: every month that has backups.
            Policy {
                keep_monthly: Some(12),
                ..Policy::default()
            },
            vec![n(3, 15, 15), n(2, 28, 15), n(1, 31, 15)],
        ),
        (
            Policy {
                keep_last: Some(1),
                keep_daily: Some(2),
                keep_weekly: Some(2),
                keep_monthly: Some(2),
                ..Policy::default()
            },
            vec![n(3, 15, 15), n(3, 14, 15), n(3, 8, 15), n(2, 28, 15)],
        ),
    ];
    for (policy, want) in table {
        assert_eq!(kept(&policy, &all), want, "{policy}");
    }
}

#[test]
fn each_kept_backup_names_every_rule_that_keeps_it() {
    let policy = Policy {
        keep_last: Some(2),
        keep_daily: Some(2),
        keep_monthly: Some(2),
        ..Policy::default()
    };
    let decisions = plan(&policy, &season());
    let reasons: Vec<(String, String)> = decisions
        .iter()
        .filter(|d| d.keep())
        .map(|d| (d.name.clone(), d.reasons()))
        .collect();
    let n = |m, d, h| name(2026, m, d, h);
    assert_eq!(
        reasons,
        [
            (
                n(3, 15, 15),
                "newest, keep_last, keep_daily, keep_monthly".to_string()
            ),
            (n(3, 15, 3), "keep_last".into()),
            (n(3, 14, 15), "keep_daily".into()),
            (n(2, 28, 15), "keep_monthly".into()),
        ]
    );
    assert_eq!(decisions.len(), season().len());
    assert_eq!(
        decisions.iter().filter(|d| !d.keep()).count(),
        season().len() - 4
    );
}

#[test]
fn days_without_backups_do_not_count() {
    let without_14th: Vec<Candidate> = season()
        .into_iter()
        .filter(|c| !c.name.starts_with("20260314"))
        .collect();
    let n = |m, d, h| name(2026, m, d, h);
    assert_eq!(
        kept(
            &Policy {
                keep_daily: Some(3),
                ..Policy::default()
            },
            &without_14th
        ),
        vec![n(3, 15, 15), n(3, 13, 15), n(3, 12, 15)]
    );
}

#[test]
fn nothing_newer_than_the_newest_sound_backup_is_deleted() {
    let mut all = season();
    // The three newest fail the check (archive missing or of the wrong size).
    let len = all.len();
    for c in &mut all[len - 3..] {
        c.sound = false;
    }
    let policy = Policy {
        keep_last: Some(1),
        ..Policy::default()
    };
    let decisions = plan(&policy, &all);
    let kept: Vec<(&str, String)> = decisions
        .iter()
        .filter(|d| d.keep())
        .map(|d| (&d.name[..11], d.reasons()))
        .collect();
    assert_eq!(
        kept,
        [
            ("20260315T15", "newest, keep_last".to_string()),
            ("20260315T03", "newest-sound".into()),
            ("20260314T15", "newest-sound".into()),
            ("20260314T03", "newest-sound".into()),
        ]
    );

    for c in &mut all {
        c.sound = false;
    }
    assert_eq!(kept_count(&policy, &all), all.len(), "none sound: all kept");
}

fn kept_count(policy: &Policy, all: &[Candidate]) -> usize {
    plan(policy, all).iter().filter(|d| d.keep()).count()
}

#[test]
fn the_newest_is_kept_whatever_the_policy_and_odd_names_are_never_deleted() {
    let mut all = season();
    all.push(Candidate {
        name: "manual-copy".into(),
        sound: true,
    });
    let policy = Policy {
        keep_last: Some(0),
        ..Policy::default()
    };
    let decisions = plan(&policy, &all);
    let kept: Vec<(&str, String)> = decisions
        .iter()
        .filter(|d| d.keep())
        .map(|d| (d.name.as_str(), d.reasons()))
        .collect();
    let newest = name(2026, 3, 15, 15);
    assert_eq!(
        kept,
        [
            (newest.as_str(), "newest".to_string()),
            ("manual-copy", "unknown-time".into()),
        ]
    );
}

#[test]
fn a_clock_set_back_a_day_deletes_nothing_it_should_keep() {
    // Daily backups, then the clock goes back a day: the next backup (really made on
    // 16 March) is named 15 March 03:30, earlier than the one before it.
    let mut all = season();
    let set_back = Utc.with_ymd_and_hms(2026, 3, 15, 3, 30, 0).unwrap();
    all.push(Candidate {
        name: format!("{}-redis-0-0000beef", set_back.format("%Y%m%dT%H%M%SZ")),
        sound: true,
    });
    let policy = Policy {
        keep_days: Some(1),
        keep_daily: Some(2),
        ..Policy::default()
    };
    let kept = kept(&policy, &all);
    // The newest name stays newest; every backup within a day of it is kept, whatever the
    // clock said when they were made, and the daily rule still has two days.
    let n = |m, d, h| name(2026, m, d, h);
    assert_eq!(
        kept,
        [
            n(3, 15, 15),
            "20260315T033000Z-redis-0-0000beef".to_string(),
            n(3, 15, 3),
            n(3, 14, 15),
        ]
    );
    // The decision depends on the names alone: the same input gives the same answer.
    assert_eq!(plan(&policy, &all), plan(&policy, &all));
}

#[test]
fn names_carry_their_time() {
    assert_eq!(
        time_of_name("20261122T031500Z-redis-0-3f9a1c2e"),
        Some(Utc.with_ymd_and_hms(2026, 11, 22, 3, 15, 0).unwrap())
    );
    for odd in [
        "",
        "manual",
        "20261122T031500Zx",
        "20261322T031500Z-a",
        "2026112T031500Z-a",
    ] {
        assert_eq!(time_of_name(odd), None, "{odd}");
    }
}
