use chrono::{DateTime, NaiveTime, TimeDelta, Utc};

use super::super::{Schedule, parse_duration};
use super::{Plan, Spread, Window, go_duration, offset_within};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instants are valid RFC 3339")
        .with_timezone(&Utc)
}

fn schedule(expr: &str) -> Schedule {
    Schedule::parse(expr).expect("test schedules are valid")
}

fn window(text: &str) -> Window {
    Window::parse(text).expect("test windows are valid")
}

fn ids() -> impl Iterator<Item = String> {
    (0..1_000).map(|i| format!("redis-{i}.service-instance-5d2a9c1e"))
}

#[test]
fn a_thousand_instances_spread_evenly_over_the_window() {
    let span = window("22:00-06:00").length();
    assert_eq!(span, TimeDelta::hours(8));
    let mut tenths = [0usize; 10];
    for id in ids() {
        let offset = offset_within(span, &id);
        assert!(
            offset >= TimeDelta::zero() && offset < span,
            "{id}: {offset}"
        );
        assert_eq!(
            offset,
            offset_within(span, &id),
            "the same id, the same offset"
        );
        let tenth = offset.num_seconds() * 10 / span.num_seconds();
        tenths[usize::try_from(tenth).unwrap()] += 1;
    }
    // Each tenth of the window holds between 5 % and 15 % of the instances.
    for (i, n) in tenths.iter().enumerate() {
        assert!((50..=150).contains(n), "tenth {i} holds {n}: {tenths:?}");
    }
}

#[test]
fn the_offset_is_fixed_by_the_id_alone() {
    // The hash is SHA-256, not Rust's randomized hasher: the same offset in every process
    // and every build. Pinned so that a change of the derivation is noticed (it would move
    // a whole fleet's backups).
    let span = TimeDelta::minutes(30);
    assert_eq!(
        offset_within(span, "instance-a"),
        offset_within(span, "instance-a")
    );
    assert_ne!(
        offset_within(span, "instance-a"),
        offset_within(span, "instance-b")
    );
    // 1308 s: the first 8 bytes of SHA-256("kafka-0.events") as a fraction of 1800 s.
    assert_eq!(
        offset_within(span, "kafka-0.events"),
        TimeDelta::seconds(1308)
    );
    assert_eq!(go_duration(TimeDelta::seconds(1308)), "21m48s");
    assert_eq!(offset_within(TimeDelta::zero(), "x"), TimeDelta::zero());
}

#[test]
fn a_jitter_delays_every_fire_time_by_the_same_offset() {
    let sched = schedule("CRON_TZ=UTC 0 3 * * *");
    let jitter = Spread::Jitter(TimeDelta::minutes(30));
    for id in ["a", "b", "c", "kafka-0.events"] {
        let plan = Plan::new(&sched, Some(jitter), id);
        let offset = plan.offset().expect("an offset");
        assert!(offset < TimeDelta::minutes(30));
        let mut after = at("2026-11-22T00:00:00Z");
        for day in 22..=28 {
            let next = plan.next_after(after).expect("a next run");
            let fire = at(&format!("2026-11-{day}T03:00:00Z"));
            assert_eq!(
                next,
                fire + offset,
                "{id}, day {day}: the same offset each day"
            );
            after = next;
        }
        // From just before the jittered time, the same day's run comes next.
        let fire = at("2026-11-23T03:00:00Z");
        assert_eq!(
            plan.next_after(fire + offset - TimeDelta::seconds(1)),
            Some(fire + offset)
        );
        assert_eq!(
            plan.next_after(fire + offset),
            Some(fire + TimeDelta::days(1) + offset)
        );
    }
}

