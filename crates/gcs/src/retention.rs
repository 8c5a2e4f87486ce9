//! Immutability on Google Cloud Storage: object retention set at write time, in the
//! metadata of the upload (`retention: {mode, retainUntilTime}`, JSON API). A bucket the
//! agent creates is created with object retention enabled; a delete refused because an
//! object is retained (or held) is reported as [`ErrorKind::Locked`](service_backup_core::ErrorKind::Locked).

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use serde::Deserialize;
use service_backup_core::Error;
use service_backup_core::destination::{Immutability, LockMode};

use crate::client::Client;

/// The most bytes read of the answer about an object's retention.
const MAX_ANSWER: usize = 64 * 1024;

/// The JSON API's retention mode of a lock mode.
fn gcs_mode(mode: LockMode) -> &'static str {
    match mode {
        LockMode::Governance => "Unlocked",
        LockMode::Compliance => "Locked",
    }
}

/// The metadata of an upload of `key` started at `now`: its name, and its retention when
/// `lock` applies to it.
pub(crate) fn object_metadata(
    key: &str,
    lock: Option<Immutability>,
    now: DateTime<Utc>,
) -> serde_json::Value {
    match lock.filter(|_| Immutability::applies_to(key)) {
        Some(lock) => serde_json::json!({
            "name": key,
            "retention": {
                "mode": gcs_mode(lock.mode),
                "retainUntilTime": lock
                    .retain_until(now)
                    .to_rfc3339_opts(SecondsFormat::Secs, true),
            },
        }),
        None => serde_json::json!({ "name": key }),
    }
}

/// Whether an upload of `key` under `lock` carries a retention (and so needs metadata,
/// which the single-request media upload cannot carry).
pub(crate) fn is_locked(key: &str, lock: Option<Immutability>) -> bool {
    lock.is_some() && Immutability::applies_to(key)
}

/// Whether `err` (a refused delete) says that the object is retained or held.
pub(crate) fn refused_by_retention(err: &Error) -> bool {
    let text = err.message().to_ascii_lowercase();
    text.contains("(403)") && (text.contains("retention") || text.contains("hold"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectLock {
    retention: Option<Retention>,
    #[serde(default)]
    temporary_hold: bool,
    #[serde(default)]
    event_based_hold: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Retention {
    retain_until_time: Option<DateTime<Utc>>,
}

/// Until when object `key` is retained, if the service says (`None` inside: held without a
/// date); `None`: not locked, or unknown.
pub(crate) async fn locked_until(client: &Client, key: &str) -> Option<Option<DateTime<Utc>>> {
    let url = format!(
        "{}?fields=retention,temporaryHold,eventBasedHold",
        client.object_url(key)
    );
    let response = client
        .send(Method::GET, &url, "read the object's retention", |r| r)
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body = crate::http::read_limited(response, MAX_ANSWER).await.ok()?;
    let lock: ObjectLock = serde_json::from_slice(&body).ok()?;
    let until = lock
        .retention
        .and_then(|r| r.retain_until_time)
        .filter(|t| *t > Utc::now());
    match (until, lock.temporary_hold || lock.event_based_hold) {
        (Some(t), _) => Some(Some(t)),
        (None, true) => Some(None),
        (None, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_backup_core::ErrorKind;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-06T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_locked_upload_carries_its_retention_in_the_metadata() {
        let lock = Some(Immutability {
            mode: LockMode::Compliance,
            days: 7,
        });
        assert_eq!(
            object_metadata("p/2026/12/06/x.tar.gz.enc", lock, now()),
            serde_json::json!({
                "name": "p/2026/12/06/x.tar.gz.enc",
                "retention": {"mode": "Locked", "retainUntilTime": "2026-12-13T08:00:00Z"},
            })
        );
        let governance = Some(Immutability {
            mode: LockMode::Governance,
            days: 1,
        });
        assert_eq!(
            object_metadata("p/x.json", governance, now())["retention"]["mode"],
            "Unlocked"
        );
        assert!(is_locked("p/x.json", governance));
    }

    #[test]
    fn probes_and_unlocked_destinations_carry_no_retention() {
        let lock = Some(Immutability {
            mode: LockMode::Compliance,
            days: 7,
        });
        let probe = "p/service-backup-check-20261206T080000Z-probe-ab.probe";
        assert_eq!(
            object_metadata(probe, lock, now()),
            serde_json::json!({"name": probe})
        );
        assert!(!is_locked(probe, lock));
        assert_eq!(
            object_metadata("p/x.json", None, now()),
            serde_json::json!({"name": "p/x.json"})
        );
    }

    #[test]
    fn only_a_forbidden_delete_that_names_retention_is_a_lock() {
        let by_retention = Error::new(
            ErrorKind::Destination,
            "gcs bucket b: cannot delete x: the service account a is not allowed to (403): Object 'b/x' is subject to an object retention policy",
        );
        assert!(refused_by_retention(&by_retention));
        let by_iam = Error::new(
            ErrorKind::Destination,
            "gcs bucket b: cannot delete x: the service account a is not allowed to (403): a does not have storage.objects.delete access",
        );
        assert!(!refused_by_retention(&by_iam));
    }
}
