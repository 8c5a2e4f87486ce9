//! The restore's download: an archive read as consecutive ranges of [`RANGE_BYTES`], up to
//! [`IN_FLIGHT`] of them at once, handed on in order.
//!
//! Each range is retried alone, and a range whose answer was cut asks again only for the
//! bytes it did not get (within the [`RetryPolicy`]'s attempts and backoff): a connection lost near the end of a large
//! archive costs what was in flight, not the archive. Memory stays within
//! `(IN_FLIGHT + 2) × RANGE_BYTES` (48 MiB): the ranges being fetched or waiting their
//! turn, and at most two more pinned by slices queued for the reader.
//!
//! A store whose ranges are not cheap ([`Destination::cheap_ranges`]: some S3-compatible
//! stores read the whole object for each) is read in one stream instead, asked again from
//! its first byte not yet handed on when it is cut.
//!
//! The last range asks for one byte past the size the manifest records, so that an object
//! that grew is refused; one that shrank ends early, as a stream from the start would, and
//! the reader's size check names both sizes.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use futures::stream::BoxStream;

use crate::destination::{Destination, ObjectStream, RetryPolicy};
use crate::error::{Error, ErrorKind, Result};

/// Bytes asked per range.
pub const RANGE_BYTES: u64 = 8 * 1024 * 1024;
/// Ranges fetched at once.
pub const IN_FLIGHT: usize = 4;
/// Size of the slices a range is handed on in, so that a queue of a few slices pins few
/// ranges.
const SLICE: usize = 1024 * 1024;

/// How an object is read in ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangedRead {
    /// Bytes asked per range.
    pub range_bytes: u64,
    /// Ranges fetched at once.
    pub in_flight: usize,
    /// How a range whose read failed temporarily is asked again.
    pub retry: RetryPolicy,
}

impl Default for RangedRead {
    fn default() -> Self {
        Self {
            range_bytes: RANGE_BYTES,
            in_flight: IN_FLIGHT,
            retry: RetryPolicy::default(),
        }
    }
}

impl RangedRead {
    /// Reads `key` of `dest`, whose manifest says it holds `size` bytes, as a stream; fails
    /// as [`Destination::get`] would when the first range cannot be read (a missing object).
    pub async fn read(
        &self,
        dest: Arc<dyn Destination>,
        key: &str,
        size: u64,
    ) -> Result<ObjectStream> {
        self.read_from(dest, key, size, 0).await
    }

    /// Reads `key` of `dest` from byte `start` to its end (`size` bytes, as its manifest
    /// says), as [`Self::read`] reads it whole.
    pub async fn read_from(
        &self,
        dest: Arc<dyn Destination>,
        key: &str,
        size: u64,
        start: u64,
    ) -> Result<ObjectStream> {
        let start = start.min(size);
        let mut chunks = if dest.cheap_ranges() {
            self.in_ranges(dest, key, size, start)
        } else {
            self.in_one_stream(dest, key, size, start)
        };
        let left = Some(size - start);
        let first = match chunks.next().await {
            Some(Err(e)) => return Err(e),
            Some(first) => first,
            // Ended: not to be polled again.
            None => {
                return Ok(ObjectStream {
                    size: left,
                    chunks: futures::stream::empty().boxed(),
                });
            }
        };
        Ok(ObjectStream {
            size: left,
            chunks: futures::stream::once(std::future::ready(first))
                .chain(chunks)
                .boxed(),
        })
    }

