//! The health status rules: what persists (the last backup's outcome, the last success,
//! the schedule's period, the disks, the newest restore drill) in, one status out.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// How healthy the agent is, from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// Nothing to do.
    Ok,
    /// Look soon.
    Warning,
    /// Some backups are missing somewhere.
    Degraded,
    /// No usable recent backup.
    Error,
}

impl Level {
    /// As the events and `GET /health` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warning => "WARNING",
            Self::Degraded => "DEGRADED",
            Self::Error => "ERROR",
        }
    }

    /// As the Prometheus gauge holds it: 0 (OK) to 3 (ERROR).
    pub fn value(self) -> i128 {
        match self {
            Self::Ok => 0,
            Self::Warning => 1,
            Self::Degraded => 2,
            Self::Error => 3,
        }
    }
}

/// Where the details of a failure are, for the public description.
const WHERE: &str =
    "The reason is in the agent's logs and its task list (service-backup tasks CONFIG).";

/// A status and what it means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The level.
    pub level: Level,
    /// What happened and what to do.
    pub description: String,
    /// The same without reasons, destination names or output, for the unauthenticated
    /// `GET /health`: a backup's reason may name buckets and object keys.
    pub public: String,
}

/// The newest finished backup.
#[derive(Clone, Debug, Default)]
pub struct LastBackup {
    /// When it ended.
    pub at: DateTime<Utc>,
    /// Whether every destination got it.
    pub succeeded: bool,
    /// The destinations that got it.
    pub stored: Vec<String>,
    /// The destinations that did not.
    pub failed: Vec<String>,
    /// Why it failed.
    pub reason: Option<String>,
}

/// A disk past the parachute threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FullDisk {
    /// Its name (`persistent`, `system`…).
    pub name: String,
    /// Its used share in percent.
    pub used_percent: u64,
}

/// What the status is computed from.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// Now.
    pub now: DateTime<Utc>,
    /// Since when backups were expected: the first task's creation, else the daemon's
    /// start.
    pub since: DateTime<Utc>,
    /// The newest finished backup.
    pub last_backup: Option<LastBackup>,
    /// When the newest successful backup ended.
    pub last_success: Option<DateTime<Utc>>,
    /// The schedule's period (the gap between its next two fire times); `None`: no
    /// schedule, no freshness rule.
    pub period: Option<Duration>,
    /// The parachute threshold in percent (0: off).
    pub threshold: u64,
    /// The disks past it.
    pub full_disks: Vec<FullDisk>,
    /// The reason of the newest restore drill, when it failed.
    pub drill_failed: Option<String>,
}

/// A period in words: `1 day`, `6 hours`, `90 seconds`.
fn words(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    let (n, unit) = if s >= 86_400 && s % 3600 == 0 {
        if s % 86_400 == 0 {
            (s / 86_400, "day")
        } else {
            (s / 3600, "hour")
        }
    } else if s >= 3600 && s % 3600 == 0 {
        (s / 3600, "hour")
    } else if s >= 60 && s % 60 == 0 {
        (s / 60, "minute")
    } else {
        (s, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The status of `inputs`: the worst level found, described by every finding of that
/// level.
pub fn assess(inputs: &Inputs) -> Status {
    // Each finding: its level, its description, its public description and whether that
    // leaves a reason out.
    let mut found: Vec<(Level, String, String, bool)> = Vec::new();
    if let Some(last) = inputs.last_backup.as_ref().filter(|b| !b.succeeded) {
        let why = last
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        if last.stored.is_empty() {
            found.push((
                Level::Error,
                format!(
                    "The last backup at {} failed on every destination{why}. Fix the cause and run a backup (service-backup backup CONFIG).",
                    stamp(last.at)
                ),
                format!(
                    "The last backup at {} failed on every destination.",
                    stamp(last.at)
                ),
                true,
            ));
        } else {
            found.push((
                Level::Degraded,
                format!(
                    "The last backup at {} failed on {} but reached {}{why}. Check the failed destinations (service-backup check CONFIG).",
                    stamp(last.at),
                    last.failed.join(", "),
                    last.stored.join(", ")
                ),
                format!(
                    "The last backup at {} failed on {} of {} destinations.",
                    stamp(last.at),
                    last.failed.len(),
                    last.failed.len() + last.stored.len()
                ),
                true,
            ));
        }
    }
    if let Some(period) = inputs.period.filter(|p| *p > Duration::zero()) {
        let reference = inputs.last_success.unwrap_or(inputs.since);
        let age = inputs.now - reference;
        let what = match inputs.last_success {
            Some(at) => format!("The last successful backup was at {}", stamp(at)),
            None => format!("No backup has succeeded since {}", stamp(inputs.since)),
        };
        if age > period * 2 {
            let text = format!(
                "{what}, more than two schedule periods ({}) ago. Check that the daemon runs and that backups succeed.",
                words(period * 2)
            );
            found.push((Level::Error, text.clone(), text, false));
        } else if age > period * 3 / 2 && inputs.last_success.is_some() {
            let text = format!(
                "{what}, more than 1.5 schedule periods ({}) ago. Check that the scheduled backups run.",
                words(period * 3 / 2)
            );
            found.push((Level::Warning, text.clone(), text, false));
        }
    }
    if let Some(reason) = &inputs.drill_failed {
        found.push((
            Level::Degraded,
            format!(
                "The last restore drill failed: {reason}. The newest backup may not restore; verify it (service-backup verify CONFIG) and make a new one."
            ),
            "The last restore drill failed.".to_string(),
            true,
        ));
    }
    for disk in &inputs.full_disks {
        let text = format!(
            "The {} disk is {}% full, at or over the threshold of {}%. Free space or grow the disk before backups fail.",
            disk.name, disk.used_percent, inputs.threshold
        );
        found.push((Level::Warning, text.clone(), text, false));
    }
    let level = found.iter().map(|(l, ..)| *l).max().unwrap_or(Level::Ok);
    if level == Level::Ok {
        let description = match inputs.last_success {
            Some(at) => format!(
                "Backups are up to date: the last one succeeded at {}.",
                stamp(at)
            ),
            None => "No backup has run yet; none is overdue.".to_string(),
        };
        return Status {
            level,
            public: description.clone(),
            description,
        };
    }
    let (mut description, mut public, mut hidden) = (Vec::new(), Vec::new(), false);
    for (_, d, p, h) in found.into_iter().filter(|(l, ..)| *l == level) {
        description.push(d);
        public.push(p);
        hidden |= h;
    }
    // Where the reasons are, once after the findings that keep theirs back.
    if hidden {
        public.push(WHERE.to_string());
    }
    Status {
        level,
        description: description.join(" "),
        public: public.join(" "),
    }
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests;
