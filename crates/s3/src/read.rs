//! A streamed read of an object: ranges fetched concurrently and delivered in order.
//!
//! The first range is fetched before [`read`] returns; it gives the object's size and
//! ETag. The others are fetched by [`RANGES_IN_FLIGHT`] tasks at most, each holding one
//! range of [`RANGE_SIZE`] bytes, so memory stays at a few ranges whatever the object's
//! size. Each range is retried on its own: a connection lost mid-range costs that range,
//! not the object. Every range after the first is asked for with `If-Match` on the first
//! one's ETag, and its answer's ETag is checked too: an object rewritten while it is read
//! fails the read instead of yielding a mix of two objects.
//!
//! A store that ignores `Range` answers the first request with the whole object, which is
//! then streamed as it comes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use service_backup_core::destination::ObjectStream;
use service_backup_core::{Error, ErrorKind, Result};
use tokio::task::JoinHandle;

use crate::error::{convert, service_code};
use crate::store::Store;

/// The size of the ranges an object is read in.
pub const RANGE_SIZE: u64 = 8 * 1024 * 1024;
/// How many ranges are fetched at the same time, beyond the one being delivered.
pub const RANGES_IN_FLIGHT: usize = 3;

/// What a ranged `GetObject` answered.
enum Fetched {
    /// The bytes of the range asked for.
    Range {
        chunks: Vec<Bytes>,
        /// The object's size, from `Content-Range`.
        total: u64,
        etag: Option<String>,
    },
    /// The whole object, as the store ignored the range: its size and unread body.
    Whole { size: Option<u64>, body: ByteStream },
    /// The object is empty (the store refused a range of it).
    Empty,
}

/// Reads `key` of `store` as a stream of chunks, in order.
pub(crate) async fn read(store: Arc<Store>, key: &str) -> Result<ObjectStream> {
    let (chunks, total, etag) = match store.fetch_range(key, 0, None, true).await? {
        Fetched::Empty => {
            return Ok(ObjectStream {
                size: Some(0),
                chunks: futures::stream::empty().boxed(),
            });
        }
        Fetched::Whole { size, body } => {
            return Ok(ObjectStream {
                size,
                chunks: whole(store, key.to_string(), body),
            });
        }
        Fetched::Range {
            chunks,
            total,
            etag,
        } => (chunks, total, etag),
    };
    let key = key.to_string();
    let rest = futures::stream::iter((1..total.div_ceil(RANGE_SIZE)).map(move |i| i * RANGE_SIZE))
        .map(move |start| {
            let (store, key, etag) = (store.clone(), key.clone(), etag.clone());
            AbortOnDrop(tokio::spawn(async move {
                match store
                    .fetch_range(&key, start, etag.as_deref(), false)
                    .await?
                {
                    Fetched::Range { chunks, .. } => Ok(chunks),
                    // Only the first request takes these answers; a later one is a change.
                    Fetched::Whole { .. } | Fetched::Empty => Err(store.changed(&key)),
                }
            }))
        })
        .buffered(RANGES_IN_FLIGHT);
    let chunks = futures::stream::once(std::future::ready(Ok(chunks)))
        .chain(rest)
        // The first failure ends the stream.
        .scan(false, |failed, range| {
            if *failed {
                return std::future::ready(None);
            }
            *failed = range.is_err();
            std::future::ready(Some(range))
        })
        .flat_map(|range| {
            futures::stream::iter(match range {
                Ok(chunks) => chunks.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            })
        })
        .filter(|chunk| std::future::ready(!matches!(chunk, Ok(c) if c.is_empty())))
        .boxed();
    Ok(ObjectStream {
        size: Some(total),
        chunks,
    })
}

/// The body of a whole object, as it comes.
fn whole(store: Arc<Store>, key: String, body: ByteStream) -> BoxStream<'static, Result<Bytes>> {
    futures::stream::unfold(Some(body), move |state| {
        let (store, key) = (store.clone(), key.clone());
        async move {
            let mut body = state?;
            match body.next().await? {
                Ok(chunk) => Some((Ok(chunk), Some(body))),
                Err(e) => Some((Err(store.body_failed(&key, &e)), None)),
            }
        }
    })
    .filter(|chunk| std::future::ready(!matches!(chunk, Ok(c) if c.is_empty())))
    .boxed()
}

