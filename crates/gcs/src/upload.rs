//! Resumable uploads: the object is sent in fixed-size chunks through an upload session
//! and becomes visible only when the last chunk, the one that states the total size,
//! is accepted.
//!
//! Memory is bounded by one chunk, whatever the size of the object. A chunk is sent only
//! once the next byte has arrived, so the last chunk is never empty; an object that fits
//! in one chunk needs no session and is written with one single-request upload, atomic as
//! well. After a failed chunk the session is asked how much it kept, and the rest is sent
//! again. Aborting deletes the session; a session that is dropped expires by itself (after
//! a week on Google Cloud Storage). In neither case is anything visible.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::{Method, Response, StatusCode};
use service_backup_core::destination::Immutability;
use service_backup_core::secret::Secret;
use service_backup_core::{Error, ErrorKind, Result};

use crate::client::{Client, encode};

/// GCS accepts chunks (all but the last) in multiples of this.
pub const CHUNK_GRANULARITY: usize = 256 * 1024;
/// Time allowed to delete a session when aborting.
const ABORT_TIMEOUT: Duration = Duration::from_secs(10);

/// An object being written.
pub(crate) struct ResumableUpload {
    client: Arc<Client>,
    key: String,
    chunk_size: usize,
    /// The chunk being filled.
    buffer: BytesMut,
    /// Bytes the session has accepted so far.
    sent: u64,
    /// The session URI, once a first chunk needed one; it authorizes uploads by itself.
    session: Option<Secret>,
    /// Set once a chunk failed: the upload cannot be completed.
    failed: bool,
    /// The retention the object is written with, if any (see [`crate::retention`]).
    lock: Option<Immutability>,
}

impl ResumableUpload {
    pub fn new(
        client: Arc<Client>,
        key: String,
        chunk_size: usize,
        lock: Option<Immutability>,
    ) -> Self {
        Self {
            lock,
            client,
            key,
            chunk_size,
            buffer: BytesMut::new(),
            sent: 0,
            session: None,
            failed: false,
        }
    }

