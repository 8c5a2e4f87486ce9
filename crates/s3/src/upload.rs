//! A streamed object: S3 multipart upload with parts cut from a bounded pool of buffers.
//!
//! The size of the archive is not known in advance, so parts grow: 6 MiB for the first
//! 1,000 parts, then twice as large every 1,000 parts. That stays within S3's 10,000 parts
//! up to about 5.85 TiB (S3's object limit is 5 TiB).
//!
//! Memory is bounded in bytes, not in parts: the part being filled and the parts being
//! sent hold at most [`PART_MEMORY`] (or two parts, once parts are larger than half of
//! it); `write` waits while that memory is taken. The part buffers are allocated once and
//! reused for the whole upload: a filled part is handed to the SDK as [`Bytes`] without a
//! copy, and its buffer comes back to the pool when the SDK drops the last reference. An
//! allocation per part would leave the allocator's arenas fragmented by buffers of
//! several MiB, and the process larger than what it uses.
//!
//! Nothing is visible under the key before `CompleteMultipartUpload`, which is sent only by
//! `complete()`. A failure, `abort()` or a drop before `complete()` sends
//! `AbortMultipartUpload` (from a spawned task for a drop). An object smaller than one part
//! is sent as one `PutObject` at `complete()`, and never starts a multipart upload.
//! What a crash leaves is an incomplete multipart upload: invisible to `list`, removed by
//! a lifecycle rule or a later prune with the right to abort uploads.

use async_trait::async_trait;
use aws_sdk_s3::types::CompletedPart;
use bytes::Bytes;
use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use service_backup_core::destination::Upload;
use service_backup_core::{Error, ErrorKind, Result};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::store::Store;

/// The size of the first 1,000 parts: above S3's 5 MiB minimum, and large enough for
/// 10,000 growing parts to pass S3's 5 TiB object limit.
pub const FIRST_PART_SIZE: usize = 6 * 1024 * 1024;
/// How many parts are sent at each size before the size doubles.
pub const PARTS_PER_SIZE: usize = 1000;
/// S3's limit on the number of parts of one upload.
pub const MAX_PARTS: usize = 10_000;
/// The memory the parts of one upload may hold at once, the part being filled included:
/// one part filled while two are sent, at the first part size.
pub const PART_MEMORY: usize = 3 * FIRST_PART_SIZE;
/// The unit in which part memory is counted (every part size is a multiple of it).
const MEMORY_UNIT: usize = 1024 * 1024;

/// The size of the part at `index` (0-based).
pub fn part_size(index: usize) -> usize {
    FIRST_PART_SIZE << (index / PARTS_PER_SIZE)
}

/// The memory a pool may hold when its parts are `size` bytes: [`PART_MEMORY`], or two
/// parts (one filled, one sent) once that is more.
pub fn part_memory(size: usize) -> usize {
    PART_MEMORY.max(2 * size)
}

