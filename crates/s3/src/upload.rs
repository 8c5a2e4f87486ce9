//! A streamed object: S3 multipart upload with parts cut from a bounded buffer.
//!
//! The size of the archive is not known in advance, so parts grow: 8 MiB for the first
//! 1,000 parts, then twice as large every 1,000 parts. That stays within S3's 10,000 parts
//! up to about 7.8 TiB (S3's object limit is 5 TiB) while memory stays at a few times
//! 8 MiB for any archive under 7.8 GiB: the part being filled, and at most
//! [`PARTS_IN_FLIGHT`] parts being sent; `write` waits when both are busy.
//!
//! Nothing is visible under the key before `CompleteMultipartUpload`, which is sent only by
//! `complete()`. A failure, `abort()` or a drop before `complete()` sends
//! `AbortMultipartUpload` (from a spawned task for a drop). An object smaller than one part
//! is sent as one `PutObject` at `complete()`, and never starts a multipart upload.
//! What a crash leaves is an incomplete multipart upload: invisible to `list`, removed by
//! a lifecycle rule or a later prune with the right to abort uploads.

use async_trait::async_trait;
use aws_sdk_s3::types::CompletedPart;
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use service_backup_core::destination::Upload;
use service_backup_core::{Error, ErrorKind, Result};
use std::sync::Arc;
use tokio::task::JoinHandle;

use crate::store::Store;

/// The size of the first 1,000 parts.
pub const FIRST_PART_SIZE: usize = 8 * 1024 * 1024;
/// How many parts are sent at each size before the size doubles.
pub const PARTS_PER_SIZE: usize = 1000;
/// S3's limit on the number of parts of one upload.
pub const MAX_PARTS: usize = 10_000;
/// How many parts are sent at the same time.
pub const PARTS_IN_FLIGHT: usize = 2;

/// The size of the part at `index` (0-based).
pub fn part_size(index: usize) -> usize {
    FIRST_PART_SIZE << (index / PARTS_PER_SIZE)
}

/// An object being written to a bucket.
pub(crate) struct S3Upload {
    store: Arc<Store>,
    key: String,
    /// The part being filled.
    buffer: BytesMut,
    /// Parts handed to a sending task so far.
    parts_sent: usize,
    /// The multipart upload, once the first part is full.
    upload_id: Option<String>,
    in_flight: FuturesUnordered<JoinHandle<Result<CompletedPart>>>,
    sent: Vec<CompletedPart>,
    /// Completed, aborted, or abandoned after a failure: nothing more to do or undo.
    closed: bool,
}

impl S3Upload {
    /// A new upload of `key`; nothing is sent until a part is full or `complete()`.
    pub fn new(store: Arc<Store>, key: &str) -> Self {
        Self {
            store,
            key: key.to_string(),
            buffer: BytesMut::new(),
            parts_sent: 0,
            upload_id: None,
            in_flight: FuturesUnordered::new(),
            sent: Vec::new(),
            closed: false,
        }
    }

    fn ensure_open(&self) -> Result<()> {
        if self.closed {
            return Err(Error::new(
                ErrorKind::Destination,
                format!(
                    "s3 bucket {}: the upload of {} was already completed or abandoned",
                    self.store.bucket, self.key
                ),
            ));
        }
        Ok(())
    }