    /// The object as ranges, several at once, handed on in slices.
    fn in_ranges(
        &self,
        dest: Arc<dyn Destination>,
        key: &str,
        size: u64,
        start: u64,
    ) -> BoxStream<'static, Result<Bytes>> {
        let step = self.range_bytes.max(1);
        let mut ranges: Vec<Range<u64>> = (0..(size - start).div_ceil(step))
            .map(|i| start + i * step..(start + (i + 1) * step).min(size))
            .collect();
        // One byte past the end, to see an object that grew; an empty object asks for it
        // alone.
        match ranges.last_mut() {
            Some(last) => last.end += 1,
            None => ranges.push(start..start + 1),
        }
        let (key, retry) = (key.to_string(), self.retry);
        futures::stream::iter(ranges)
            .map(move |range| fetch(dest.clone(), key.clone(), range, size, retry))
            .buffered(self.in_flight.max(1))
            .scan(false, |failed, item| {
                // Nothing is handed on after the first error.
                if *failed {
                    return std::future::ready(None);
                }
                *failed = item.is_err();
                std::future::ready(Some(item))
            })
            .flat_map(|item| {
                let slices: Vec<Result<Bytes>> = match item {
                    Ok(range) => (0..range.len())
                        .step_by(SLICE)
                        .map(|at| Ok(range.slice(at..(at + SLICE).min(range.len()))))
                        .collect(),
                    Err(e) => vec![Err(e)],
                };
                futures::stream::iter(slices)
            })
            .boxed()
    }

    /// The object from `start` as one stream (to one byte past `size`), asked again from
    /// its first byte not yet handed on when it fails temporarily after some progress.
    fn in_one_stream(
        &self,
        dest: Arc<dyn Destination>,
        key: &str,
        size: u64,
        start: u64,
    ) -> BoxStream<'static, Result<Bytes>> {
        let state = OneStream {
            dest,
            key: key.to_string(),
            size,
            retry: self.retry,
            pos: start,
            object: None,
            progressed: false,
            since_open: 0,
            credit: self.range_bytes.max(1),
            resumes: 0,
            backoff: self.retry.initial_backoff,
            done: false,
        };
        futures::stream::unfold(state, |mut st| async move {
            let item = st.next().await?;
            st.done = item.is_err();
            Some((item, st))
        })
        .boxed()
    }
}

/// The state of a read in one stream.
struct OneStream {
    dest: Arc<dyn Destination>,
    key: String,
    size: u64,
    retry: RetryPolicy,
    /// Bytes handed on so far.
    pos: u64,
    object: Option<BoxStream<'static, Result<Bytes>>>,
    /// Whether the current answer brought a byte.
    progressed: bool,
    /// Bytes the current answer brought.
    since_open: u64,
    /// Bytes an answer must bring before its resumes are forgiven: a store that trickles
    /// a little after each resume runs out of attempts instead of being asked for ever.
    credit: u64,
    /// Resumes since an answer last brought `credit` bytes.
    resumes: u32,
    backoff: std::time::Duration,
    done: bool,
}

impl OneStream {
    /// The next chunk, the error that ends the read, or `None` at its end.
    async fn next(&mut self) -> Option<Result<Bytes>> {
        if self.done {
            return None;
        }
        loop {
            if self.object.is_none() {
                let range = self.pos..self.size + 1;
                match self.dest.get_range(&self.key, range).await {
                    Ok(object) => {
                        self.progressed = false;
                        self.since_open = 0;
                        self.object = Some(object.chunks);
                    }
                    Err(e) => return Some(Err(e)),
                }
            }
            let object = self.object.as_mut()?;
            match object.next().await? {
                Ok(chunk) => {
                    self.pos += chunk.len() as u64;
                    self.progressed = true;
                    self.since_open += chunk.len() as u64;
                    if self.since_open >= self.credit {
                        self.resumes = 0;
                        self.backoff = self.retry.initial_backoff;
                    }
                    if self.pos > self.size {
                        return Some(Err(Error::corrupt(format!(
                            "{} in {} is larger than the {} bytes its manifest says",
                            self.key,
                            self.dest.describe(),
                            self.size
                        ))));
                    }
                    return Some(Ok(chunk));
                }
                Err(e) => {
                    self.resumes += 1;
                    if !e.is_temporary()
                        || !self.progressed
                        || self.resumes >= self.retry.max_attempts
                    {
                        return Some(Err(e));
                    }
                    tracing::warn!(key = %self.key, offset = self.pos, error = %e, "resuming a read cut short");
                    self.object = None;
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(self.retry.max_backoff);
                }
            }
        }
    }
}

