//! The requests a destination sends to its bucket for whole objects, each retried with the
//! destination's [`RetryPolicy`], bounded in time, and converted into our errors; the
//! bucket is created the first time a write finds it missing. Multipart uploads are in
//! [`crate::multipart`].

use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, ChecksumAlgorithm, CreateBucketConfiguration};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use service_backup_core::destination::{Immutability, ListingGuard, ObjectMeta, RetryPolicy};
use service_backup_core::{Error, ErrorKind, Result};

use crate::client::Clients;
use crate::error::{Request, convert, service_code};
use crate::settings::{DEFAULT_REGION, S3Settings, ServerSideEncryption};

/// The slowest transfer of object data still taken for progress, 128 KiB/s: a request
/// that carries `n` bytes may take `n / MIN_THROUGHPUT` seconds longer than one without.
const MIN_THROUGHPUT: f64 = 128.0 * 1024.0;

/// A bucket and the client that reaches it.
pub(crate) struct Store {
    pub(crate) client: Client,
    /// The bucket's name.
    pub bucket: String,
    region: String,
    endpoint: Option<String>,
    /// How temporary failures are retried.
    pub retry: RetryPolicy,
    pub(crate) request_timeout: Duration,
    /// The lock put on each archive and manifest written (see [`crate::lock`]).
    pub(crate) immutability: Option<Immutability>,
    /// Whether the bucket was seen with Object Lock enabled (asked once).
    pub(crate) lock_checked: tokio::sync::OnceCell<bool>,
    /// What to check when the store refuses the credentials, for hints.
    credentials: &'static str,
    /// How the store is asked to encrypt what is written.
    pub(crate) sse: Option<ServerSideEncryption>,
    /// The KMS client that checks the key of SSE-KMS, if one is named.
    pub(crate) kms: Option<aws_sdk_kms::Client>,
    /// Set once the KMS key was checked, so that only the first write pays for it.
    pub(crate) kms_checked: tokio::sync::OnceCell<()>,
}

impl Store {
    /// A store for the bucket of `settings`, reached through `clients`.
    pub fn new(clients: Clients, settings: &S3Settings) -> Self {
        Self {
            client: clients.s3,
            bucket: settings.bucket_name.clone(),
            region: settings.region().to_string(),
            endpoint: settings.endpoint_for_messages(),
            retry: settings.retry,
            request_timeout: settings.request_timeout,
            immutability: settings.immutability,
            lock_checked: tokio::sync::OnceCell::new(),
            credentials: settings.credentials.what_to_check(),
            sse: settings.server_side_encryption.clone(),
            kms: clients.kms,
            kms_checked: tokio::sync::OnceCell::new(),
        }
    }

    /// The region requests are signed for.
    pub(crate) fn region(&self) -> &str {
        &self.region
    }

    /// The endpoint named in messages, if not Amazon S3.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// What a request needs to be described in an error.
    pub(crate) fn req<'a>(&'a self, right: &'a str) -> Request<'a> {
        Request {
            bucket: &self.bucket,
            endpoint: self.endpoint.as_deref(),
            right,
            credentials: self.credentials,
        }
    }

    /// How long a request carrying `bytes` of object data may take to be answered.
    pub(crate) fn time_for(&self, bytes: usize) -> Duration {
        let transfer = Duration::from_secs_f64(bytes as f64 / MIN_THROUGHPUT);
        self.request_timeout + transfer
    }

