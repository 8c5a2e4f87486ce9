//! Immutability: objects written locked, so that nobody (the agent's own credentials
//! included) can delete or overwrite them before a date.
//!
//! Each destination maps it to its store's feature: S3 Object Lock, GCS object retention,
//! Azure version-level immutability policies.

use std::fmt;

use chrono::{DateTime, Duration, Utc};

use crate::layout::PROBE_EXT;

/// How strictly a lock holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with a special permission may still shorten or remove the lock (S3
    /// governance mode, GCS and Azure unlocked policies).
    Governance,
    /// Nobody may shorten or remove the lock, not even the account's owner (S3 compliance
    /// mode, GCS and Azure locked policies).
    Compliance,
}

impl LockMode {
    /// The configuration's word: `governance` or `compliance`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Governance => "governance",
            Self::Compliance => "compliance",
        }
    }

    /// The mode named by `word` (any case), if it is one.
    pub fn parse(word: &str) -> Option<Self> {
        match word.trim().to_ascii_lowercase().as_str() {
            "governance" => Some(Self::Governance),
            "compliance" => Some(Self::Compliance),
            _ => None,
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A destination's `immutability`: every archive and manifest is written locked for `days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Immutability {
    /// How strictly the lock holds.
    pub mode: LockMode,
    /// How long each object stays locked after it is written, in days (1 to [`Self::MAX_DAYS`]).
    pub days: u32,
}

impl Immutability {
    /// The longest lock accepted: a hundred years.
    pub const MAX_DAYS: u32 = 36_500;

    /// Until when an object written at `now` stays locked.
    pub fn retain_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + Duration::days(i64::from(self.days))
    }

    /// Whether an object with key `key` is written locked: every object but the probes of
    /// `service-backup check`, which the check deletes again at once.
    pub fn applies_to(key: &str) -> bool {
        !key.ends_with(PROBE_EXT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_runs_for_whole_days_from_the_write() {
        let lock = Immutability {
            mode: LockMode::Compliance,
            days: 3,
        };
        let now = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            lock.retain_until(now).to_rfc3339(),
            "2026-12-09T10:00:00+00:00"
        );
    }

    #[test]
    fn modes_parse_from_their_words_only() {
        assert_eq!(LockMode::parse("Governance"), Some(LockMode::Governance));
        assert_eq!(LockMode::parse("compliance"), Some(LockMode::Compliance));
        assert_eq!(LockMode::parse("legal-hold"), None);
    }

    #[test]
    fn probes_are_not_locked() {
        assert!(!Immutability::applies_to(
            "p/service-backup-check-20261206T100000Z-probe-ab.probe"
        ));
        assert!(Immutability::applies_to("p/2026/12/06/x.tar.gz.enc"));
        assert!(Immutability::applies_to("p/2026/12/06/x.json"));
    }
}
