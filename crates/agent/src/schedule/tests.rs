use chrono::{DateTime, TimeDelta, Utc};

use super::Schedule;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instants are valid RFC 3339")
        .with_timezone(&Utc)
}

/// Sunday 2026-11-22, 03:14:15.5 UTC.
const START: &str = "2026-11-22T03:14:15.5Z";

#[test]
fn next_fire_times_from_a_fixed_instant() {
    let table = [
        ("CRON_TZ=UTC * * * * *", "2026-11-22T03:15:00Z"),
        ("CRON_TZ=UTC */5 * * * * *", "2026-11-22T03:14:20Z"),
        ("CRON_TZ=UTC 0 3 * * *", "2026-11-23T03:00:00Z"),
        ("CRON_TZ=UTC 30 2 * * MON-FRI", "2026-11-23T02:30:00Z"),
        ("CRON_TZ=UTC 0 0 1 JAN *", "2027-01-01T00:00:00Z"),
        ("CRON_TZ=UTC 15 30 2 * * *", "2026-11-23T02:30:15Z"),
        ("CRON_TZ=UTC 0 */15 * * * ?", "2026-11-22T03:15:00Z"),
        ("CRON_TZ=UTC 5/20 * * * *", "2026-11-22T03:25:00Z"),
        ("CRON_TZ=UTC 0 9-17/4 * * *", "2026-11-22T09:00:00Z"),
        ("CRON_TZ=UTC 0 0 * jan,jul sun", "2027-01-03T00:00:00Z"),
        ("CRON_TZ=UTC 0 0 29 2 *", "2028-02-29T00:00:00Z"),
        ("CRON_TZ=UTC 1,2,3 4 * * *", "2026-11-22T04:01:00Z"),
        ("TZ=UTC   0 3 * * *", "2026-11-23T03:00:00Z"),
        // Descriptors.
        ("CRON_TZ=UTC @hourly", "2026-11-22T04:00:00Z"),
        ("CRON_TZ=UTC @daily", "2026-11-23T00:00:00Z"),
        ("CRON_TZ=UTC @midnight", "2026-11-23T00:00:00Z"),
        ("CRON_TZ=UTC @weekly", "2026-11-29T00:00:00Z"),
        ("CRON_TZ=UTC @monthly", "2026-12-01T00:00:00Z"),
        ("CRON_TZ=UTC @yearly", "2027-01-01T00:00:00Z"),
        ("CRON_TZ=UTC @annually", "2027-01-01T00:00:00Z"),
        // @every counts from the whole second of the start, whatever the zone.
        ("@every 1h30m", "2026-11-22T04:44:15Z"),
        ("@every 90s", "2026-11-22T03:15:45Z"),
        ("@every 1.5h", "2026-11-22T04:44:15Z"),
        ("@every 500ms", "2026-11-22T03:14:16Z"),
        ("@every 2h45m10s", "2026-11-22T05:59:25Z"),
        ("CRON_TZ=Asia/Tokyo @every 1m", "2026-11-22T03:15:15Z"),
        // Day of month OR day of week when both are restricted (robfig).
        ("CRON_TZ=UTC 0 12 1 * MON", "2026-11-23T12:00:00Z"),
        ("CRON_TZ=UTC 0 12 22 * MON", "2026-11-22T12:00:00Z"),
        ("CRON_TZ=UTC 0 12 */2 * TUE", "2026-11-23T12:00:00Z"),
        // ... and AND when one of them is a star field (`*`, `?`, `*/1`).
        ("CRON_TZ=UTC 0 12 ? * MON", "2026-11-23T12:00:00Z"),
        ("CRON_TZ=UTC 0 12 */1 * MON", "2026-11-23T12:00:00Z"),
        ("CRON_TZ=UTC 0 12 22 * *", "2026-11-22T12:00:00Z"),
        ("CRON_TZ=UTC 0 12 1 * ?", "2026-12-01T12:00:00Z"),
        // Time zones.
        ("CRON_TZ=Europe/Berlin 0 3 * * *", "2026-11-23T02:00:00Z"),
        ("TZ=America/New_York 0 3 * * *", "2026-11-22T08:00:00Z"),
        ("CRON_TZ=Asia/Kolkata 30 9 * * *", "2026-11-22T04:00:00Z"),
        ("CRON_TZ=Australia/Sydney @monthly", "2026-11-30T13:00:00Z"),
    ];
    for (expr, want) in table {
        let schedule = Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(schedule.next_after(at(START)), Some(at(want)), "{expr}");
    }
}

#[test]
fn next_is_strictly_after() {
    let schedule = Schedule::parse("CRON_TZ=UTC 0 3 * * *").unwrap();
    let three = at("2026-11-22T03:00:00Z");
    assert_eq!(schedule.next_after(three), Some(at("2026-11-23T03:00:00Z")));
    let just_before = at("2026-11-22T02:59:59.999Z");
    assert_eq!(schedule.next_after(just_before), Some(three));
}

#[test]
fn daylight_saving_days_fire_once() {
    // Europe/Berlin springs forward at 02:00 on 2027-03-28: 02:30 does not exist that day,
    // and the backup runs at the end of the gap (03:00 CEST) instead of being skipped.
    let schedule = Schedule::parse("CRON_TZ=Europe/Berlin 30 2 * * *").unwrap();
    let next = schedule.next_after(at("2027-03-27T12:00:00Z")).unwrap();
    assert_eq!(
        next,
        at("2027-03-28T01:00:00Z"),
        "03:00 CEST, the end of the gap"
    );
    assert_eq!(schedule.next_after(next), Some(at("2027-03-29T00:30:00Z")));
    // It falls back at 03:00 on 2026-10-25: 02:30 happens twice and runs once.
    let first = schedule.next_after(at("2026-10-24T12:00:00Z")).unwrap();
    assert_eq!(first, at("2026-10-25T00:30:00Z"));
    assert_eq!(schedule.next_after(first), Some(at("2026-10-26T01:30:00Z")));
}