/// Fetches `range` of `key`, asking again for the bytes not yet received after a
/// temporary failure that came after some progress; `size` is the size the manifest
/// records. A failure without progress is the store's own verdict, its requests already
/// retried: asking again would only multiply its retries.
async fn fetch(
    dest: Arc<dyn Destination>,
    key: String,
    range: Range<u64>,
    size: u64,
    retry: RetryPolicy,
) -> Result<Bytes> {
    let want = usize::try_from(range.end - range.start).expect("a range fits in memory");
    let mut data = BytesMut::with_capacity(want);
    let what = format!("read bytes {}..{} of {key}", range.start, range.end);
    let (mut resumes, mut backoff) = (0, retry.initial_backoff);
    loop {
        let before = data.len();
        match fetch_rest(&*dest, &key, &range, &mut data, &what).await {
            Ok(()) => break,
            Err(e) => {
                resumes += 1;
                if !e.is_temporary() || data.len() == before || resumes >= retry.max_attempts {
                    return Err(e);
                }
                tracing::warn!(request = %what, received = data.len(), error = %e, "resuming a range cut short");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(retry.max_backoff);
            }
        }
    }
    if range.end > size && data.len() as u64 > size - range.start {
        return Err(Error::corrupt(format!(
            "{key} in {} is larger than the {size} bytes its manifest says",
            dest.describe()
        )));
    }
    Ok(data.freeze())
}

