//! A store wrapper for tests that records which keys are read, how many bytes, and how
//! many listing calls are made.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use futures::StreamExt as _;

use super::{Destination, IncompleteUpload, ObjectMeta, ObjectStream, Upload};
use crate::error::Result;

/// A store that records the keys it is asked to read (whole or a range), counts the bytes
/// its reads hand out and the listing calls (each a page or a whole listing), and passes
/// every call on to the store it wraps.
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn Destination>,
    read: Mutex<Vec<String>>,
    bytes: Arc<AtomicU64>,
    lists: AtomicU64,
    /// Reads fail (for good) once the count passes this.
    cut_at: Arc<AtomicU64>,
}

impl Counting {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Destination>) -> Self {
        Self {
            inner,
            read: Mutex::default(),
            bytes: Arc::default(),
            lists: AtomicU64::new(0),
            cut_at: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }

    /// Makes every read fail, as a store lost for good, once the bytes read pass `total`
    /// (`u64::MAX`: never).
    pub fn cut_reads_at(&self, total: u64) {
        self.cut_at.store(total, Ordering::Relaxed);
    }

    /// The bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The bytes read since the last call; the count starts again from 0.
    pub fn take_bytes(&self) -> u64 {
        self.bytes.swap(0, Ordering::Relaxed)
    }

    /// The listing calls made so far (`list`, `list_after`, `list_page`).
    pub fn lists(&self) -> u64 {
        self.lists.load(Ordering::Relaxed)
    }

    fn listed(&self) {
        self.lists.fetch_add(1, Ordering::Relaxed);
    }

    /// `object`, its bytes counted as they are handed out.
    fn counted(&self, object: ObjectStream) -> ObjectStream {
        let (bytes, cut_at) = (self.bytes.clone(), self.cut_at.clone());
        ObjectStream {
            size: object.size,
            chunks: object
                .chunks
                .map(move |c| {
                    let c = c?;
                    let total = bytes.fetch_add(c.len() as u64, Ordering::Relaxed) + c.len() as u64;
                    if total > cut_at.load(Ordering::Relaxed) {
                        return Err(crate::Error::new(
                            crate::ErrorKind::Destination,
                            "the store went away (cut by the test)",
                        ));
                    }
                    Ok(c)
                })
                .boxed(),
        }
    }

    /// The keys read since the last call, in order.
    pub fn take_reads(&self) -> Vec<String> {
        std::mem::take(&mut *self.read.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn note(&self, key: &str) {
        self.read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(key.to_string());
    }
}

#[async_trait]
impl Destination for Counting {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn put_multipart(&self, key: &str) -> Result<Box<dyn Upload>> {
        self.inner.put_multipart(key).await
    }
    async fn get(&self, key: &str) -> Result<ObjectStream> {
        self.note(key);
        Ok(self.counted(self.inner.get(key).await?))
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<ObjectStream> {
        self.note(key);
        Ok(self.counted(self.inner.get_range(key, range).await?))
    }
    fn cheap_ranges(&self) -> bool {
        self.inner.cheap_ranges()
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.listed();
        self.inner.list(prefix).await
    }
    async fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectMeta>> {
        self.listed();
        self.inner.list_after(prefix, start_after).await
    }
    async fn list_page(
        &self,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<(Vec<ObjectMeta>, bool)> {
        self.listed();
        self.inner.list_page(prefix, start_after, limit).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await
    }
    async fn list_incomplete(&self, prefix: &str) -> Result<Vec<IncompleteUpload>> {
        self.inner.list_incomplete(prefix).await
    }
    async fn discard_incomplete(&self, upload: &IncompleteUpload) -> Result<()> {
        self.inner.discard_incomplete(upload).await
    }
}