    /// Runs one attempt of a request, failing it temporarily when the store has not
    /// answered within `limit`: a store that accepts connections and then hangs must not
    /// hang a backup.
    pub(crate) async fn within<T>(
        &self,
        limit: Duration,
        action: &str,
        attempt: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(limit, attempt).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Destination,
                format!(
                    "s3 bucket {}: cannot {action}: {} did not answer within {} s",
                    self.bucket,
                    self.endpoint.as_deref().unwrap_or("Amazon S3"),
                    limit.as_secs()
                ),
            )
            .with_hint("check the store's health and the network between this VM and the store")
            .temporary()),
        }
    }

    /// Runs a write; if the bucket is missing, creates it and runs the write again. Only
    /// then: the minimal policy of a backup user may lack the rights to look at a bucket.
    pub(crate) async fn creating_bucket<T, F, Fut>(&self, what: &str, mut write: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match self.retry.run(what, &mut write).await {
            Err(e) if service_code(&e) == Some("NoSuchBucket") => {
                self.create_bucket().await?;
                self.retry.run(what, write).await
            }
            other => other,
        }
    }

    /// Creates the bucket in the configured region; one that already exists is fine.
    async fn create_bucket(&self) -> Result<()> {
        tracing::info!(bucket = %self.bucket, region = %self.region, "creating the missing s3 bucket");
        let action = format!(
            "create the bucket, which does not exist, in {}",
            self.region
        );
        let action = action.as_str();
        let result = self
            .retry
            .run("CreateBucket", || {
                let mut request = self.client.create_bucket().bucket(&self.bucket);
                // Object Lock can only be chosen when a bucket is created (it turns on
                // versioning too).
                if self.immutability.is_some() {
                    request = request.object_lock_enabled_for_bucket(true);
                }
                // us-east-1 is the one region that refuses its own name as a constraint.
                if self.region != DEFAULT_REGION {
                    request = request.create_bucket_configuration(
                        CreateBucketConfiguration::builder()
                            .location_constraint(BucketLocationConstraint::from(
                                self.region.as_str(),
                            ))
                            .build(),
                    );
                }
                self.within(self.request_timeout, action, async move {
                    request
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| convert(&e, self.req("s3:CreateBucket"), action))
                })
            })
            .await;
        match result {
            Err(e) if service_code(&e) == Some("BucketAlreadyOwnedByYou") => Ok(()),
            Err(e) if service_code(&e) == Some("AccessDenied") => Err(e.with_hint(format!(
                "create bucket {} in {}, or grant s3:CreateBucket to these credentials",
                self.bucket, self.region
            ))),
            other => other,
        }
    }

    /// Writes a whole object at once, locked if this destination locks it.
    pub async fn put_object(&self, key: &str, data: Bytes) -> Result<()> {
        let action = format!("write {key}");
        let lock = self.lock_for(key);
        if lock.is_some() {
            self.check_object_lock().await?;
        }
        self.check_kms_key().await?;
        self.creating_bucket("PutObject", || {
            self.within(self.time_for(data.len()), &action, async {
                let mut request = self
                    .client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .body(ByteStream::from(data.clone()));
                if let Some((mode, until)) = lock.clone() {
                    // A locked write needs a checksum (or Content-MD5) to be accepted.
                    request = request
                        .object_lock_mode(mode)
                        .object_lock_retain_until_date(until)
                        .checksum_algorithm(ChecksumAlgorithm::Crc32);
                }
                self.encrypted_put(request)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| convert(&e, self.req("s3:PutObject"), &action))
            })
        })
        .await
        .map_err(|e| self.lock_refused(e))
    }

    /// Every complete object whose key starts with `prefix`, page by page.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.list_after(prefix, "").await
    }

    /// Lists the objects under a prefix whose keys sort after `start_after` (S3's
    /// `StartAfter`: the store skips the rest, so a listing of what is new costs one call).
    pub async fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectMeta>> {
        let action = format!("list the objects under {prefix:?}");
        // An empty `StartAfter` is sent as none, which some stores refuse as a value.
        let start_after = (!start_after.is_empty()).then(|| start_after.to_string());
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut guard = ListingGuard::new(format!("s3 bucket {}", self.bucket), &action);
        loop {
            let page = self
                .retry
                .run("ListObjectsV2", || {
                    self.within(self.request_timeout, &action, async {
                        self.client
                            .list_objects_v2()
                            .bucket(&self.bucket)
                            .prefix(prefix)
                            .set_start_after(start_after.clone())
                            .set_continuation_token(token.clone())
                            .send()
                            .await
                            .map_err(|e| convert(&e, self.req("s3:ListBucket"), &action))
                    })
                })
                .await?;
            guard.add(page.contents().len())?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                out.push(ObjectMeta {
                    key: key.to_string(),
                    size: object
                        .size()
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(0),
                    last_modified: object
                        .last_modified()
                        .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())),
                });
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => {
                    guard.next(next)?;
                    token = Some(next.to_string());
                }
                _ => return Ok(out),
            }
        }
    }

    /// The first objects under a prefix after `start_after`, at most `limit` (and at most
    /// S3's page of 1,000), in one call, and whether more follow.
    pub async fn list_page(
        &self,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<(Vec<ObjectMeta>, bool)> {
        let action = format!("list the objects under {prefix:?}");
        let start_after = (!start_after.is_empty()).then(|| start_after.to_string());
        let max_keys = i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000);
        let page = self
            .retry
            .run("ListObjectsV2", || {
                self.within(self.request_timeout, &action, async {
                    self.client
                        .list_objects_v2()
                        .bucket(&self.bucket)
                        .prefix(prefix)
                        .set_start_after(start_after.clone())
                        .max_keys(max_keys)
                        .send()
                        .await
                        .map_err(|e| convert(&e, self.req("s3:ListBucket"), &action))
                })
            })
            .await?;
        let objects: Vec<ObjectMeta> = page
            .contents()
            .iter()
            .filter_map(|object| {
                Some(ObjectMeta {
                    key: object.key()?.to_string(),
                    size: object
                        .size()
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(0),
                    last_modified: object
                        .last_modified()
                        .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())),
                })
            })
            .collect();
        // A page that says more follow yet holds nothing would never end.
        let more = page.is_truncated() == Some(true) && !objects.is_empty();
        Ok((objects, more))
    }

    /// Deletes an object; a missing object or bucket is fine. With immutability, every
    /// version of it (see [`crate::lock`]).
    pub async fn delete(&self, key: &str) -> Result<()> {
        if self.immutability.is_some() {
            return self.delete_versions(key).await;
        }
        let action = format!("delete {key}");
        let result = self
            .retry
            .run("DeleteObject", || {
                self.within(self.request_timeout, &action, async {
                    self.client
                        .delete_object()
                        .bucket(&self.bucket)
                        .key(key)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| convert(&e, self.req("s3:DeleteObject"), &action))
                })
            })
            .await;
        match result {
            Err(e) if matches!(service_code(&e), Some("NoSuchKey" | "NoSuchBucket")) => Ok(()),
            other => other,
        }
    }
}
