//! The retention policy: which backups to keep and which to delete, as a pure function of
//! the backups' names, with the rule that keeps each one.
//!
//! The rules mean what restic's `forget --keep-*` options mean, and a backup is kept if any
//! rule keeps it. Times come from the backup name (`YYYYMMDDTHHMMSSZ-…`, UTC), never from
//! the wall clock, so a clock set wrong cannot make a backup look old; `keep_days` counts
//! back from the newest backup, as restic's `--keep-within` does. Days, weeks (ISO) and
//! months are calendar periods in UTC.

use std::fmt;

use chrono::{DateTime, Datelike as _, Duration, NaiveDateTime, Utc};

/// How many backups to keep; `None` turns a rule off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// The newest N backups.
    pub keep_last: Option<u32>,
    /// Every backup made within N days of the newest one.
    pub keep_days: Option<u32>,
    /// The newest backup of each of the last N days that have backups.
    pub keep_daily: Option<u32>,
    /// The newest backup of each of the last N ISO weeks that have backups.
    pub keep_weekly: Option<u32>,
    /// The newest backup of each of the last N months that have backups.
    pub keep_monthly: Option<u32>,
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            ("keep_last", self.keep_last),
            ("keep_days", self.keep_days),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
            ("keep_monthly", self.keep_monthly),
        ]
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}: {v}")))
        .collect();
        write!(f, "{{{}}}", parts.join(", "))
    }
}

/// A backup the policy decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The backup's name.
    pub name: String,
    /// Whether it would pass a check: manifest complete, archive present with the
    /// manifest's size.
    pub sound: bool,
}

/// Why a backup is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// The newest backup: never deleted.
    Newest,
    /// The newest sound backup, or newer than it: never deleted.
    NewestSound,
    /// Its name carries no time: never deleted.
    UnknownTime,
    /// The newest backup this agent recorded as complete in its task database: never
    /// deleted, whatever else the destination holds.
    Recorded,
    /// Among the newest `keep_last`.
    Last,
    /// Within `keep_days` of the newest backup.
    Days,
    /// The newest of its day, among the last `keep_daily` days.
    Daily,
    /// The newest of its week, among the last `keep_weekly` weeks.
    Weekly,
    /// The newest of its month, among the last `keep_monthly` months.
    Monthly,
    /// Its manifest says the store keeps it locked until a later date (immutability).
    Locked,
}

impl Rule {
    /// The rule's name as shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Newest => "newest",
            Self::NewestSound => "newest-sound",
            Self::UnknownTime => "unknown-time",
            Self::Recorded => "newest-recorded",
            Self::Last => "keep_last",
            Self::Days => "keep_days",
            Self::Daily => "keep_daily",
            Self::Weekly => "keep_weekly",
            Self::Monthly => "keep_monthly",
            Self::Locked => "locked",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the policy decided for one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The backup's name.
    pub name: String,
    /// Its time, from the name.
    pub time: Option<DateTime<Utc>>,
    /// The rules that keep it; empty: it is deleted.
    pub kept_by: Vec<Rule>,
}

impl Decision {
    /// Whether the backup is kept.
    pub fn keep(&self) -> bool {
        !self.kept_by.is_empty()
    }

    /// The rules that keep it, as `keep_last, keep_daily`.
    pub fn reasons(&self) -> String {
        let words: Vec<&str> = self.kept_by.iter().map(|r| r.as_str()).collect();
        words.join(", ")
    }
}

/// The start time of a backup named `YYYYMMDDTHHMMSSZ-…`, or `None`.
pub fn time_of_name(name: &str) -> Option<DateTime<Utc>> {
    let stamp = name.get(..16)?;
    if name.len() > 16 && !name[16..].starts_with('-') {
        return None;
    }
    NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// The calendar period a time falls in, for the daily, weekly and monthly rules.
type Period = fn(DateTime<Utc>) -> (i32, u32, u32);

/// Decides, for each backup, whether `policy` keeps it and why; newest first.
pub fn plan(policy: &Policy, candidates: &[Candidate]) -> Vec<Decision> {
    let mut out: Vec<(Decision, bool)> = candidates
        .iter()
        .map(|c| {
            let d = Decision {
                name: c.name.clone(),
                time: time_of_name(&c.name),
                kept_by: Vec::new(),
            };
            (d, c.sound)
        })
        .collect();
    // Newest first; names break ties (they sort by time too).
    out.sort_by(|(a, _), (b, _)| (b.time, &b.name).cmp(&(a.time, &a.name)));

    for (d, _) in &mut out {
        if d.time.is_none() {
            d.kept_by.push(Rule::UnknownTime);
        }
    }
    let timed: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].0.time.is_some())
        .collect();
    if let Some(&first) = timed.first() {
        out[first].0.kept_by.push(Rule::Newest);
    }
    // Everything down to the newest sound backup stays (all of them if none is sound).
    let newest_sound = timed.iter().position(|&i| out[i].1);
    let guarded = newest_sound.map_or(timed.len(), |p| p + 1);
    for &i in &timed[..guarded] {
        if !out[i].0.kept_by.contains(&Rule::Newest) {
            out[i].0.kept_by.push(Rule::NewestSound);
        }
    }

    if let Some(n) = policy.keep_last {
        for &i in timed.iter().take(n as usize) {
            out[i].0.kept_by.push(Rule::Last);
        }
    }
    if let (Some(days), Some(&first)) = (policy.keep_days, timed.first()) {
        let newest = out[first].0.time.expect("timed");
        let since = newest - Duration::days(i64::from(days));
        for &i in &timed {
            if out[i].0.time.expect("timed") > since {
                out[i].0.kept_by.push(Rule::Days);
            }
        }
    }
    let buckets: [(Option<u32>, Rule, Period); 3] = [
        (policy.keep_daily, Rule::Daily, |t| {
            (t.year(), t.month(), t.day())
        }),
        (policy.keep_weekly, Rule::Weekly, |t| {
            let w = t.iso_week();
            (w.year(), w.week(), 0)
        }),
        (policy.keep_monthly, Rule::Monthly, |t| {
            (t.year(), t.month(), 0)
        }),
    ];
    for (count, rule, bucket) in buckets {
        let Some(count) = count else { continue };
        let mut last = None;
        let mut kept = 0;
        for &i in &timed {
            if kept >= count {
                break;
            }
            let b = bucket(out[i].0.time.expect("timed"));
            if last != Some(b) {
                last = Some(b);
                kept += 1;
                out[i].0.kept_by.push(rule);
            }
        }
    }
    out.into_iter()
        .map(|(mut d, _)| {
            d.kept_by.sort();
            d.kept_by.dedup();
            d
        })
        .collect()
}

#[cfg(test)]
mod tests;
