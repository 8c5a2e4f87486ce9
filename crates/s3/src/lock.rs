//! Immutability on S3: Object Lock. The bucket is created with Object Lock enabled when the
//! agent creates it; each archive and manifest is written with a lock mode and a
//! retain-until date; a bucket without Object Lock is refused before the first write,
//! never written to unlocked. With immutability a delete removes the object's versions one
//! by one (a plain delete only hides a versioned object behind a delete marker), and one
//! refused because a version is locked is reported as [`ErrorKind::Locked`].

use aws_sdk_s3::primitives::DateTime as SdkDateTime;
use aws_sdk_s3::types::{ObjectLockEnabled, ObjectLockLegalHoldStatus, ObjectLockMode};
use chrono::{DateTime, Utc};
use service_backup_core::destination::{Immutability, LockMode};
use service_backup_core::{Error, ErrorKind, Result};

use crate::error::{convert, service_code};
use crate::store::Store;

/// The lock headers of one object write: mode and retain-until date.
pub(crate) type ObjectLock = (ObjectLockMode, SdkDateTime);

/// The S3 mode of a lock mode.
pub(crate) fn s3_mode(mode: LockMode) -> ObjectLockMode {
    match mode {
        LockMode::Governance => ObjectLockMode::Governance,
        LockMode::Compliance => ObjectLockMode::Compliance,
    }
}

/// The lock of an object `key` written at `now` under `immutability`, if it is locked.
pub(crate) fn lock_of(
    immutability: Option<Immutability>,
    key: &str,
    now: DateTime<Utc>,
) -> Option<ObjectLock> {
    let lock = immutability.filter(|_| Immutability::applies_to(key))?;
    let until = lock.retain_until(now);
    Some((
        s3_mode(lock.mode),
        SdkDateTime::from_secs(until.timestamp()),
    ))
}

/// Why a bucket without Object Lock cannot take locked backups, and what to do.
fn no_object_lock(bucket: &str) -> Error {
    Error::new(
        ErrorKind::Config,
        format!(
            "s3 bucket {bucket} has no Object Lock: immutability needs a bucket created with Object Lock enabled"
        ),
    )
    .with_hint(format!(
        "name a bucket that does not exist yet, which the agent creates with Object Lock; create one with Object Lock enabled; enable Object Lock on {bucket} with aws s3api put-object-lock-configuration; or remove immutability from this destination"
    ))
}

impl Store {
    /// The lock of an object `key` written now, if this destination locks it.
    pub(crate) fn lock_for(&self, key: &str) -> Option<ObjectLock> {
        lock_of(self.immutability, key, Utc::now())
    }

    /// Refuses a bucket without Object Lock when this destination locks objects; asked once
    /// per destination (a missing bucket is created with it by the first write). Without
    /// the right to read the bucket's lock configuration, the write itself is refused by a
    /// bucket without Object Lock, and that refusal says the same.
    pub(crate) async fn check_object_lock(&self) -> Result<()> {
        if self.immutability.is_none() {
            return Ok(());
        }
        self.lock_checked
            .get_or_try_init(|| async {
                match self.object_lock_enabled().await {
                    Ok(true) => Ok(true),
                    Ok(false) => Err(no_object_lock(&self.bucket)),
                    Err(e) if service_code(&e) == Some("NoSuchBucket") => Ok(false),
                    Err(e) if service_code(&e) == Some("AccessDenied") => {
                        tracing::warn!(bucket = %self.bucket, "cannot read the bucket's Object Lock configuration (s3:GetBucketObjectLockConfiguration); the first locked write tells");
                        Ok(true)
                    }
                    Err(e) => Err(e),
                }
            })
            .await
            .map(|_| ())
    }