/// One attempt at the bytes of `range` after those already in `data`.
async fn fetch_rest(
    dest: &dyn Destination,
    key: &str,
    range: &Range<u64>,
    data: &mut BytesMut,
    what: &str,
) -> Result<()> {
    let from = range.start + data.len() as u64;
    let mut object = dest.get_range(key, from..range.end).await?;
    // The store cuts a range at the object's end: what it announces is all there is.
    let announced = object.size.unwrap_or(range.end - from);
    let mut got = 0u64;
    while let Some(chunk) = object.chunks.next().await {
        let chunk = chunk?;
        got += chunk.len() as u64;
        data.extend_from_slice(&chunk);
    }
    if got < announced {
        return Err(Error::new(
            ErrorKind::Destination,
            format!(
                "{}: cannot {what}: the answer ended after {got} of {announced} bytes",
                dest.describe()
            ),
        )
        .temporary());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::{LocalDestination, ObjectMeta, Upload};

    /// The local destination, as a store whose ranges are not cheap.
    #[derive(Debug)]
    struct OneStreamStore(LocalDestination);

    #[async_trait::async_trait]
    impl Destination for OneStreamStore {
        fn describe(&self) -> String {
            self.0.describe()
        }
        async fn put_multipart(&self, key: &str) -> Result<Box<dyn Upload>> {
            self.0.put_multipart(key).await
        }
        async fn get(&self, key: &str) -> Result<ObjectStream> {
            self.0.get(key).await
        }
        async fn get_range(&self, key: &str, range: Range<u64>) -> Result<ObjectStream> {
            self.0.get_range(key, range).await
        }
        fn cheap_ranges(&self) -> bool {
            false
        }
        async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
            self.0.list(prefix).await
        }
        async fn delete(&self, key: &str) -> Result<()> {
            self.0.delete(key).await
        }
        async fn list_incomplete(
            &self,
            prefix: &str,
        ) -> Result<Vec<crate::destination::IncompleteUpload>> {
            self.0.list_incomplete(prefix).await
        }
        async fn discard_incomplete(
            &self,
            upload: &crate::destination::IncompleteUpload,
        ) -> Result<()> {
            self.0.discard_incomplete(upload).await
        }
    }

    /// Every byte of `key` read by `read`, or the error, whether opening or reading failed.
    async fn read_all(
        read: &RangedRead,
        dest: &Arc<dyn Destination>,
        key: &str,
        size: u64,
    ) -> Result<Vec<u8>> {
        let mut chunks = read.read(dest.clone(), key, size).await?.chunks;
        let mut out = Vec::new();
        while let Some(chunk) = chunks.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn objects_come_back_whole_and_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let local = LocalDestination::new(tmp.path());
        let stores: [Arc<dyn Destination>; 2] =
            [Arc::new(local.clone()), Arc::new(OneStreamStore(local))];
        let read = RangedRead {
            range_bytes: 1000,
            in_flight: 3,
            retry: RetryPolicy::none(),
        };
        for dest in stores {
            let how = if dest.cheap_ranges() {
                "ranges"
            } else {
                "one stream"
            };
            for len in [0usize, 1, 999, 1000, 1001, 7_777] {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
                let key = format!("a/{len}.bin");
                dest.put(&key, Bytes::from(data.clone())).await.unwrap();
                let got = read_all(&read, &dest, &key, len as u64).await;
                assert!(got.unwrap() == data, "{how}: {len}");
            }
            // An object that grew is refused; one that shrank ends early (the reader's size
            // check then names both sizes); a missing one fails at once.
            dest.put("a/grown.bin", Bytes::from(vec![1u8; 2001]))
                .await
                .unwrap();
            let err = read_all(&read, &dest, "a/grown.bin", 2000)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{how}: {err}");
            assert!(
                err.message().starts_with("a/grown.bin in local")
                    && err
                        .message()
                        .ends_with("is larger than the 2000 bytes its manifest says"),
                "{how}: {err}"
            );
            let got = read_all(&read, &dest, "a/grown.bin", 5000).await;
            assert_eq!(got.unwrap().len(), 2001, "{how}");
            let err = read
                .read(dest.clone(), "a/missing.bin", 10)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotFound, "{how}: {err}");
        }
    }

    /// A store whose every answer brings a few bytes, then fails temporarily: it stands
    /// for an S3-compatible endpoint that trickles after each resume.
    #[derive(Debug)]
    struct Trickling {
        inner: LocalDestination,
        opened: std::sync::atomic::AtomicU32,
    }

    #[async_trait::async_trait]
    impl Destination for Trickling {
        fn describe(&self) -> String {
            "trickling".into()
        }
        async fn put_multipart(&self, key: &str) -> Result<Box<dyn Upload>> {
            self.inner.put_multipart(key).await
        }
        async fn get(&self, key: &str) -> Result<ObjectStream> {
            self.inner.get(key).await
        }
        async fn get_range(&self, key: &str, range: Range<u64>) -> Result<ObjectStream> {
            self.opened
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let end = range.end.min(range.start + 10);
            let mut object = self.inner.get_range(key, range.start..end).await?;
            let first = object.chunks.next().await.expect("bytes")?;
            let cut = Error::new(ErrorKind::Destination, "cut").temporary();
            Ok(ObjectStream {
                size: None,
                chunks: futures::stream::iter([Ok(first), Err(cut)]).boxed(),
            })
        }
        fn cheap_ranges(&self) -> bool {
            false
        }
        async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &str) -> Result<()> {
            self.inner.delete(key).await
        }
        async fn list_incomplete(
            &self,
            prefix: &str,
        ) -> Result<Vec<crate::destination::IncompleteUpload>> {
            self.inner.list_incomplete(prefix).await
        }
        async fn discard_incomplete(
            &self,
            upload: &crate::destination::IncompleteUpload,
        ) -> Result<()> {
            self.inner.discard_incomplete(upload).await
        }
    }

    /// A store that brings a little after each resume (less than a range's worth) runs out
    /// of attempts: the read ends with the store's error after `max_attempts` answers,
    /// instead of asking for ever (it once reset its count at every chunk).
    #[tokio::test]
    async fn a_store_trickling_after_each_resume_runs_out_of_attempts() {
        let tmp = tempfile::tempdir().unwrap();
        let inner = LocalDestination::new(tmp.path());
        inner
            .put("a/big.bin", Bytes::from(vec![7u8; 100_000]))
            .await
            .unwrap();
        let store = Arc::new(Trickling {
            inner,
            opened: std::sync::atomic::AtomicU32::new(0),
        });
        let dest: Arc<dyn Destination> = store.clone();
        let read = RangedRead {
            range_bytes: 1000,
            in_flight: 1,
            retry: RetryPolicy {
                max_attempts: 4,
                initial_backoff: std::time::Duration::ZERO,
                max_backoff: std::time::Duration::ZERO,
                ..RetryPolicy::default()
            },
        };
        let err = read_all(&read, &dest, "a/big.bin", 100_000)
            .await
            .unwrap_err();
        assert_eq!(err.message(), "cut");
        assert_eq!(
            store.opened.load(std::sync::atomic::Ordering::Relaxed),
            4,
            "one answer, then three resumes"
        );
    }
}
