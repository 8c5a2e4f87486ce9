//! The restore's download: an archive read as consecutive ranges of [`RANGE_BYTES`], up to
//! [`IN_FLIGHT`] of them at once, handed on in order.
//!
//! Each range is retried alone, and a range whose answer was cut asks again only for the
//! bytes it did not get (within the [`RetryPolicy`]'s attempts and backoff): a connection lost near the end of a large
//! archive costs what was in flight, not the archive. Memory stays within
//! `(IN_FLIGHT + 2) × RANGE_BYTES` (48 MiB): the ranges being fetched or waiting their
//! turn, and at most two more pinned by slices queued for the reader.
//!
//! The last range asks for one byte past the size the manifest records, so that an object
//! that grew is refused; one that shrank ends early, as a stream from the start would, and
//! the reader's size check names both sizes.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;

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
        let step = self.range_bytes.max(1);
        let mut ranges: Vec<Range<u64>> = (0..size.div_ceil(step))
            .map(|i| i * step..((i + 1) * step).min(size))
            .collect();
        // One byte past the end, to see an object that grew; an empty object asks for it
        // alone.
        match ranges.last_mut() {
            Some(last) => last.end += 1,
            None => ranges.push(0..1),
        }
        let (key, retry) = (key.to_string(), self.retry);
        let fetched = futures::stream::iter(ranges)
            .map(move |range| fetch(dest.clone(), key.clone(), range, size, retry))
            .buffered(self.in_flight.max(1));
        let mut chunks = fetched
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
            .boxed();
        let first = match chunks.next().await {
            Some(Err(e)) => return Err(e),
            first => first,
        };
        Ok(ObjectStream {
            size: Some(size),
            chunks: futures::stream::iter(first).chain(chunks).boxed(),
        })
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
    use crate::destination::LocalDestination;

    async fn drain(object: ObjectStream) -> Result<Vec<u8>> {
        let mut chunks = object.chunks;
        let mut out = Vec::new();
        while let Some(chunk) = chunks.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ranges_come_back_whole_and_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let dest: Arc<dyn Destination> = Arc::new(LocalDestination::new(tmp.path()));
        let read = RangedRead {
            range_bytes: 1000,
            in_flight: 3,
            retry: RetryPolicy::none(),
        };
        for len in [0usize, 1, 999, 1000, 1001, 7_777] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let key = format!("a/{len}.bin");
            dest.put(&key, Bytes::from(data.clone())).await.unwrap();
            let got = drain(read.read(dest.clone(), &key, len as u64).await.unwrap()).await;
            assert!(got.unwrap() == data, "{len}");
        }
        // An object that grew is refused; one that shrank ends early (the reader's size
        // check then names both sizes); a missing one fails at once.
        dest.put("a/grown.bin", Bytes::from(vec![1u8; 2001]))
            .await
            .unwrap();
        let err = drain(read.read(dest.clone(), "a/grown.bin", 2000).await.unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(
            err.message().contains("a/grown.bin in local")
                && err
                    .message()
                    .ends_with("is larger than the 2000 bytes its manifest says"),
            "{err}"
        );
        let got = drain(read.read(dest.clone(), "a/grown.bin", 5000).await.unwrap()).await;
        assert_eq!(got.unwrap().len(), 2001);
        let err = read
            .read(dest.clone(), "a/missing.bin", 10)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    }
}
