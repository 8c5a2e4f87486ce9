//! The multipart upload requests: start, send a part, complete, abort, and find the uploads
//! that were never completed nor aborted. Each is retried, bounded in time and converted
//! like the requests of [`crate::store`].

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use service_backup_core::{Error, ErrorKind, Result};

use crate::error::{convert, service_code};
use crate::store::Store;

/// How many times the usual time limit completing an upload may take: S3 can take minutes
/// to assemble thousands of parts.
const COMPLETE_TIME_FACTOR: u32 = 5;

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

impl Store {
    /// Starts a multipart upload, locked if this destination locks `key`, and returns its
    /// id.
    pub async fn create_multipart(&self, key: &str) -> Result<String> {
        let action = format!("start uploading {key}");
        let lock = self.lock_for(key);
        if lock.is_some() {
            self.check_object_lock().await?;
        }
        self.check_kms_key().await?;
        let out = self
            .creating_bucket("CreateMultipartUpload", || {
                self.within(self.time_for(0), &action, async {
                    let (mode, until) = lock.clone().unzip();
                    let request = self
                        .client
                        .create_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .checksum_algorithm(ChecksumAlgorithm::Crc32)
                        .set_object_lock_mode(mode)
                        .set_object_lock_retain_until_date(until);
                    self.encrypted_multipart(request)
                        .send()
                        .await
                        .map_err(|e| convert(&e, self.req("s3:PutObject"), &action))
                })
            })
            .await
            .map_err(|e| self.lock_refused(e))?;
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

    /// Uploads one part; the returned part carries the checksum the client computed, which
    /// completing the upload needs.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        data: Bytes,
    ) -> Result<CompletedPart> {
        let action = format!("upload part {number} of {key}");
        let out = self
            .retry
            .run("UploadPart", || {
                self.within(self.time_for(data.len()), &action, async {
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
                        .map_err(|e| convert(&e, self.req("s3:PutObject"), &action))
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
        let action = format!("complete the upload of {key}");
        let action = action.as_str();
        let parts = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        let limit = self.time_for(0) * COMPLETE_TIME_FACTOR;
        let mut attempts = 0;
        self.retry
            .run("CompleteMultipartUpload", || {
                attempts += 1;
                let retried = attempts > 1;
                let parts = parts.clone();
                self.within(limit, action, async move {
                    let sent = self
                        .client
                        .complete_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .multipart_upload(parts)
                        .send()
                        .await;
                    match sent {
                        Ok(_) => Ok(()),
                        Err(e) => {
                            let err = convert(&e, self.req("s3:PutObject"), action);
                            // An earlier attempt whose answer was lost completed it.
                            if retried && service_code(&err) == Some("NoSuchUpload") {
                                Ok(())
                            } else {
                                Err(err)
                            }
                        }
                    }
                })
            })
            .await
    }

    /// Discards a multipart upload and its parts; one already gone is fine.
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        let action = format!("abort the incomplete upload of {key}");
        let result = self
            .retry
            .run("AbortMultipartUpload", || {
                self.within(self.time_for(0), &action, async {
                    self.client
                        .abort_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| convert(&e, self.req("s3:AbortMultipartUpload"), &action))
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
        let action = format!("list the incomplete uploads under {prefix:?}");
        let mut out = Vec::new();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .retry
                .run("ListMultipartUploads", || {
                    self.within(self.time_for(0), &action, async {
                        self.client
                            .list_multipart_uploads()
                            .bucket(&self.bucket)
                            .prefix(prefix)
                            .set_key_marker(markers.0.clone())
                            .set_upload_id_marker(markers.1.clone())
                            .send()
                            .await
                            .map_err(|e| {
                                convert(&e, self.req("s3:ListBucketMultipartUploads"), &action)
                            })
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
}