    /// Hands the buffer to a sending task, starting the multipart upload first if needed
    /// and waiting while [`PARTS_IN_FLIGHT`] parts are being sent.
    async fn send_part(&mut self) -> Result<()> {
        if self.parts_sent >= MAX_PARTS {
            return Err(Error::new(
                ErrorKind::Destination,
                format!(
                    "s3 bucket {}: {} is larger than S3 allows in {MAX_PARTS} parts",
                    self.store.bucket, self.key
                ),
            ));
        }
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self.store.create_multipart(&self.key).await?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.collect_one().await?;
        }
        let body = self.buffer.split().freeze();
        self.parts_sent += 1;
        let number = i32::try_from(self.parts_sent).expect("at most 10,000 parts");
        let store = self.store.clone();
        let key = self.key.clone();
        self.in_flight.push(tokio::spawn(async move {
            store.upload_part(&key, &upload_id, number, body).await
        }));
        Ok(())
    }

    /// Waits for one part being sent.
    async fn collect_one(&mut self) -> Result<()> {
        match self.in_flight.next().await {
            None => Ok(()),
            Some(Ok(Ok(part))) => {
                self.sent.push(part);
                Ok(())
            }
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(Error::new(
                ErrorKind::Destination,
                format!(
                    "s3 bucket {}: sending a part of {} stopped: {e}",
                    self.store.bucket, self.key
                ),
            )),
        }
    }

    async fn finish(&mut self) -> Result<()> {
        let Some(upload_id) = self.upload_id.clone() else {
            let body = self.buffer.split().freeze();
            return self.store.put_object(&self.key, body).await;
        };
        if !self.buffer.is_empty() {
            self.send_part().await?;
        }
        while !self.in_flight.is_empty() {
            self.collect_one().await?;
        }
        let mut parts = std::mem::take(&mut self.sent);
        parts.sort_by_key(|p| p.part_number);
        self.store
            .complete_multipart(&self.key, &upload_id, parts)
            .await
    }

    /// Stops the parts being sent and aborts the multipart upload, if one was started.
    async fn discard(&mut self) -> Result<()> {
        self.closed = true;
        self.buffer = BytesMut::new();
        for task in &self.in_flight {
            task.abort();
        }
        self.in_flight.clear();
        match self.upload_id.take() {
            Some(id) => self.store.abort_multipart(&self.key, &id).await,
            None => Ok(()),
        }
    }

    /// `discard`, logging a failure to abort: `err`, the failure that caused it, is what
    /// the caller reports.
    async fn fail(&mut self, err: Error) -> Error {
        if let Err(abort) = self.discard().await {
            tracing::warn!(error = %abort, "an incomplete s3 multipart upload was left behind");
        }
        err
    }
}

#[async_trait]
impl Upload for S3Upload {
    async fn write(&mut self, mut data: Bytes) -> Result<()> {
        self.ensure_open()?;
        while !data.is_empty() {
            let size = part_size(self.parts_sent);
            if self.buffer.capacity() < size {
                self.buffer.reserve(size - self.buffer.len());
            }
            let take = (size - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data.split_to(take));
            if self.buffer.len() == size
                && let Err(e) = self.send_part().await
            {
                return Err(self.fail(e).await);
            }
        }
        Ok(())
    }

    async fn complete(mut self: Box<Self>) -> Result<()> {
        self.ensure_open()?;
        match self.finish().await {
            Ok(()) => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(self.fail(e).await),
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.discard().await
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        for task in &self.in_flight {
            task.abort();
        }
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        // A drop cannot wait: abort from a task. If the runtime is gone, or the abort
        // fails, the incomplete upload stays, invisible, until a lifecycle rule or a prune
        // removes it.
        let store = self.store.clone();
        let key = std::mem::take(&mut self.key);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = store.abort_multipart(&key, &upload_id).await {
                        tracing::warn!(error = %e, "an incomplete s3 multipart upload was left behind");
                    }
                });
            }
            Err(_) => tracing::warn!(
                bucket = %self.store.bucket,
                key = %key,
                "an incomplete s3 multipart upload was left behind: no runtime to abort it"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_reach_five_tib_within_the_part_limit() {
        const MIB: u64 = 1024 * 1024;
        let sizes: Vec<u64> = (0..MAX_PARTS).map(|i| part_size(i) as u64).collect();
        assert!(sizes.iter().all(|s| (5 * MIB..=5 * 1024 * MIB).contains(s)));
        let total: u64 = sizes.iter().sum();
        assert!(total > 5 * 1024 * 1024 * MIB, "{total}");
        assert_eq!(part_size(0), 8 * 1024 * 1024);
        assert_eq!(part_size(999), 8 * 1024 * 1024);
        assert_eq!(part_size(1000), 16 * 1024 * 1024);
        // An ordinary archive (under 7.8 GiB) never needs parts over 8 MiB.
        assert_eq!(sizes[..1000].iter().sum::<u64>(), 8000 * MIB);
    }
}