    /// Whether the bucket has Object Lock enabled.
    async fn object_lock_enabled(&self) -> Result<bool> {
        let action = "read the bucket's Object Lock configuration";
        let result = self
            .retry
            .run("GetObjectLockConfiguration", || {
                self.within(self.time_for(0), action, async {
                    self.client
                        .get_object_lock_configuration()
                        .bucket(&self.bucket)
                        .send()
                        .await
                        .map_err(|e| {
                            convert(&e, self.req("s3:GetBucketObjectLockConfiguration"), action)
                        })
                })
            })
            .await;
        match result {
            Ok(out) => Ok(out
                .object_lock_configuration()
                .and_then(|c| c.object_lock_enabled())
                == Some(&ObjectLockEnabled::Enabled)),
            Err(e) if service_code(&e) == Some("ObjectLockConfigurationNotFoundError") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Converts the refusal of a locked write by a bucket without Object Lock (checked
    /// before, but the check may have lacked the right) into the clear message.
    pub(crate) fn lock_refused(&self, err: Error) -> Error {
        let missing = service_code(&err) == Some("InvalidRequest")
            && err.message().contains("ObjectLockConfiguration")
            || err.message().contains("Object Lock Configuration");
        if self.immutability.is_some() && missing {
            no_object_lock(&self.bucket)
        } else {
            err
        }
    }

    /// Deletes every version of `key` (and its delete markers); a version still locked
    /// stops it with [`ErrorKind::Locked`]. A missing object is fine.
    pub(crate) async fn delete_versions(&self, key: &str) -> Result<()> {
        for version in self.versions(key).await? {
            let action = format!("delete version {version} of {key}");
            let result = self
                .retry
                .run("DeleteObject", || {
                    self.within(self.time_for(0), &action, async {
                        self.client
                            .delete_object()
                            .bucket(&self.bucket)
                            .key(key)
                            .version_id(&version)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(|e| convert(&e, self.req("s3:DeleteObjectVersion"), &action))
                    })
                })
                .await;
            match result {
                Ok(()) => {}
                Err(e) if matches!(service_code(&e), Some("NoSuchKey" | "NoSuchVersion")) => {}
                Err(e) if service_code(&e) == Some("AccessDenied") => {
                    return Err(match self.lock_of_version(key, &version).await {
                        Some(until) => Error::locked(
                            format!(
                                "s3 bucket {}: {key} is locked{}",
                                self.bucket,
                                until.map_or_else(String::new, |t| format!(
                                    " until {}",
                                    t.to_rfc3339()
                                ))
                            ),
                            until,
                        ),
                        None => e,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The version ids of `key` (delete markers included), newest first.
    async fn versions(&self, key: &str) -> Result<Vec<String>> {
        let action = format!("list the versions of {key}");
        let mut out = Vec::new();
        let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .retry
                .run("ListObjectVersions", || {
                    self.within(self.time_for(0), &action, async {
                        self.client
                            .list_object_versions()
                            .bucket(&self.bucket)
                            .prefix(key)
                            .set_key_marker(key_marker.clone())
                            .set_version_id_marker(version_marker.clone())
                            .send()
                            .await
                            .map_err(|e| convert(&e, self.req("s3:ListBucketVersions"), &action))
                    })
                })
                .await;
            let page = match page {
                Err(e) if service_code(&e) == Some("NoSuchBucket") => return Ok(out),
                other => other?,
            };
            let versions = page
                .versions()
                .iter()
                .filter(|v| v.key() == Some(key))
                .filter_map(|v| v.version_id());
            let markers = page
                .delete_markers()
                .iter()
                .filter(|m| m.key() == Some(key))
                .filter_map(|m| m.version_id());
            out.extend(versions.chain(markers).map(str::to_string));
            if page.is_truncated() != Some(true) {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
        }
    }

    /// Whether version `version` of `key` is locked (a retain-until date in the future, or
    /// a legal hold), and until when if dated; `None`: not locked, or unknown.
    async fn lock_of_version(&self, key: &str, version: &str) -> Option<Option<DateTime<Utc>>> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .version_id(version)
            .send()
            .await
            .ok()?;
        let until = head
            .object_lock_retain_until_date()
            .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), 0))
            .filter(|t| *t > Utc::now());
        let held = head.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On);
        match (until, held) {
            (Some(t), _) => Some(Some(t)),
            (None, true) => Some(None),
            (None, false) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_and_manifests_are_locked_and_probes_not() {
        let lock = Some(Immutability {
            mode: LockMode::Compliance,
            days: 2,
        });
        let now = DateTime::parse_from_rfc3339("2026-12-06T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let (mode, until) = lock_of(lock, "p/2026/12/06/x.json", now).unwrap();
        assert_eq!(mode, ObjectLockMode::Compliance);
        assert_eq!(until.secs(), now.timestamp() + 2 * 86_400);
        assert!(lock_of(lock, "p/service-backup-check-x-probe-ab.probe", now).is_none());
        assert!(lock_of(None, "p/2026/12/06/x.json", now).is_none());
    }

    #[test]
    fn the_message_of_a_bucket_without_object_lock_says_what_to_do() {
        let e = no_object_lock("dumps");
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.to_string().starts_with(
                "s3 bucket dumps has no Object Lock: immutability needs a bucket created with Object Lock enabled ("
            ),
            "{e}"
        );
    }
}
