//! `catch_up`, `cron_jitter` and `backup_window`: when the backups of this instance run
//! beside its schedule.

use std::time::Duration;

use chrono::Utc;

use super::section::{Problems, Section};
use crate::schedule::{Schedule, Spread, Window, parse_duration};

/// Reads `catch_up` (default true) and the spread (`cron_jitter` or `backup_window`),
/// checked against `schedule` when it is valid.
pub(super) fn read(
    top: &Section<'_>,
    schedule: Option<&Schedule>,
    problems: &mut Problems,
) -> (bool, Option<Spread>) {
    let catch_up = top.flag("catch_up", true, problems);
    let jitter = top.text("cron_jitter", problems).and_then(|text| {
        let text = text.trim().to_string();
        match parse_duration(&text) {
            // A zero jitter is no jitter.
            Ok(span) if span.is_zero() => None,
            Ok(span) => Some(Spread::Jitter(span)),
            Err(why) => {
                problems.push(format!("cron_jitter {why}"));
                None
            }
        }
    });
    let window = top.text("backup_window", problems).and_then(|text| {
        Window::parse(text.trim())
            .map(Spread::Window)
            .map_err(|why| problems.push(format!("backup_window {why}")))
            .ok()
    });
    if top.has("cron_jitter") && top.has("backup_window") {
        problems.push(
            "cron_jitter and backup_window are both set: keep one (cron_jitter delays each run \
             of cron_schedule by this instance's offset; backup_window runs it at the window's \
             start plus the offset)"
                .to_string(),
        );
        return (catch_up, None);
    }
    let spread = jitter.or(window);
    if let (Some(spread), Some(schedule)) = (spread, schedule)
        && let Err(why) = spread.check(schedule, Utc::now())
    {
        problems.push(why);
    }
    (catch_up, spread)
}

/// The default of `catalog_full_refresh`.
pub const DEFAULT_FULL_REFRESH: Duration = Duration::from_hours(6);

/// The shortest `catalog_full_refresh`: a listing of a shared prefix whole costs.
pub const MIN_FULL_REFRESH: Duration = Duration::from_mins(5);

/// The longest `catalog_full_refresh`: deleted and damaged backups stay in the catalog
/// until the next full listing.
pub const MAX_FULL_REFRESH: Duration = Duration::from_hours(7 * 24);

/// Reads `catalog_full_refresh`, a duration from [`MIN_FULL_REFRESH`] to
/// [`MAX_FULL_REFRESH`] (default [`DEFAULT_FULL_REFRESH`]).
pub(super) fn full_refresh(top: &Section<'_>, problems: &mut Problems) -> Duration {
    let Some(text) = top.text("catalog_full_refresh", problems) else {
        return DEFAULT_FULL_REFRESH;
    };
    let text = text.trim().to_string();
    let every = match parse_duration(&text) {
        Ok(span) => span.to_std().unwrap_or(Duration::MAX),
        Err(why) => {
            problems.push(format!("catalog_full_refresh {why}"));
            return DEFAULT_FULL_REFRESH;
        }
    };
    if !(MIN_FULL_REFRESH..=MAX_FULL_REFRESH).contains(&every) {
        problems.push(format!(
            "catalog_full_refresh \"{text}\" must be from 5m to 168h (a full listing of the destinations every so often)"
        ));
        return DEFAULT_FULL_REFRESH;
    }
    every
}
