//! The requests a destination sends to its bucket, each retried with the destination's
//! [`RetryPolicy`] and converted into our errors; the bucket is created the first time a
//! write finds it missing.

use std::future::Future;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart,
    CreateBucketConfiguration,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use service_backup_core::destination::{ObjectMeta, RetryPolicy};
use service_backup_core::{Error, ErrorKind, Result};

use crate::error::{Request, convert, service_code};
use crate::settings::{DEFAULT_REGION, S3Settings};

/// A multipart upload that was started and neither completed nor aborted (an upload cut
/// short by a crash or a lost connection): invisible, but its parts use storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompleteUpload {
    /// The key the object would have had.
    pub key: String,
    /// The upload's id.
    pub upload_id: String,
    /// When it was started, if the store says.
    pub initiated: Option<DateTime<Utc>>,
}

/// A bucket and the client that reaches it.
pub(crate) struct Store {
    client: Client,
    /// The bucket's name.
    pub bucket: String,
    region: String,
    endpoint: Option<String>,
    /// How temporary failures are retried.
    pub retry: RetryPolicy,
}

impl Store {
    /// A store for the bucket of `settings`, reached through `client`.
    pub fn new(client: Client, settings: &S3Settings) -> Self {
        Self {
            client,
            bucket: settings.bucket_name.clone(),
            region: settings.region().to_string(),
            endpoint: settings.endpoint_for_messages(),
            retry: settings.retry,
        }
    }