/// The part buffers of one upload, and the memory they may take.
struct PartPool {
    /// One permit per [`MEMORY_UNIT`] of part buffer in use (being filled or sent).
    permits: Arc<Semaphore>,
    /// Units granted to `permits` so far; grows with the part size.
    granted: usize,
    /// Buffers whose part was sent, ready to be filled again.
    free: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl PartPool {
    fn new() -> Self {
        let granted = part_memory(FIRST_PART_SIZE) / MEMORY_UNIT;
        Self {
            permits: Arc::new(Semaphore::new(granted)),
            granted,
            free: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The units a buffer of `size` bytes takes, after raising the budget for that size.
    fn units_for(&mut self, size: usize) -> u32 {
        let wanted = part_memory(size) / MEMORY_UNIT;
        if wanted > self.granted {
            self.permits.add_permits(wanted - self.granted);
            self.granted = wanted;
        }
        u32::try_from(size / MEMORY_UNIT).expect("parts are at most 5 GiB")
    }

    /// An empty buffer of at least `size` bytes of capacity, reused when one is free.
    fn buffer(&self, size: usize, permit: OwnedSemaphorePermit) -> Part {
        let reused = {
            let mut free = self
                .free
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Buffers of a smaller part size are of no more use.
            free.retain(|b| b.capacity() >= size);
            free.pop()
        };
        Part {
            data: reused.unwrap_or_else(|| Vec::with_capacity(size)),
            free: self.free.clone(),
            _permit: permit,
        }
    }
}

/// A part buffer taken from a [`PartPool`]: it goes back to the pool, and its memory is
/// released to the budget, when dropped (when the SDK drops the last [`Bytes`] of it).
struct Part {
    data: Vec<u8>,
    free: Arc<Mutex<Vec<Vec<u8>>>>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Part {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        let mut data = std::mem::take(&mut self.data);
        data.clear();
        // Pushed before the permit is released, so that whoever gets it finds the buffer.
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(data);
    }
}

/// An object being written to a bucket.
pub(crate) struct S3Upload {
    store: Arc<Store>,
    key: String,
    /// The part buffers and their memory budget.
    pool: PartPool,
    /// The part being filled, if one was started.
    buffer: Option<Part>,
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
            pool: PartPool::new(),
            buffer: None,
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

    /// Hands the filled buffer to a sending task, starting the multipart upload first if
    /// needed.
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
        let upload_id = if let Some(id) = &self.upload_id {
            id.clone()
        } else {
            let id = self.store.create_multipart(&self.key).await?;
            self.upload_id = Some(id.clone());
            id
        };
        let Some(part) = self.buffer.take() else {
            return Ok(());
        };
        let body = Bytes::from_owner(part);
        self.parts_sent += 1;
        let number = i32::try_from(self.parts_sent).expect("at most 10,000 parts");
        let store = self.store.clone();
        let key = self.key.clone();
        // In the run's span, so that a part's retries are logged with its backup_guid.
        self.in_flight.push(tokio::spawn(
            async move { store.upload_part(&key, &upload_id, number, body).await }
                .in_current_span(),
        ));
        Ok(())
    }

    /// A buffer for the next part, waiting while the parts being sent hold the memory;
    /// a part that failed meanwhile fails this.
    async fn next_buffer(&mut self, size: usize) -> Result<Part> {
        let units = self.pool.units_for(size);
        loop {
            // Parts already sent: note them, and fail now if one failed.
            while let Some(Some(done)) = self.in_flight.next().now_or_never() {
                self.note(done)?;
            }
            if let Ok(permit) = self.pool.permits.clone().try_acquire_many_owned(units) {
                return Ok(self.pool.buffer(size, permit));
            }
            if self.in_flight.is_empty() {
                // Only parts still held by the SDK after their request ended: they are
                // about to come back.
                let permit = self
                    .pool
                    .permits
                    .clone()
                    .acquire_many_owned(units)
                    .await
                    .expect("the pool's semaphore is never closed");
                return Ok(self.pool.buffer(size, permit));
            }
            self.collect_one().await?;
        }
    }

    /// Waits for one part being sent.
    async fn collect_one(&mut self) -> Result<()> {
        match self.in_flight.next().await {
            None => Ok(()),
            Some(done) => self.note(done),
        }
    }

    /// Records a part whose sending task ended, or returns why it failed.
    fn note(
        &mut self,
        done: std::result::Result<Result<CompletedPart>, tokio::task::JoinError>,
    ) -> Result<()> {
        match done {
            Ok(Ok(part)) => {
                self.sent.push(part);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(Error::new(
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
            let body = self
                .buffer
                .take()
                .map_or_else(Bytes::new, Bytes::from_owner);
            return self.store.put_object(&self.key, body).await;
        };
        if self.buffer.as_ref().is_some_and(|b| !b.data.is_empty()) {
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
        self.buffer = None;
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
            let mut part = match self.buffer.take() {
                Some(part) => part,
                None => match self.next_buffer(size).await {
                    Ok(part) => part,
                    Err(e) => return Err(self.fail(e).await),
                },
            };
            let take = (size - part.data.len()).min(data.len());
            part.data.extend_from_slice(&data.split_to(take));
            let full = part.data.len() == size;
            self.buffer = Some(part);
            if full && let Err(e) = self.send_part().await {
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
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.abort_multipart(&key, &upload_id).await {
                    tracing::warn!(error = %e, "an incomplete s3 multipart upload was left behind");
                }
            });
        } else {
            tracing::warn!(
                bucket = %self.store.bucket,
                key = %key,
                "an incomplete s3 multipart upload was left behind: no runtime to abort it"
            );
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
        assert_eq!(part_size(0), 6 * 1024 * 1024);
        assert_eq!(part_size(999), 6 * 1024 * 1024);
        assert_eq!(part_size(1000), 12 * 1024 * 1024);
        // An ordinary archive (under 5.8 GiB) never needs parts over 6 MiB.
        assert_eq!(sizes[..1000].iter().sum::<u64>(), 6000 * MIB);
    }

    #[test]
    fn part_buffers_are_reused_and_their_memory_bounded() {
        let mut pool = PartPool::new();
        let units = pool.units_for(FIRST_PART_SIZE);
        let take = |pool: &PartPool| {
            pool.permits
                .clone()
                .try_acquire_many_owned(units)
                .ok()
                .map(|p| pool.buffer(FIRST_PART_SIZE, p))
        };
        let mut parts: Vec<Part> = (0..3).map(|_| take(&pool).unwrap()).collect();
        // Three parts of 6 MiB are all the memory there is.
        assert!(take(&pool).is_none());
        let mut part = parts.pop().unwrap();
        part.data.extend_from_slice(&[7; 1024]);
        let address = part.data.as_ptr();
        let sent = Bytes::from_owner(part);
        let copy = sent.clone();
        drop(sent);
        // Still held by the SDK: neither memory nor buffer is back.
        assert!(take(&pool).is_none());
        assert_eq!(&copy[..3], &[7, 7, 7]);
        drop(copy);
        let again = take(&pool).expect("the memory of a sent part comes back");
        assert_eq!(again.data.as_ptr(), address, "the buffer is reused");
        assert!(again.data.is_empty() && again.data.capacity() >= FIRST_PART_SIZE);

        // Larger parts raise the budget to two of them, and smaller buffers are not reused.
        drop((again, parts));
        let units = pool.units_for(4 * FIRST_PART_SIZE);
        assert_eq!(pool.granted, 8 * FIRST_PART_SIZE / MEMORY_UNIT);
        let big = pool.permits.clone().try_acquire_many_owned(units).unwrap();
        let big = pool.buffer(4 * FIRST_PART_SIZE, big);
        assert!(big.data.capacity() >= 4 * FIRST_PART_SIZE);
        assert!(pool.permits.clone().try_acquire_many_owned(units).is_ok());
    }
}
