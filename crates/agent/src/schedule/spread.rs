//! Spreading a fleet's backups: `cron_jitter` and `backup_window`, and the offset each
//! instance takes within them.
//!
//! The offset is the first 8 bytes of the SHA-256 of the instance id, as a fraction of the
//! span, in whole seconds: stable from day to day and from one build to the next (unlike
//! Rust's randomized hasher), and uniform over a fleet.
//!
//! - `cron_jitter: D`: each fire time of the schedule, plus the offset within `[0, D)`.
//! - `backup_window: "HH:MM-HH:MM"`: the schedule chooses the days, the window the time:
//!   on each day (in the schedule's time zone) that the schedule fires, the backup runs at
//!   the window's start plus the offset within the window's length, past midnight when the
//!   window crosses it. The schedule's own time of day is not used.

use chrono::{
    DateTime, LocalResult, NaiveDate, NaiveTime, TimeDelta, TimeZone, Timelike as _, Utc,
};
use sha2::{Digest as _, Sha256};
use std::fmt::Write as _;

use super::{Kind, Schedule, Zone};

/// How the backups of a fleet are spread so that they do not all start at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    /// `cron_jitter`: each fire time is delayed by the instance's offset within this span.
    Jitter(TimeDelta),
    /// `backup_window`: each day the schedule fires, the backup runs within this window.
    Window(Window),
}

/// A daily window of local times, such as `22:00-06:00` (it may cross midnight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    start: NaiveTime,
    end: NaiveTime,
}

impl Window {
    /// Parses `HH:MM-HH:MM`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Window, String> {
        let invalid =
            |why: &str| format!("\"{text}\" is not a window such as \"22:00-06:00\": {why}");
        let Some((start, end)) = text.split_once('-') else {
            return Err(invalid("the start and the end are separated by '-'"));
        };
        let time = |part: &str| {
            let part = part.trim();
            let ok = part.len() == 5 && part.as_bytes()[2] == b':';
            ok.then(|| NaiveTime::parse_from_str(part, "%H:%M").ok())
                .flatten()
                .ok_or_else(|| {
                    invalid(&format!(
                        "\"{part}\" is not a time of day HH:MM (00:00 to 23:59)"
                    ))
                })
        };
        let window = Window {
            start: time(start)?,
            end: time(end)?,
        };
        if window.start == window.end {
            return Err(invalid("it is empty: the start and the end are the same"));
        }
        Ok(window)
    }

    /// How long the window lasts.
    pub fn length(&self) -> TimeDelta {
        let length = self.end - self.start;
        if length > TimeDelta::zero() {
            length
        } else {
            length + TimeDelta::days(1)
        }
    }

    /// The window's start on `date` in `zone`; a start that falls in a daylight-saving gap
    /// is taken at the first instant after it.
    fn start_on<Tz: TimeZone>(&self, zone: &Tz, date: NaiveDate) -> Option<DateTime<Utc>> {
        let local = date.and_time(self.start);
        let resolved = match zone.from_local_datetime(&local) {
            LocalResult::None => zone
                .from_local_datetime(&(local + TimeDelta::hours(1)))
                .earliest()
                .map(|t| t.with_minute(0).unwrap_or(t)),
            other => other.earliest(),
        };
        resolved.map(|t| t.with_timezone(&Utc))
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }
}

impl Spread {
    /// The span the offsets fall in.
    pub fn span(&self) -> TimeDelta {
        match self {
            Spread::Jitter(span) => *span,
            Spread::Window(window) => window.length(),
        }
    }

