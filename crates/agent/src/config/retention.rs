//! `retention:`, at the top level and per destination: how many backups a prune keeps.

use serde_norway::Value;
use service_backup_core::retention::Policy;

use super::keys::RETENTION as KEYS;
use super::section::{Problems, check_mapping, kind_of, scalar_text, shown};

/// The policy in `value` (the value of a `retention` key). Messages start with `before`
/// (empty, or `s3 destination "primary": `); `path` is where the key is from the top
/// (empty, or `destinations[0].`). Null reads as absent.
pub(super) fn read_retention(
    value: Option<&Value>,
    before: &str,
    path: &str,
    problems: &mut Problems,
) -> Option<Policy> {
    let label = format!("{before}retention");
    let value = super::section::untagged(value?);
    let map = match value {
        Value::Null => return None,
        Value::Mapping(map) => map,
        other => {
            problems.push(format!(
                "{label} must be a mapping such as {{keep_last: 14, keep_daily: 7}}, not {}",
                kind_of(other)
            ));
            return None;
        }
    };
    let found = problems.len();
    check_mapping(map, KEYS, before, &format!("{path}retention."), problems);
    let mut numbers = [None; 5];
    for (key, value) in map {
        let key_text = scalar_text(key).unwrap_or_default();
        let Some(slot) = KEYS.iter().position(|k| *k == key_text) else {
            continue;
        };
        let value = super::section::untagged(value);
        if value.is_null() {
            continue;
        }
        let number = match value {
            Value::Number(_) | Value::String(_) => {
                scalar_text(value).and_then(|t| t.trim().parse::<u32>().ok())
            }
            _ => None,
        };
        match number {
            Some(n) => numbers[slot] = Some(n),
            None => problems.push(format!(
                "{label}.{key_text} must be a whole number, 0 or more, not {}",
                shown(value)
            )),
        }
    }
    if problems.len() > found {
        return None;
    }
    let [keep_last, keep_days, keep_daily, keep_weekly, keep_monthly] = numbers;
    if numbers.iter().all(|n| n.unwrap_or(0) == 0) {
        problems.push(format!(
            "{label} keeps nothing: give at least one of {} a number above 0 (or remove {where}retention to keep every backup)",
            KEYS.join(", "),
            where = if before.is_empty() { "" } else { "this destination's " }
        ));
        return None;
    }
    Some(Policy {
        keep_last,
        keep_days,
        keep_daily,
        keep_weekly,
        keep_monthly,
    })
}
