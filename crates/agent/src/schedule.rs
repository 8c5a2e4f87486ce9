//! Backup schedules in robfig/cron syntax, as the original (Go) release parsed them.
//!
//! Accepted: five fields (minute hour day-of-month month day-of-week) or six with leading
//! seconds; `*`, `?`, lists, ranges, steps (`*/N`, `N/M`, `A-B/N`) and names (`MON`, `jan`);
//! the descriptors `@yearly @annually @monthly @weekly @daily @midnight @hourly`;
//! `@every <Go duration>`; and an optional `CRON_TZ=Area/City ` or `TZ=Area/City ` prefix.
//! Without a prefix, times are the VM's local time zone.
//!
//! When both day of month and day of week are restricted, a day matches if either matches;
//! when one of them is `*` or `?`, only the other counts (robfig's rule).
//!
//! The field grammar and its messages are ours ([`field`]); croner walks the calendar to
//! the next fire time, time zones and daylight saving included. A fire time that falls in
//! a daylight-saving gap runs at the first instant after the gap (robfig skipped it).

mod duration;
mod field;
mod spread;
#[cfg(test)]
mod tests;

pub use spread::{Plan, Spread, Window, go_duration, offset_within};

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Timelike, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use field::{DAY_OF_MONTH, DAY_OF_WEEK, Field, HOUR, MINUTE, MONTH, SECOND};

/// A parsed schedule: when backups come due.
#[derive(Clone, Debug)]
pub struct Schedule {
    expression: String,
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    /// Calendar fields, evaluated in a time zone.
    Cron { cron: Box<Cron>, zone: Zone },
    /// `@every`: a fixed interval from the moment the schedule starts.
    Every(TimeDelta),
}

#[derive(Clone, Copy, Debug)]
enum Zone {
    Local,
    Named(chrono_tz::Tz),
}

const DESCRIPTORS: &[(&str, &str)] = &[
    ("@yearly", "0 0 0 1 1 *"),
    ("@annually", "0 0 0 1 1 *"),
    ("@monthly", "0 0 0 1 * *"),
    ("@weekly", "0 0 0 * * 0"),
    ("@daily", "0 0 0 * * *"),
    ("@midnight", "0 0 0 * * *"),
    ("@hourly", "0 0 * * * *"),
];

impl Schedule {
    /// Parses a robfig/cron expression; the error is a one-line reason.
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let expression = expr.trim();
        if expression.is_empty() {
            return Err("the schedule is empty".to_string());
        }
        let (zone, spec) = split_zone(expression)?;
        let kind = if spec.starts_with('@') {
            parse_descriptor(spec, zone)?
        } else {
            parse_fields(spec, zone)?
        };
        Ok(Schedule {
            expression: expression.to_string(),
            kind,
        })
    }

    /// The first fire time strictly after `after`, or `None` if there is none.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            // As robfig: the interval counts from the whole second.
            Kind::Every(interval) => after.with_nanosecond(0)?.checked_add_signed(*interval),
            Kind::Cron { cron, zone } => match zone {
                Zone::Local => next_in(cron, &after.with_timezone(&chrono::Local)),
                Zone::Named(tz) => next_in(cron, &after.with_timezone(tz)),
            },
        }
    }

    /// The expression as written (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The newest fire time at or before `at` of a calendar schedule (`None` for `@every`,
    /// whose fire times depend on when it started).
    fn last_up_to(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Kind::Cron { cron, zone } = &self.kind else {
            return None;
        };
        let found = match zone {
            Zone::Local => cron
                .find_previous_occurrence(&at.with_timezone(&chrono::Local), true)
                .map(|t| t.with_timezone(&Utc)),
            Zone::Named(tz) => cron
                .find_previous_occurrence(&at.with_timezone(tz), true)
                .map(|t| t.with_timezone(&Utc)),
        };
        found.ok()
    }

    /// The calendar date of `at` in the schedule's time zone.
    fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        match &self.kind {
            Kind::Cron {
                zone: Zone::Named(tz),
                ..
            } => at.with_timezone(tz).date_naive(),
            _ => at.with_timezone(&chrono::Local).date_naive(),
        }
    }

    /// The fire times from `from` on, enough of them to see the schedule's rhythm: up to
    /// [`SAMPLE_FIRES`], within [`SAMPLE_SPAN`] (a year and more, so that every daylight-saving
    /// change is in it).
    fn sample(&self, from: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut fires = Vec::new();
        let mut after = from;
        while fires.len() < SAMPLE_FIRES {
            let Some(next) = self.next_after(after).filter(|t| *t - from <= SAMPLE_SPAN) else {
                break;
            };
            fires.push(next);
            after = next;
        }
        fires
    }
}

/// The most fire times [`Schedule::sample`] walks.
const SAMPLE_FIRES: usize = 1_000;

/// How far ahead [`Schedule::sample`] walks.
const SAMPLE_SPAN: TimeDelta = TimeDelta::days(400);

