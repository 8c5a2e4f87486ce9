//! `catch_up`, `cron_jitter` and `backup_window`: what they read as, and the exact line of
//! each bad value.

use chrono::TimeDelta;

use super::super::parse;
use super::{S3_OK, problems};
use crate::schedule::{Spread, Window};

#[test]
fn catch_up_is_on_unless_turned_off_and_no_spread_is_the_default() {
    let config = parse(S3_OK).expect("valid");
    assert!(config.catch_up);
    assert_eq!(config.spread, None);
    let off = parse(&format!("{S3_OK}catch_up: false\n")).expect("valid");
    assert!(!off.catch_up);
}

#[test]
fn the_catalogs_full_refresh_is_every_6h_unless_set() {
    let config = parse(S3_OK).expect("valid");
    assert_eq!(
        config.catalog_full_refresh,
        std::time::Duration::from_hours(6)
    );
    let set = parse(&format!("{S3_OK}catalog_full_refresh: 1h30m\n")).expect("valid");
    assert_eq!(set.catalog_full_refresh, std::time::Duration::from_mins(90));
    for (value, line) in [
        (
            "1m",
            "catalog_full_refresh \"1m\" must be from 5m to 168h (a full listing of the destinations every so often)",
        ),
        (
            "200h",
            "catalog_full_refresh \"200h\" must be from 5m to 168h (a full listing of the destinations every so often)",
        ),
        (
            "6",
            "catalog_full_refresh \"6\" is not a duration such as 1h30m or 90s: a unit (ns, us, ms, s, m or h) is missing",
        ),
    ] {
        let found = problems(&format!("{S3_OK}catalog_full_refresh: '{value}'\n"));
        assert!(found.iter().any(|p| p.contains(line)), "{value}: {found:?}");
    }
}

#[test]
fn a_jitter_or_a_window_is_read() {
    let jitter = parse(&format!("{S3_OK}cron_jitter: 1h30m\n")).expect("valid");
    assert_eq!(jitter.spread, Some(Spread::Jitter(TimeDelta::minutes(90))));
    let zero = parse(&format!("{S3_OK}cron_jitter: '0'\n")).expect("valid");
    assert_eq!(zero.spread, None, "a zero jitter is none");
    let window = parse(&format!("{S3_OK}backup_window: 22:00-06:00\n")).expect("valid");
    assert_eq!(
        window.spread,
        Some(Spread::Window(Window::parse("22:00-06:00").unwrap()))
    );
}

#[test]
fn bad_values_give_the_expected_lines() {
    let with_s3 = |extra: &str| format!("{S3_OK}{extra}");
    let hourly = |extra: &str| with_s3(extra).replace("'0 3 * * *'", "'0 * * * *'");
    let table: Vec<(String, &str)> = vec![
        (
            with_s3("catch_up: sometimes\n"),
            "catch_up must be true or false, not \"sometimes\"",
        ),
        (
            with_s3("catch_up: [true]\n"),
            "catch_up must be true or false, not a list",
        ),
        (
            with_s3("cron_jitter: 30x\n"),
            "cron_jitter \"30x\" is not a duration such as 1h30m or 90s: unknown unit \"x\" (use ns, us, ms, s, m or h)",
        ),
        (
            with_s3("cron_jitter: 30\n"),
            "cron_jitter \"30\" is not a duration such as 1h30m or 90s: a unit (ns, us, ms, s, m or h) is missing",
        ),
        (
            with_s3("cron_jitter: -5m\n"),
            "cron_jitter \"-5m\" is negative",
        ),
        (
            with_s3("cron_jitter: {minutes: 5}\n"),
            "cron_jitter must be a string, not a mapping",
        ),
        (
            hourly("cron_jitter: 2h\n"),
            "cron_jitter 2h is longer than the shortest time between two runs of cron_schedule \"0 * * * *\" (1h): a backup would start after the next one is due; use at most 1h",
        ),
        (
            with_s3("cron_jitter: 25h\n").replace("'0 3 * * *'", "'CRON_TZ=UTC 0 3 * * *'"),
            "cron_jitter 25h is longer than the shortest time between two runs of cron_schedule \"CRON_TZ=UTC 0 3 * * *\" (24h): a backup would start after the next one is due; use at most 24h",
        ),
        (
            // The day clocks go forward lasts 23 hours: the shortest gap counts.
            with_s3("cron_jitter: 23h30m\n")
                .replace("'0 3 * * *'", "'CRON_TZ=Europe/Berlin 0 3 * * *'"),
            "cron_jitter 23h30m is longer than the shortest time between two runs of cron_schedule \"CRON_TZ=Europe/Berlin 0 3 * * *\" (23h): a backup would start after the next one is due; use at most 23h",
        ),
        (
            with_s3("backup_window: 22-06\n"),
            "backup_window \"22-06\" is not a window such as \"22:00-06:00\": \"22\" is not a time of day HH:MM (00:00 to 23:59)",
        ),
        (
            with_s3("backup_window: '22:00'\n"),
            "backup_window \"22:00\" is not a window such as \"22:00-06:00\": the start and the end are separated by '-'",
        ),
        (
            with_s3("backup_window: 25:00-06:00\n"),
            "backup_window \"25:00-06:00\" is not a window such as \"22:00-06:00\": \"25:00\" is not a time of day HH:MM (00:00 to 23:59)",
        ),
        (
            with_s3("backup_window: 03:00-03:00\n"),
            "backup_window \"03:00-03:00\" is not a window such as \"22:00-06:00\": it is empty: the start and the end are the same",
        ),
        (
            hourly("backup_window: 22:00-06:00\n"),
            "backup_window needs a cron_schedule that fires at most once a day (the window replaces its time of day), and \"0 * * * *\" fires more often",
        ),
        (
            with_s3("cron_jitter: 30m\nbackup_window: 22:00-06:00\n"),
            "cron_jitter and backup_window are both set: keep one (cron_jitter delays each run of cron_schedule by this instance's offset; backup_window runs it at the window's start plus the offset)",
        ),
        (
            with_s3("cron_jitter: 5m\n").replace("'0 3 * * *'", "'@every 1h'"),
            "cron_jitter needs a calendar schedule, not \"@every 1h\": @every already counts from each agent's own start",
        ),
    ];
    for (yaml, want) in table {
        assert_eq!(
            problems(&yaml),
            vec![format!("Invalid config - {want}.")],
            "{yaml}"
        );
    }
}