#[test]
fn a_window_takes_the_days_of_the_schedule_and_its_own_time() {
    let sched = schedule("CRON_TZ=UTC 0 3 * * MON-FRI");
    let win = window("22:00-06:00");
    let mut seen = Vec::new();
    for id in ids().take(200) {
        let plan = Plan::new(&sched, Some(Spread::Window(win)), &id);
        let offset = plan.offset().unwrap();
        // Friday 2026-11-27 noon: Friday's window is next, then Monday's.
        let friday = plan.next_after(at("2026-11-27T12:00:00Z")).unwrap();
        assert_eq!(friday, at("2026-11-27T22:00:00Z") + offset, "{id}");
        assert!(
            friday < at("2026-11-28T06:00:00Z"),
            "{id}: within the window"
        );
        let monday = plan.next_after(friday).unwrap();
        assert_eq!(monday, at("2026-11-30T22:00:00Z") + offset, "{id}");
        seen.push(friday);
    }
    // Past midnight for some, before it for others.
    assert!(seen.iter().any(|t| *t >= at("2026-11-28T00:00:00Z")));
    assert!(seen.iter().any(|t| *t < at("2026-11-28T00:00:00Z")));
}

#[test]
fn a_window_follows_the_schedules_time_zone() {
    let sched = schedule("CRON_TZ=Europe/Berlin 0 3 * * *");
    let plan = Plan::new(&sched, Some(Spread::Window(window("01:00-02:00"))), "x");
    let offset = plan.offset().unwrap();
    // Berlin is UTC+1 in winter: 01:00 there is 00:00 UTC.
    assert_eq!(
        plan.next_after(at("2026-11-22T12:00:00Z")),
        Some(at("2026-11-23T00:00:00Z") + offset)
    );
}

#[test]
fn the_newest_run_in_a_stretch_of_time() {
    let daily = schedule("CRON_TZ=UTC 0 3 * * *");
    let plain = Plan::new(&daily, None, "x");
    // Stopped after the backup of the 1st, started again on the 4th at 10:00.
    assert_eq!(
        plain.newest_in(at("2026-12-01T03:00:05Z"), at("2026-12-04T10:00:00Z")),
        Some(at("2026-12-04T03:00:00Z"))
    );
    assert_eq!(
        plain.newest_in(at("2026-12-04T03:00:05Z"), at("2026-12-04T10:00:00Z")),
        None,
        "nothing fired since"
    );
    assert_eq!(
        plain.newest_in(at("2026-12-04T02:00:00Z"), at("2026-12-04T03:00:00Z")),
        Some(at("2026-12-04T03:00:00Z")),
        "the end is included"
    );

    let jittered = Plan::new(&daily, Some(Spread::Jitter(TimeDelta::hours(2))), "y");
    let offset = jittered.offset().unwrap();
    let run = at("2026-12-04T03:00:00Z") + offset;
    assert_eq!(
        jittered.newest_in(at("2026-12-01T04:00:00Z"), run),
        Some(run)
    );
    assert_eq!(
        jittered.newest_in(at("2026-12-01T04:00:00Z"), run - TimeDelta::seconds(1)),
        Some(run - TimeDelta::days(1))
    );

    let windowed = Plan::new(&daily, Some(Spread::Window(window("22:00-06:00"))), "z");
    let offset = windowed.offset().unwrap();
    let run = at("2026-12-03T22:00:00Z") + offset;
    assert_eq!(
        windowed.newest_in(at("2026-12-01T00:00:00Z"), at("2026-12-04T10:00:00Z")),
        Some(run)
    );
    assert_eq!(windowed.newest_in(run, at("2026-12-04T10:00:00Z")), None);
}

#[test]
fn every_counts_whole_intervals_from_the_last_success() {
    let plan = Plan::new(&schedule("@every 1h"), None, "x");
    let last = at("2026-12-01T03:00:00Z");
    assert_eq!(
        plan.newest_in(last, at("2026-12-01T04:00:00Z")),
        None,
        "one interval"
    );
    assert_eq!(
        plan.newest_in(last, at("2026-12-01T04:00:01Z")),
        Some(at("2026-12-01T04:00:00Z"))
    );
    assert_eq!(
        plan.newest_in(last, at("2026-12-01T06:30:00Z")),
        Some(at("2026-12-01T06:00:00Z"))
    );
}