#[test]
fn without_a_zone_the_local_time_zone_is_used() {
    let schedule = Schedule::parse("* * * * *").unwrap();
    let now = at(START);
    let next = schedule.next_after(now).unwrap();
    assert!(next > now && next - now <= TimeDelta::seconds(60), "{next}");
    let local = Schedule::parse("CRON_TZ=Local @hourly").unwrap();
    assert!(local.next_after(now).is_some());
}

#[test]
fn invalid_expressions_say_why() {
    let table = [
        ("", "the schedule is empty"),
        ("   ", "the schedule is empty"),
        ("* * *", "expected 5 or 6 fields, found 3"),
        ("* * * * * * *", "expected 5 or 6 fields, found 7"),
        (
            "61 * * * *",
            "minute field \"61\": 61 is above the maximum 59",
        ),
        (
            "* 24 * * *",
            "hour field \"24\": 24 is above the maximum 23",
        ),
        (
            "60 * * * * *",
            "second field \"60\": 60 is above the maximum 59",
        ),
        (
            "0 0 0 * *",
            "day-of-month field \"0\": 0 is below the minimum 1",
        ),
        (
            "0 0 * 13 *",
            "month field \"13\": 13 is above the maximum 12",
        ),
        (
            "* * * * 7",
            "day-of-week field \"7\": 7 is above the maximum 6",
        ),
        (
            "* * * FOO *",
            "month field \"FOO\": \"FOO\" is not a number or a month name such as JAN",
        ),
        (
            "* * * * FUN",
            "day-of-week field \"FUN\": \"FUN\" is not a number or a day-of-week name such as SUN",
        ),
        (
            "*/0 * * * *",
            "minute field \"*/0\": the step in \"*/0\" must be a positive number",
        ),
        (
            "5-1 * * * *",
            "minute field \"5-1\": the range \"5-1\" starts after it ends",
        ),
        (
            "1-2-3 * * * *",
            "minute field \"1-2-3\": \"1-2-3\" has more than one '-'",
        ),
        (
            "*/2/3 * * * *",
            "minute field \"*/2/3\": \"*/2/3\" has more than one '/'",
        ),
        ("-5 * * * *", "minute field \"-5\": \"\" is not a number"),
        (", * * * *", "minute field \",\" matches no value"),
        (
            "0 0 L * *",
            "day-of-month field \"L\": \"L\" is not a number",
        ),
        (
            "0 0 30 2 *",
            "the schedule never fires: no chosen day of month occurs in the chosen months",
        ),
        ("@every", "@every needs a duration, such as @every 1h30m"),
        (
            "@every 0s",
            "@every needs a positive duration, such as @every 1h30m, not 0s",
        ),
        (
            "@every -5m",
            "@every needs a positive duration, such as @every 1h30m, not -5m",
        ),
        (
            "@every 5x",
            "\"5x\" is not a duration such as 1h30m or 90s: unknown unit \"x\" (use ns, us, ms, s, m or h)",
        ),
        (
            "@fortnightly",
            "unknown descriptor \"@fortnightly\" (use @yearly, @annually, @monthly, @weekly, \
             @daily, @midnight, @hourly or @every <duration>)",
        ),
        ("@daily 3", "@daily takes nothing after it"),
        (
            "CRON_TZ=Mars/Olympus * * * * *",
            "unknown time zone \"Mars/Olympus\" (use an IANA name such as UTC or Europe/Berlin)",
        ),
        (
            "CRON_TZ=UTC",
            "the time zone UTC is not followed by a schedule, such as CRON_TZ=UTC 0 3 * * *",
        ),
        (
            "TZ= * * * * *",
            "the time zone prefix has no zone name, such as CRON_TZ=UTC",
        ),
    ];
    for (expr, want) in table {
        let err = Schedule::parse(expr).expect_err(expr);
        assert_eq!(err, want, "{expr}");
        assert!(!err.contains('\n'), "{expr}: one line");
    }
}

#[test]
fn names_and_descriptors_ignore_case_and_the_original_fixture_parses() {
    for expr in [
        "0 0 * * mon-FRI",
        "0 0 * Jan-Mar *",
        "@Daily",
        "*/5 * * * * *",
    ] {
        assert!(Schedule::parse(expr).is_ok(), "{expr}");
    }
}

#[test]
fn from_str_and_display_keep_the_expression() {
    let schedule: Schedule = "  CRON_TZ=UTC 0 3 * * *  ".parse().unwrap();
    assert_eq!(schedule.to_string(), "CRON_TZ=UTC 0 3 * * *");
    assert_eq!(schedule.expression(), "CRON_TZ=UTC 0 3 * * *");
}

#[test]
fn odd_input_never_panics() {
    for expr in [
        "@",
        "@every ",
        "CRON_TZ=",
        "TZ=",
        "* * * * * \u{0}",
        "99999999999 * * * *",
        "*/99999999999 * * * *",
        "1-99999999999 * * * *",
        "\u{b5} * * * *",
        "@every 9999999999h",
        "@every .",
        "@every 1.",
        "é * * * *",
        "* * * * */7",
        "? ? ? ? ? ?",
    ] {
        let _ = Schedule::parse(expr);
    }
}