/// A spawned task that is stopped when no longer awaited: a read dropped half-way stops
/// fetching its ranges.
struct AbortOnDrop<T>(JoinHandle<Result<T>>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|joined| {
            joined.unwrap_or_else(|e| {
                Err(Error::new(
                    ErrorKind::Destination,
                    format!("reading a range of an s3 object stopped: {e}"),
                ))
            })
        })
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `bytes START-END/TOTAL` of a `Content-Range` header: the total.
fn total_of(content_range: &str) -> Option<u64> {
    content_range.rsplit('/').next()?.trim().parse().ok()
}

impl Store {
    /// Fetches the range of `key` that starts at `start`, retried as a whole on temporary
    /// failures, including a body cut short; `etag`, if given, is the ETag the object must
    /// still have. `first` accepts the answers of a store that ignores ranges.
    async fn fetch_range(
        &self,
        key: &str,
        start: u64,
        etag: Option<&str>,
        first: bool,
    ) -> Result<Fetched> {
        let action = format!("read {key}");
        let end = start + RANGE_SIZE - 1;
        let result = self
            .retry
            .run("GetObject", || {
                self.within(self.time_for(RANGE_SIZE as usize), &action, async {
                    let out = self
                        .client
                        .get_object()
                        .bucket(&self.bucket)
                        .key(key)
                        .range(format!("bytes={start}-{end}"))
                        .set_if_match(etag.map(str::to_string))
                        .send()
                        .await
                        .map_err(|e| convert(&e, self.req("s3:GetObject"), &action))?;
                    let Some(total) = out.content_range().and_then(total_of) else {
                        let size = out.content_length().and_then(|s| u64::try_from(s).ok());
                        return Ok(Fetched::Whole {
                            size,
                            body: out.body,
                        });
                    };
                    if etag.is_some() && out.e_tag() != etag {
                        return Err(self.changed(key));
                    }
                    let want = (end + 1).min(total).saturating_sub(start);
                    let etag = out.e_tag.clone();
                    let mut body = out.body;
                    let mut chunks = Vec::new();
                    let mut got = 0u64;
                    while let Some(chunk) = body.next().await {
                        let chunk = chunk.map_err(|e| self.body_failed(key, &e))?;
                        got += chunk.len() as u64;
                        chunks.push(chunk);
                    }
                    if got != want {
                        return Err(Error::new(
                            ErrorKind::Destination,
                            format!(
                                "s3 bucket {}: reading {key} failed: bytes {start}-{end} gave {got} bytes, not {want}",
                                self.bucket
                            ),
                        )
                        .temporary());
                    }
                    Ok(Fetched::Range {
                        chunks,
                        total,
                        etag,
                    })
                })
            })
            .await;
        match result {
            Err(e) if service_code(&e) == Some("PreconditionFailed") => Err(self.changed(key)),
            Err(e) if first && service_code(&e) == Some("InvalidRange") => Ok(Fetched::Empty),
            Ok(Fetched::Whole { .. } | Fetched::Empty) if !first => Err(self.changed(key)),
            other => other,
        }
    }

    /// The error of an object rewritten while it was read.
    fn changed(&self, key: &str) -> Error {
        Error::new(
            ErrorKind::Destination,
            format!(
                "s3 bucket {}: {key} changed while it was being read (its ETag is not the one it had at the start)",
                self.bucket
            ),
        )
        .with_hint("a backup is never rewritten: check what else writes under this bucket_path, then restore again")
    }

    /// The error of a body whose reading failed: damage if the bytes did not match the
    /// checksum the store holds for them, else a temporary failure.
    fn body_failed(&self, key: &str, e: &(dyn std::error::Error + 'static)) -> Error {
        if mismatched(e) {
            return Error::new(
                ErrorKind::Corrupt,
                format!(
                    "s3 bucket {}: {key} is damaged: the bytes read do not match the checksum the store holds for them",
                    self.bucket
                ),
            )
            .with_hint("restore this backup from another destination, or restore an older backup");
        }
        Error::new(
            ErrorKind::Destination,
            format!("s3 bucket {}: reading {key} failed: {e}", self.bucket),
        )
        .with_hint("check the network between this VM and the store, and try again")
        .temporary()
    }
}

/// Whether `e`, or an error under it, is the SDK's report of a body checksum mismatch.
fn mismatched(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.is::<aws_smithy_checksums::body::validate::Error>() {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_comes_from_content_range() {
        assert_eq!(total_of("bytes 0-8388607/1073741824"), Some(1_073_741_824));
        assert_eq!(total_of("bytes 0-0/1"), Some(1));
        assert_eq!(total_of("bytes */1"), Some(1));
        assert_eq!(total_of("bytes 0-1/*"), None);
    }
}