/// Parses a Go duration (`30m`, `1h30m`, `90s`) into whole seconds; the error says what is
/// wrong with it, and a negative duration is refused.
pub fn parse_duration(text: &str) -> Result<TimeDelta, String> {
    let nanos = duration::parse_go_duration(text)?;
    if nanos < 0 {
        return Err(format!("\"{text}\" is negative"));
    }
    let seconds = i64::try_from(nanos / 1_000_000_000).unwrap_or(i64::MAX);
    TimeDelta::try_seconds(seconds).ok_or_else(|| format!("\"{text}\" is too long"))
}

fn next_in<Tz: TimeZone>(cron: &Cron, after: &DateTime<Tz>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(after, false)
        .ok()
        .map(|next| next.with_timezone(&Utc))
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

/// Splits a `CRON_TZ=` or `TZ=` prefix from the rest.
fn split_zone(expression: &str) -> Result<(Zone, &str), String> {
    let Some(prefixed) = expression
        .strip_prefix("CRON_TZ=")
        .or_else(|| expression.strip_prefix("TZ="))
    else {
        return Ok((Zone::Local, expression));
    };
    let (name, rest) = prefixed
        .split_once(char::is_whitespace)
        .unwrap_or((prefixed, ""));
    let rest = rest.trim();
    if name.is_empty() {
        return Err("the time zone prefix has no zone name, such as CRON_TZ=UTC".to_string());
    }
    if rest.is_empty() {
        return Err(format!(
            "the time zone {name} is not followed by a schedule, such as CRON_TZ={name} 0 3 * * *"
        ));
    }
    let zone = if name == "Local" {
        Zone::Local
    } else {
        Zone::Named(name.parse::<chrono_tz::Tz>().map_err(|_| {
            format!("unknown time zone \"{name}\" (use an IANA name such as UTC or Europe/Berlin)")
        })?)
    };
    Ok((zone, rest))
}

fn parse_descriptor(spec: &str, zone: Zone) -> Result<Kind, String> {
    let mut words = spec.split_whitespace();
    let word = words.next().unwrap_or_default();
    if word.eq_ignore_ascii_case("@every") {
        let rest: Vec<&str> = words.collect();
        if rest.is_empty() {
            return Err("@every needs a duration, such as @every 1h30m".to_string());
        }
        let text = rest.join(" ");
        let nanos = duration::parse_go_duration(&text)?;
        if nanos <= 0 {
            return Err(format!(
                "@every needs a positive duration, such as @every 1h30m, not {text}"
            ));
        }
        // As robfig: whole seconds, at least one.
        let seconds = i64::try_from(nanos / 1_000_000_000)
            .unwrap_or(i64::MAX)
            .max(1);
        let interval = TimeDelta::try_seconds(seconds)
            .ok_or_else(|| format!("the duration {text} is too long"))?;
        return Ok(Kind::Every(interval));
    }
    let Some((_, fields)) = DESCRIPTORS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(word))
    else {
        return Err(format!(
            "unknown descriptor \"{word}\" (use @yearly, @annually, @monthly, @weekly, @daily, \
             @midnight, @hourly or @every <duration>)"
        ));
    };
    if words.next().is_some() {
        return Err(format!("{word} takes nothing after it"));
    }
    parse_fields(fields, zone)
}

fn parse_fields(spec: &str, zone: Zone) -> Result<Kind, String> {
    let mut texts: Vec<&str> = spec.split_whitespace().collect();
    match texts.len() {
        5 => texts.insert(0, "0"),
        6 => {}
        n => return Err(format!("expected 5 or 6 fields, found {n}")),
    }
    let bounds = [&SECOND, &MINUTE, &HOUR, &DAY_OF_MONTH, &MONTH, &DAY_OF_WEEK];
    let mut fields = Vec::with_capacity(6);
    for (text, bound) in texts.iter().zip(bounds) {
        fields.push(Field::parse(text, bound)?);
    }
    check_days_exist(&fields[3], &fields[4], &fields[5])?;
    let plain: Vec<String> = fields
        .iter()
        .zip(bounds)
        .map(|(f, b)| f.to_croner(b))
        .collect();
    let cron = CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Disallowed)
        .dom_and_dow(false)
        .build()
        .parse(&plain.join(" "))
        .map_err(|e| format!("cannot evaluate the schedule: {e}"))?;
    Ok(Kind::Cron {
        cron: Box::new(cron),
        zone,
    })
}

/// Refuses a schedule that can never fire, such as `0 0 30 2 *` (robfig accepted it and
/// then never ran it).
fn check_days_exist(dom: &Field, month: &Field, dow: &Field) -> Result<(), String> {
    // When day of week is restricted and day of month is not `*`, either may match, and
    // every weekday occurs in every month.
    if dom.is_star() || !dow.is_star() {
        return Ok(());
    }
    const LONGEST: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let possible = (1..=12u32).filter(|m| month.contains(*m)).any(|m| {
        let longest = LONGEST[(m - 1) as usize];
        (1..=longest).any(|d| dom.contains(d))
    });
    if possible {
        Ok(())
    } else {
        Err("the schedule never fires: no chosen day of month occurs in the chosen months".into())
    }
}