#[test]
fn windows_parse_and_bad_ones_say_why() {
    assert_eq!(window("22:00-06:00").length(), TimeDelta::hours(8));
    assert_eq!(window("01:30-02:00").length(), TimeDelta::minutes(30));
    assert_eq!(window(" 23:59 - 00:00 ").length(), TimeDelta::minutes(1));
    assert_eq!(window("22:00-06:00").to_string(), "22:00-06:00");
    assert_eq!(
        window("01:00-02:00").start,
        NaiveTime::from_hms_opt(1, 0, 0).unwrap()
    );
    for (text, why) in [
        ("22:00", "separated by '-'"),
        ("22-06", "\"22\" is not a time of day HH:MM"),
        ("24:00-06:00", "\"24:00\" is not a time of day"),
        ("22:60-06:00", "\"22:60\" is not a time of day"),
        ("10pm-6am", "\"10pm\" is not a time of day"),
        ("03:00-03:00", "it is empty"),
    ] {
        let err = Window::parse(text).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "\"{text}\" is not a window such as \"22:00-06:00\": "
            )),
            "{err}"
        );
        assert!(err.contains(why), "{text}: {err}");
    }
}

#[test]
fn spreads_that_cannot_apply_are_refused() {
    let from = at("2026-11-22T00:00:00Z");
    let hourly = schedule("CRON_TZ=UTC 0 * * * *");
    let err = Spread::Jitter(TimeDelta::hours(2))
        .check(&hourly, from)
        .unwrap_err();
    assert_eq!(
        err,
        "cron_jitter 2h is longer than the shortest time between two runs of cron_schedule \
         \"CRON_TZ=UTC 0 * * * *\" (1h): a backup would start after the next one is due; use at most 1h"
    );
    assert!(
        Spread::Jitter(TimeDelta::hours(1))
            .check(&hourly, from)
            .is_ok()
    );
    // Two runs a day an hour apart: the shortest gap counts, not the average.
    let twice = schedule("CRON_TZ=UTC 0 3,4 * * *");
    assert!(
        Spread::Jitter(TimeDelta::minutes(90))
            .check(&twice, from)
            .is_err()
    );
    let err = Spread::Window(window("22:00-06:00"))
        .check(&twice, from)
        .unwrap_err();
    assert!(err.contains("fires at most once a day"), "{err}");
    let every = schedule("@every 1h");
    let err = Spread::Jitter(TimeDelta::minutes(5))
        .check(&every, from)
        .unwrap_err();
    assert!(
        err.starts_with("cron_jitter needs a calendar schedule, not \"@every 1h\""),
        "{err}"
    );
    assert!(
        Spread::Window(window("22:00-06:00"))
            .check(&every, from)
            .is_err()
    );
    let daily = schedule("CRON_TZ=UTC 0 3 * * MON-FRI");
    assert!(
        Spread::Window(window("22:00-06:00"))
            .check(&daily, from)
            .is_ok()
    );
    assert!(
        Spread::Jitter(TimeDelta::hours(24))
            .check(&daily, from)
            .is_ok()
    );
}

#[test]
fn durations_read_and_print_as_go_writes_them() {
    assert_eq!(parse_duration("30m"), Ok(TimeDelta::minutes(30)));
    assert_eq!(parse_duration("1h30m"), Ok(TimeDelta::minutes(90)));
    assert!(parse_duration("-5m").unwrap_err().contains("negative"));
    assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
    assert_eq!(go_duration(TimeDelta::minutes(90)), "1h30m");
    assert_eq!(go_duration(TimeDelta::seconds(3605)), "1h5s");
    assert_eq!(go_duration(TimeDelta::zero()), "0s");
}

#[test]
fn a_window_starting_in_a_daylight_saving_gap_starts_when_the_gap_ends() {
    // Berlin skips 02:00-03:00 on 2027-03-28: a 02:30 start is taken at 03:00 CEST (01:00 UTC).
    let sched = schedule("CRON_TZ=Europe/Berlin 0 12 * * *");
    let plan = Plan::new(&sched, Some(Spread::Window(window("02:30-04:30"))), "x");
    let offset = plan.offset().unwrap();
    assert_eq!(
        plan.next_after(at("2027-03-27T12:00:00Z")),
        Some(at("2027-03-28T01:00:00Z") + offset)
    );
    // The day after, 02:30 CEST is 00:30 UTC again.
    assert_eq!(
        plan.next_after(at("2027-03-28T12:00:00Z")),
        Some(at("2027-03-29T00:30:00Z") + offset)
    );
}