    /// Opens the upload session.
    async fn start_session(&self) -> Result<Secret> {
        let client = &self.client;
        let url = format!(
            "{}?uploadType=resumable&name={}",
            client.upload_api(&format!("/b/{}/o", encode(&client.bucket))),
            encode(&self.key)
        );
        let action = format!("start the upload of {}", self.key);
        let metadata =
            crate::retention::object_metadata(&self.key, self.lock, chrono::Utc::now()).to_string();
        client
            .retry
            .run("start resumable upload", || async {
                let response = client
                    .send(Method::POST, &url, &action, |r| {
                        r.header("content-type", "application/json; charset=UTF-8")
                            .header("x-upload-content-type", "application/octet-stream")
                            .body(metadata.clone())
                    })
                    .await?;
                let response = client.check(&action, response).await?;
                response
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .filter(|l| l.starts_with("http://") || l.starts_with("https://"))
                    .map(Secret::new)
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::Destination,
                            format!(
                                "{}: cannot {action}: the service opened no upload session",
                                client.describe()
                            ),
                        )
                    })
            })
            .await
    }

    /// Sends the buffer as the next chunk; `last` states the total size.
    async fn send_chunk(&mut self, last: bool) -> Result<()> {
        if self.session.is_none() {
            match self.start_session().await {
                Ok(s) => self.session = Some(s),
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
        let data = std::mem::take(&mut self.buffer).freeze();
        let start = self.sent;
        let total = last.then(|| start + data.len() as u64);
        let result = self.put_chunk(start, data.clone(), total).await;
        match result {
            Ok(()) => {
                self.sent = start + data.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Puts `data` at offset `start` of the session, resuming from what the session kept
    /// after a failure.
    async fn put_chunk(&self, start: u64, data: Bytes, total: Option<u64>) -> Result<()> {
        let client = &self.client;
        let session = self.session.as_ref().expect("a session was opened");
        let index = start / self.chunk_size as u64;
        let action = format!("upload chunk {index} of {}", self.key);
        let end = start + data.len() as u64;
        // What the session holds, as far as we know; unknown after a failure.
        let persisted = AtomicU64::new(start);
        let unsure = AtomicBool::new(false);
        client
            .retry
            .run("upload chunk", || async {
                if unsure.load(Ordering::SeqCst) {
                    match self.query(session, total, &action).await? {
                        Kept::Complete => return Ok(()),
                        Kept::Upto(n) => persisted.store(n, Ordering::SeqCst),
                    }
                    unsure.store(false, Ordering::SeqCst);
                }
                let from = persisted.load(Ordering::SeqCst);
                if from < start || from > end {
                    return Err(self.lost(&action));
                }
                let body = data.slice((from - start) as usize..);
                let range = match (body.is_empty(), total) {
                    (true, Some(t)) => format!("bytes */{t}"),
                    (false, Some(t)) => format!("bytes {from}-{}/{t}", end - 1),
                    (false, None) => format!("bytes {from}-{}/*", end - 1),
                    (true, None) => return Ok(()),
                };
                let answer = client
                    .send(Method::PUT, session.expose(), &action, |r| {
                        r.header("content-range", range).body(body)
                    })
                    .await;
                let response = match answer {
                    Ok(r) => r,
                    Err(e) => {
                        unsure.store(true, Ordering::SeqCst);
                        return Err(e);
                    }
                };
                match (response.status(), total) {
                    (s, Some(_)) if s == StatusCode::OK || s == StatusCode::CREATED => Ok(()),
                    (StatusCode::PERMANENT_REDIRECT, None) => {
                        let kept = kept_upto(&response).unwrap_or(start);
                        if kept >= end {
                            return Ok(());
                        }
                        // The session kept part of the chunk: send the rest.
                        persisted.store(kept, Ordering::SeqCst);
                        Err(Error::new(
                            ErrorKind::Destination,
                            format!(
                                "{}: cannot {action}: the service kept {} of its {} bytes",
                                client.describe(),
                                kept.saturating_sub(start),
                                end - start
                            ),
                        )
                        .temporary())
                    }
                    (s, _) if s == StatusCode::NOT_FOUND || s == StatusCode::GONE => {
                        Err(self.session_gone(&action, s))
                    }
                    (s, _) => {
                        if s.is_server_error() {
                            unsure.store(true, Ordering::SeqCst);
                        }
                        Err(self.unexpected(&action, response).await)
                    }
                }
            })
            .await
    }

    /// Asks the session how many bytes it kept.
    async fn query(&self, session: &Secret, total: Option<u64>, action: &str) -> Result<Kept> {
        let client = &self.client;
        let range = total.map_or_else(|| "bytes */*".to_string(), |t| format!("bytes */{t}"));
        let response = client
            .send(Method::PUT, session.expose(), action, |r| {
                r.header("content-range", range).body(Bytes::new())
            })
            .await?;
        match response.status() {
            StatusCode::OK | StatusCode::CREATED if total.is_some() => Ok(Kept::Complete),
            StatusCode::PERMANENT_REDIRECT => Ok(Kept::Upto(kept_upto(&response).unwrap_or(0))),
            s if s == StatusCode::NOT_FOUND || s == StatusCode::GONE => {
                Err(self.session_gone(action, s))
            }
            _ => Err(self.unexpected(action, response).await),
        }
    }

    fn lost(&self, action: &str) -> Error {
        Error::new(
            ErrorKind::Destination,
            format!(
                "{}: cannot {action}: the upload session lost data it had accepted",
                self.client.describe()
            ),
        )
        .with_hint("run the backup again")
    }

    fn session_gone(&self, action: &str, status: StatusCode) -> Error {
        Error::new(
            ErrorKind::Destination,
            format!(
                "{}: cannot {action}: the upload session no longer exists ({})",
                self.client.describe(),
                status.as_u16()
            ),
        )
        .with_hint("run the backup again")
    }

    /// Our error for an answer a session should not give (its status's usual meaning).
    async fn unexpected(&self, action: &str, response: Response) -> Error {
        self.client.refused(action, response).await
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            return Err(Error::new(
                ErrorKind::Destination,
                format!(
                    "{}: the upload of {} failed earlier and cannot go on",
                    self.client.describe(),
                    self.key
                ),
            ));
        }
        Ok(())
    }

    /// Writes an object that fits in one chunk with one request.
    async fn put_whole(&self, data: Bytes) -> Result<()> {
        let client = &self.client;
        let url = format!(
            "{}?uploadType=media&name={}",
            client.upload_api(&format!("/b/{}/o", encode(&client.bucket))),
            encode(&self.key)
        );
        let action = format!("upload {}", self.key);
        client
            .retry
            .run("upload object", || async {
                let response = client
                    .send(Method::POST, &url, &action, |r| {
                        r.header("content-type", "application/octet-stream")
                            .body(data.clone())
                    })
                    .await?;
                client.check(&action, response).await.map(|_| ())
            })
            .await
    }
}

/// What a session says it holds.
enum Kept {
    /// The object is complete.
    Complete,
    /// The bytes before this offset.
    Upto(u64),
}

/// The offset after the last byte a session kept, from its `Range: bytes=0-N` header.
fn kept_upto(response: &Response) -> Option<u64> {
    let range = response.headers().get("range")?.to_str().ok()?;
    let last = range.strip_prefix("bytes=0-")?.trim().parse::<u64>().ok()?;
    Some(last + 1)
}

#[async_trait::async_trait]
impl service_backup_core::destination::Upload for ResumableUpload {
    async fn write(&mut self, mut data: Bytes) -> Result<()> {
        self.check_usable()?;
        while !data.is_empty() {
            if self.buffer.len() == self.chunk_size {
                // More bytes follow, so this chunk is not the last.
                self.send_chunk(false).await?;
            }
            let take = (self.chunk_size - self.buffer.len()).min(data.len());
            if self.buffer.capacity() - self.buffer.len() < take {
                // Small objects stay small; the second write reserves the whole chunk.
                let room = if self.buffer.is_empty() {
                    take
                } else {
                    self.chunk_size - self.buffer.len()
                };
                self.buffer.reserve(room);
            }
            self.buffer.extend_from_slice(&data.split_to(take));
        }
        Ok(())
    }

    async fn complete(mut self: Box<Self>) -> Result<()> {
        self.check_usable()?;
        // A retained object needs metadata, which only the session's start carries.
        if self.session.is_none() && !crate::retention::is_locked(&self.key, self.lock) {
            let data = std::mem::take(&mut self.buffer).freeze();
            return self.put_whole(data).await;
        }
        self.send_chunk(true).await
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.buffer = BytesMut::new();
        if let Some(session) = self.session.take() {
            // Google answers 499 to a deleted session; an error here leaves nothing
            // visible either, as the session expires by itself.
            let deleted = tokio::time::timeout(
                ABORT_TIMEOUT,
                self.client
                    .send(Method::DELETE, session.expose(), "cancel the upload", |r| r),
            )
            .await;
            if !matches!(deleted, Ok(Ok(_))) {
                tracing::debug!(key = %self.key, "the upload session could not be deleted; it expires by itself");
            }
        }
        Ok(())
    }
}
