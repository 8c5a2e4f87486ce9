//! A streamed read of an object: one `GetObject` whose body is read ahead into a bounded
//! buffer, resumed where it stopped when the connection fails.
//!
//! The object is read in one request, not in ranges: a store then reads and sends it once,
//! and S3-compatible stores that read the whole object for every range asked of it (moto
//! does) are not made to read it once per range. A task reads the body up to
//! [`READ_AHEAD`] bytes ahead of the reader, so the network and the restore's CPU work side
//! by side while memory stays flat whatever the object's size.
//!
//! A body cut short (a reset, a stall, a store restarted) is resumed from the first byte
//! not yet delivered, with `Range` and `If-Match` on the `ETag` of the first answer: a lost
//! connection costs what was in flight, not the object, and an object rewritten meanwhile
//! fails the read instead of yielding a mix of two objects. A body that brings less than
//! 64 KiB within `request_timeout` is stalled, and resumed the same way. [`MAX_RESUMES`]
//! resumes in a row without 8 MiB of progress end the read. A store that ignores `Range` answers a
//! resume with the whole object, whose bytes already delivered are skipped.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures::StreamExt as _;
use service_backup_core::destination::body::{AbortOnDrop, Span, same_size};
use service_backup_core::destination::pace::RESUME_CREDIT_BYTES;
use service_backup_core::destination::{ObjectStream, Pace};
use service_backup_core::{Error, ErrorKind, Result};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::error::{convert, service_code};
use crate::store::Store;

/// The most bytes of the body read ahead of the reader.
pub const READ_AHEAD: usize = 8 * 1024 * 1024;

/// How many times in a row a body cut short is resumed without 8 MiB of progress between.
pub const MAX_RESUMES: u32 = 6;

/// The answer to one `GetObject`: the object's size and `ETag`, and the body from `start`.
struct Opened {
    size: Option<u64>,
    etag: Option<String>,
    body: ByteStream,
    /// Bytes at the head of `body` already delivered (the store ignored `Range`).
    skip: u64,
}

/// A chunk for the reader, with the share of the read-ahead budget it holds.
type Item = (Result<Bytes>, Option<OwnedSemaphorePermit>);

/// Reads `key` of `store` (its bytes `range`, cut at its end, or all of it) as a stream of
/// chunks, in order.
pub(crate) async fn read(
    store: Arc<Store>,
    key: &str,
    range: Option<Range<u64>>,
) -> Result<ObjectStream> {
    let start = range.as_ref().map_or(0, |r| r.start);
    // An empty range still asks for a byte: a missing object must be NotFound.
    let asked = range.as_ref().map(|r| r.end.max(start + 1));
    let first = match store.open(key, start, asked, None).await {
        Ok(first) => first,
        // A range that starts at or past the end: the object is there, with nothing in it.
        Err(e) if range.is_some() && service_code(&e) == Some("InvalidRange") => {
            return Ok(ObjectStream {
                size: Some(0),
                chunks: futures::stream::empty().boxed(),
            });
        }
        Err(e) => return Err(e),
    };
    let span = Span::new(range.as_ref(), first.size);
    let size = span.bytes();
    let (tx, rx) = mpsc::unbounded_channel::<Item>();
    let budget = Arc::new(Semaphore::new(READ_AHEAD));
    let pump = tokio::spawn(pump(store, key.to_string(), span, first, tx, budget));
    let chunks = futures::stream::unfold((rx, AbortOnDrop(pump)), |(mut rx, pump)| async move {
        // The permit is dropped as the chunk is handed on: the pump may read that much more.
        let (chunk, _permit) = rx.recv().await?;
        Some((chunk, (rx, pump)))
    })
    .boxed();
    Ok(ObjectStream { size, chunks })
}

/// Reads the body into `tx`, within `budget` bytes ahead, resuming it where it stopped;
/// ends after the last byte of `span` or the first error that is not resumed.
async fn pump(
    store: Arc<Store>,
    key: String,
    span: Span,
    first: Opened,
    tx: mpsc::UnboundedSender<Item>,
    budget: Arc<Semaphore>,
) {
    let etag = first.etag.clone();
    // The object's size as the first answer gave it: every resumed answer must agree.
    let total = first.size;
    let size = span.bytes();
    let mut opened = first;
    let mut delivered = 0u64;
    let mut resumes = 0u32;
    // Where the last resume started: only a real step of progress clears the count, so a
    // body that trickles a byte per resume still runs out of resumes.
    let mut resumed_at = 0u64;
    let mut pace = Pace::new(store.request_timeout);
    loop {
        if size == Some(delivered) {
            return;
        }
        let cut = match pace.wait(opened.body.next()).await {
            None => pace.stalled(
                &format!("s3 bucket {}", store.bucket),
                &format!("read {key}"),
            ),
            Some(Some(Ok(mut chunk))) => {
                pace.arrived(chunk.len() as u64);
                let skip = usize::try_from(opened.skip)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len());
                opened.skip -= skip as u64;
                let _ = chunk.split_to(skip);
                if let Some(size) = size {
                    // A store that ignored the range sends more than was asked.
                    let left = usize::try_from(size - delivered).unwrap_or(usize::MAX);
                    chunk.truncate(left);
                }
                if chunk.is_empty() {
                    continue;
                }
                let want = u32::try_from(chunk.len().min(READ_AHEAD)).expect("8 MiB fits");
                let permit = if let Ok(permit) = budget.clone().try_acquire_many_owned(want) {
                    permit
                } else {
                    let Ok(permit) = budget.clone().acquire_many_owned(want).await else {
                        return;
                    };
                    // Time spent waiting for the reader is not the store's.
                    pace.restart();
                    permit
                };
                delivered += chunk.len() as u64;
                if delivered - resumed_at >= RESUME_CREDIT_BYTES {
                    resumes = 0;
                }
                if tx.send((Ok(chunk), Some(permit))).is_err() {
                    return; // the reader is gone
                }
                continue;
            }
            Some(Some(Err(e))) => store.body_failed(&key, &e),
            Some(None) if size.is_some_and(|size| delivered < size) => {
                store.cut_short(&key, delivered, size)
            }
            Some(None) => return,
        };
        match resume(
            &store,
            &key,
            span,
            (delivered, total),
            etag.as_deref(),
            cut,
            &mut resumes,
            &tx,
        )
        .await
        {
            Some(next) => {
                opened = next;
                resumed_at = delivered;
                pace = Pace::new(store.request_timeout);
            }
            None => return,
        }
    }
}