    /// The endpoint named in messages, if not Amazon S3.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    fn req<'a>(&'a self, right: &'a str) -> Request<'a> {
        Request {
            bucket: &self.bucket,
            endpoint: self.endpoint.as_deref(),
            right,
        }
    }

    /// Runs a write; if the bucket is missing, creates it and runs the write again. Only
    /// then: the minimal policy of a backup user may lack the rights to look at a bucket.
    async fn creating_bucket<T, F, Fut>(&self, what: &str, mut write: F) -> Result<T>
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
        let result = self
            .retry
            .run("CreateBucket", || async {
                let mut request = self.client.create_bucket().bucket(&self.bucket);
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
                request.send().await.map(|_| ()).map_err(|e| {
                    convert(
                        &e,
                        self.req("s3:CreateBucket"),
                        &format!(
                            "create the bucket, which does not exist, in {}",
                            self.region
                        ),
                    )
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

    /// Writes a whole object at once.
    pub async fn put_object(&self, key: &str, data: Bytes) -> Result<()> {
        self.creating_bucket("PutObject", || async {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(ByteStream::from(data.clone()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| convert(&e, self.req("s3:PutObject"), &format!("write {key}")))
        })
        .await
    }

    /// Starts a multipart upload and returns its id.
    pub async fn create_multipart(&self, key: &str) -> Result<String> {
        let out = self
            .creating_bucket("CreateMultipartUpload", || async {
                self.client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .send()
                    .await
                    .map_err(|e| {
                        convert(
                            &e,
                            self.req("s3:PutObject"),
                            &format!("start uploading {key}"),
                        )
                    })
            })
            .await?;
        out.upload_id.ok_or_else(|| {
            Error::new(
                ErrorKind::Destination,
                format!(
                    "s3 bucket {}: the store started an upload of {key} without an upload id",
                    self.bucket
                ),
            )
        })
    }

    /// Uploads one part; the returned part carries the checksum the client computed.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        data: Bytes,
    ) -> Result<CompletedPart> {
        let out = self
            .retry
            .run("UploadPart", || async {
                self.client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .body(ByteStream::from(data.clone()))
                    .send()
                    .await
                    .map_err(|e| {
                        convert(
                            &e,
                            self.req("s3:PutObject"),
                            &format!("upload part {number} of {key}"),
                        )
                    })
            })
            .await?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag)
            .set_checksum_crc32(out.checksum_crc32)
            .build())
    }

    /// Makes a multipart upload visible as one object.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<()> {
        let parts = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        let mut attempts = 0;
        self.retry
            .run("CompleteMultipartUpload", || {
                attempts += 1;
                let retried = attempts > 1;
                let parts = parts.clone();
                async move {
                    match self
                        .client
                        .complete_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .multipart_upload(parts)
                        .send()
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(e) => {
                            let err = convert(
                                &e,
                                self.req("s3:PutObject"),
                                &format!("complete the upload of {key}"),
                            );
                            // An earlier attempt whose answer was lost completed it.
                            if retried && service_code(&err) == Some("NoSuchUpload") {
                                Ok(())
                            } else {
                                Err(err)
                            }
                        }
                    }
                }
            })
            .await
    }

    /// Discards a multipart upload and its parts; one already gone is fine.
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        let result = self
            .retry
            .run("AbortMultipartUpload", || async {
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        convert(
                            &e,
                            self.req("s3:AbortMultipartUpload"),
                            &format!("abort the incomplete upload of {key}"),
                        )
                    })
            })
            .await;
        match result {
            Err(e) if service_code(&e) == Some("NoSuchUpload") => Ok(()),
            Err(e) => Err(e.with_hint(
                "the incomplete upload is invisible to list and restore, but its parts use storage until it is aborted: grant s3:AbortMultipartUpload, or add a lifecycle rule that aborts incomplete multipart uploads",
            )),
            Ok(()) => Ok(()),
        }
    }

    /// The multipart uploads under `prefix` that were neither completed nor aborted.
    pub async fn incomplete_uploads(&self, prefix: &str) -> Result<Vec<IncompleteUpload>> {
        let mut out = Vec::new();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .retry
                .run("ListMultipartUploads", || async {
                    self.client
                        .list_multipart_uploads()
                        .bucket(&self.bucket)
                        .prefix(prefix)
                        .set_key_marker(markers.0.clone())
                        .set_upload_id_marker(markers.1.clone())
                        .send()
                        .await
                        .map_err(|e| {
                            convert(
                                &e,
                                self.req("s3:ListBucketMultipartUploads"),
                                &format!("list the incomplete uploads under {prefix:?}"),
                            )
                        })
                })
                .await?;
            for upload in page.uploads() {
                let (Some(key), Some(upload_id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                out.push(IncompleteUpload {
                    key: key.to_string(),
                    upload_id: upload_id.to_string(),
                    initiated: upload
                        .initiated()
                        .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())),
                });
            }
            if page.is_truncated() != Some(true) {
                return Ok(out);
            }
            let next = (
                page.next_key_marker().map(str::to_string),
                page.next_upload_id_marker().map(str::to_string),
            );
            if next.0.is_none() || next == markers {
                return Ok(out);
            }
            markers = next;
        }
    }

    /// Every complete object whose key starts with `prefix`, page by page.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .retry
                .run("ListObjectsV2", || async {
                    self.client
                        .list_objects_v2()
                        .bucket(&self.bucket)
                        .prefix(prefix)
                        .set_continuation_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| {
                            convert(
                                &e,
                                self.req("s3:ListBucket"),
                                &format!("list the objects under {prefix:?}"),
                            )
                        })
                })
                .await?;
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
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// Starts reading an object: its size and body.
    pub async fn get(&self, key: &str) -> Result<(Option<u64>, ByteStream)> {
        let out = self
            .retry
            .run("GetObject", || async {
                self.client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| convert(&e, self.req("s3:GetObject"), &format!("read {key}")))
            })
            .await?;
        let size = out.content_length().and_then(|s| u64::try_from(s).ok());
        Ok((size, out.body))
    }

    /// Deletes an object; a missing object or bucket is fine.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let result = self
            .retry
            .run("DeleteObject", || async {
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| convert(&e, self.req("s3:DeleteObject"), &format!("delete {key}")))
            })
            .await;
        match result {
            Err(e) if matches!(service_code(&e), Some("NoSuchKey" | "NoSuchBucket")) => Ok(()),
            other => other,
        }
    }
}
