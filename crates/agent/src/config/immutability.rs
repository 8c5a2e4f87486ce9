//! `immutability:` in the `config` of an s3, gcs or azure destination: every archive and
//! manifest written locked, so that nobody can delete or overwrite them for some days.

use serde_norway::Value;
use service_backup_core::destination::{Immutability, LockMode};

use super::keys::IMMUTABILITY as KEYS;
use super::section::{Problems, Section, check_mapping, kind_of, scalar_text, shown};

/// The `immutability` of a destination's `config` section `c`; null reads as absent.
pub(super) fn read_immutability(
    c: &Section<'_>,
    path: &str,
    problems: &mut Problems,
) -> Option<Immutability> {
    let label = c.name("immutability");
    let value = super::section::untagged(c.get("immutability")?);
    let map = match value {
        Value::Null => return None,
        Value::Mapping(map) => map,
        other => {
            problems.push(format!(
                "{label} must be a mapping such as {{mode: governance, days: 30}}, not {}",
                kind_of(other)
            ));
            return None;
        }
    };
    let found = problems.len();
    let before = label.strip_suffix("immutability").unwrap_or_default();
    check_mapping(map, KEYS, before, &format!("{path}immutability."), problems);
    let text = |key: &str| {
        map.get(key)
            .map(super::section::untagged)
            .filter(|v| !v.is_null())
    };
    let mode = match text("mode") {
        None => {
            problems.push(format!(
                "{label}.mode is missing: give governance or compliance"
            ));
            None
        }
        Some(v) => {
            let mode = scalar_text(v).and_then(|t| LockMode::parse(&t));
            if mode.is_none() {
                problems.push(format!(
                    "{label}.mode must be governance or compliance, not {}",
                    shown(v)
                ));
            }
            mode
        }
    };
    let days = match text("days") {
        None => {
            problems.push(format!(
                "{label}.days is missing: give how many days each backup stays locked (1 to {})",
                Immutability::MAX_DAYS
            ));
            None
        }
        Some(v) => {
            let days = match v {
                Value::Number(_) | Value::String(_) => {
                    scalar_text(v).and_then(|t| t.trim().parse::<u32>().ok())
                }
                _ => None,
            }
            .filter(|d| (1..=Immutability::MAX_DAYS).contains(d));
            if days.is_none() {
                problems.push(format!(
                    "{label}.days must be a whole number of days from 1 to {}, not {}",
                    Immutability::MAX_DAYS,
                    shown(v)
                ));
            }
            days
        }
    };
    if problems.len() > found {
        return None;
    }
    Some(Immutability {
        mode: mode?,
        days: days?,
    })
}