/// Asks again for the rest of `span` after the body was `cut` with `delivered` bytes
/// handed on; `None` (the error sent on `tx`) when the cut is not resumed.
#[allow(clippy::too_many_arguments)] // the state of one read, passed along as it is
async fn resume(
    store: &Store,
    key: &str,
    span: Span,
    (delivered, total): (u64, Option<u64>),
    etag: Option<&str>,
    cut: Error,
    resumes: &mut u32,
    tx: &mpsc::UnboundedSender<Item>,
) -> Option<Opened> {
    *resumes += 1;
    if !cut.is_temporary() || *resumes > MAX_RESUMES {
        let _ = tx.send((Err(cut), None));
        return None;
    }
    let offset = span.start + delivered;
    tracing::warn!(key = %key, offset, error = %cut, "resuming the read of an s3 object");
    tokio::time::sleep(backoff(store, *resumes)).await;
    let store_name = format!("s3 bucket {}", store.bucket);
    let checked = match store.open(key, offset, span.end, etag).await {
        // A store that said the object is longer than it is: the rest is past its end.
        Err(e) if service_code(&e) == Some("InvalidRange") => {
            same_size(&store_name, key, total, None, offset).and(Err(e))
        }
        Ok(next) => same_size(&store_name, key, total, next.size, offset).map(|()| next),
        Err(e) => Err(e),
    };
    match checked {
        Ok(next) => Some(next),
        Err(e) => {
            let _ = tx.send((Err(e), None));
            None
        }
    }
}

/// The wait before the `n`th resume in a row: the retry policy's, doubled each time.
fn backoff(store: &Store, n: u32) -> Duration {
    let policy = &store.retry;
    policy
        .initial_backoff
        .saturating_mul(1 << (n - 1).min(16))
        .min(policy.max_backoff)
}

/// `bytes START-END/TOTAL` of a `Content-Range` header: the total.
fn total_of(content_range: &str) -> Option<u64> {
    content_range.rsplit('/').next()?.trim().parse().ok()
}

impl Store {
    /// Asks for `key` from byte `start` on (up to `end` if given), retried on temporary
    /// failures; `etag`, if given, is the `ETag` the object must still have.
    async fn open(
        &self,
        key: &str,
        start: u64,
        end: Option<u64>,
        etag: Option<&str>,
    ) -> Result<Opened> {
        let action = format!("read {key}");
        let result = self
            .retry
            .run("GetObject", || {
                self.within(self.time_for(0), &action, async {
                    let request = self
                        .client
                        .get_object()
                        .bucket(&self.bucket)
                        .key(key)
                        .set_if_match(etag.map(str::to_string));
                    let request = match end {
                        Some(end) => request.range(format!("bytes={start}-{}", end - 1)),
                        None if start > 0 => request.range(format!("bytes={start}-")),
                        None => request,
                    };
                    let out = request
                        .send()
                        .await
                        .map_err(|e| convert(&e, self.req("s3:GetObject"), &action))?;
                    if etag.is_some() && out.e_tag() != etag {
                        return Err(self.changed(key));
                    }
                    let length = out.content_length().and_then(|s| u64::try_from(s).ok());
                    let (size, skip) = match out.content_range().and_then(total_of) {
                        Some(total) => (Some(total), 0),
                        // The whole object: from the start, or the store ignored the range.
                        None => (length, start),
                    };
                    Ok(Opened {
                        size,
                        etag: out.e_tag,
                        body: out.body,
                        skip,
                    })
                })
            })
            .await;
        match result {
            Err(e) if service_code(&e) == Some("PreconditionFailed") => Err(self.changed(key)),
            other => other,
        }
    }

    /// The error of a body that ended before the object's `size` bytes came.
    fn cut_short(&self, key: &str, delivered: u64, size: Option<u64>) -> Error {
        Error::new(
            ErrorKind::Destination,
            format!(
                "s3 bucket {}: reading {key} failed: the body ended after {delivered} of {} bytes",
                self.bucket,
                size.unwrap_or_default()
            ),
        )
        .temporary()
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