    /// Refuses a spread that cannot apply to `schedule`; the error is one line.
    pub fn check(&self, schedule: &Schedule, from: DateTime<Utc>) -> Result<(), String> {
        let Kind::Cron { .. } = schedule.kind else {
            return Err(format!(
                "{} needs a calendar schedule, not \"{}\": @every already counts from each \
                 agent's own start",
                self.key(),
                schedule.expression()
            ));
        };
        let fires = schedule.sample(from);
        match self {
            Spread::Jitter(span) => {
                let shortest = fires.windows(2).map(|w| w[1] - w[0]).min();
                match shortest {
                    Some(gap) if *span > gap => Err(format!(
                        "cron_jitter {} is longer than the shortest time between two runs of \
                         cron_schedule \"{}\" ({}): a backup would start after the next one is \
                         due; use at most {}",
                        go_duration(*span),
                        schedule.expression(),
                        go_duration(gap),
                        go_duration(gap)
                    )),
                    _ => Ok(()),
                }
            }
            Spread::Window(_) => {
                let twice = fires
                    .windows(2)
                    .any(|w| schedule.local_date(w[0]) == schedule.local_date(w[1]));
                if twice {
                    Err(format!(
                        "backup_window needs a cron_schedule that fires at most once a day (the \
                         window replaces its time of day), and \"{}\" fires more often",
                        schedule.expression()
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    fn key(&self) -> &'static str {
        match self {
            Spread::Jitter(_) => "cron_jitter",
            Spread::Window(_) => "backup_window",
        }
    }
}

/// The offset of `instance_id` within `span`: whole seconds in `[0, span)`.
pub fn offset_within(span: TimeDelta, instance_id: &str) -> TimeDelta {
    let digest = Sha256::digest(instance_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let fraction = u128::from(u64::from_be_bytes(first));
    let seconds = u128::try_from(span.num_seconds().max(0)).unwrap_or(0);
    let offset = (fraction * seconds) >> 64;
    TimeDelta::seconds(i64::try_from(offset).unwrap_or(0))
}

/// A duration as Go writes it, without zero parts: `1h30m`, `45s`, `0s`.
pub fn go_duration(d: TimeDelta) -> String {
    let total = d.num_seconds();
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    let mut out = String::new();
    for (value, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if value != 0 {
            let _ = write!(out, "{value}{unit}");
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// The schedule as one instance runs it: spread by its offset, if a spread is set.
#[derive(Clone, Debug)]
pub struct Plan {
    schedule: Schedule,
    spread: Option<Spread>,
    offset: TimeDelta,
}

/// How many fire times a window's walk steps over at most (one a day: a few suffice).
const WINDOW_STEPS: usize = 16;

/// How far before an instant a window's walk starts: a backup runs at most a window's day
/// after the fire time that chose the day.
const WINDOW_REACH: TimeDelta = TimeDelta::hours(50);

impl Plan {
    /// `schedule` for the instance `instance_id`, spread by `spread`.
    pub fn new(schedule: &Schedule, spread: Option<Spread>, instance_id: &str) -> Plan {
        let offset = spread.map_or(TimeDelta::zero(), |s| offset_within(s.span(), instance_id));
        Plan {
            schedule: schedule.clone(),
            spread,
            offset,
        }
    }

    /// The instance's offset, when a spread is set.
    pub fn offset(&self) -> Option<TimeDelta> {
        self.spread.map(|_| self.offset)
    }

    /// The schedule's expression.
    pub fn expression(&self) -> &str {
        self.schedule.expression()
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.spread {
            None => self.schedule.next_after(after),
            Some(Spread::Jitter(_)) => self
                .schedule
                .next_after(after - self.offset)
                .map(|t| t + self.offset),
            Some(Spread::Window(window)) => {
                let mut fire = self.schedule.next_after(after - WINDOW_REACH)?;
                for _ in 0..WINDOW_STEPS {
                    let run = self.window_run(window, fire)?;
                    if run > after {
                        return Some(run);
                    }
                    fire = self.schedule.next_after(fire)?;
                }
                None
            }
        }
    }

    /// The newest run in `(after, until]`; for `@every`, the newest whole interval from
    /// `after` when more than one interval lies between them.
    pub fn newest_in(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let newest = match (&self.schedule.kind, self.spread) {
            (Kind::Every(interval), _) => {
                let gone = until - after;
                if gone <= *interval {
                    return None;
                }
                let seconds = interval.num_seconds().max(1);
                let whole = gone.num_seconds() / seconds;
                Some(after + TimeDelta::seconds(whole * seconds))
            }
            (Kind::Cron { .. }, None) => self.schedule.last_up_to(until),
            (Kind::Cron { .. }, Some(Spread::Jitter(_))) => self
                .schedule
                .last_up_to(until - self.offset)
                .map(|t| t + self.offset),
            (Kind::Cron { .. }, Some(Spread::Window(window))) => {
                let mut fire = self.schedule.last_up_to(until + WINDOW_REACH)?;
                let mut found = None;
                for _ in 0..WINDOW_STEPS {
                    let run = self.window_run(window, fire)?;
                    if run <= until {
                        found = Some(run);
                        break;
                    }
                    fire = self.schedule.last_up_to(fire - TimeDelta::seconds(1))?;
                }
                found
            }
        };
        newest.filter(|t| *t > after)
    }

    /// When the backup chosen by the fire time `fire` runs within `window`.
    fn window_run(&self, window: Window, fire: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let date = self.schedule.local_date(fire);
        let start = match &self.schedule.kind {
            Kind::Cron {
                zone: Zone::Named(tz),
                ..
            } => window.start_on(tz, date),
            _ => window.start_on(&chrono::Local, date),
        }?;
        Some(start + self.offset)
    }
}

#[cfg(test)]
mod tests;
