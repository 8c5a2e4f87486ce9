//! A streamed read of an object (or of a range of it): one media download whose body is
//! read a few chunks ahead of the reader, resumed where it stopped when it fails.
//!
//! A body cut short (a reset, a stall, a server restarted) is asked again from the first
//! byte not yet delivered, with `Range` and `ifGenerationMatch` on the generation of the
//! first answer: a lost connection costs what was in flight, and an object rewritten
//! meanwhile fails the read instead of yielding a mix of two objects. A body that brings
//! less than 64 KiB within `stall_timeout` is stalled, and resumed the same way;
//! [`MAX_RESUMES`] resumes in a row without 8 MiB of progress end the read.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::{Method, Response, StatusCode};
use service_backup_core::destination::body::{AbortOnDrop, Span, same_size};
use service_backup_core::destination::pace::RESUME_CREDIT_BYTES;
use service_backup_core::destination::{ObjectStream, Pace};
use service_backup_core::{Error, ErrorKind, Result};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::client::Client;
use crate::http::transport_reason;

/// How many times in a row a body cut short is resumed without 8 MiB of progress between.
pub const MAX_RESUMES: u32 = 6;

/// Chunks of the body read ahead of the reader (each a few KiB to a few hundred).
const READ_AHEAD_CHUNKS: usize = 64;

/// The answer to one download: the object's size and generation, and the body.
struct Opened {
    total: Option<u64>,
    generation: Option<String>,
    response: Response,
    /// Bytes at the head of the body already delivered (the server ignored `Range`).
    skip: u64,
}

/// Reads `key` (its bytes `range`, cut at its end, or all of it) as a stream of chunks.
pub(crate) async fn read(
    client: Arc<Client>,
    key: &str,
    range: Option<Range<u64>>,
) -> Result<ObjectStream> {
    let start = range.as_ref().map_or(0, |r| r.start);
    // An empty range still asks for a byte: a missing object must be NotFound.
    let asked = range.as_ref().map(|r| r.end.max(start + 1));
    let Some(first) = open(&client, key, start, asked, None).await? else {
        // A range from the end on: the object is there, with nothing in it.
        return Ok(ObjectStream {
            size: Some(0),
            chunks: futures::stream::empty().boxed(),
        });
    };
    let span = Span::new(range.as_ref(), first.total);
    let (tx, rx) = mpsc::channel(READ_AHEAD_CHUNKS);
    let task = tokio::spawn(pump(client, key.to_string(), span, first, tx));
    let chunks = futures::stream::unfold((rx, AbortOnDrop(task)), |(mut rx, task)| async move {
        rx.recv().await.map(|item| (item, (rx, task)))
    });
    Ok(ObjectStream {
        size: span.bytes(),
        chunks: chunks.boxed(),
    })
}

/// Reads the body into `tx`, resuming it where it stopped; ends after the last byte of
/// `span` or the first error that is not resumed.
async fn pump(
    client: Arc<Client>,
    key: String,
    span: Span,
    first: Opened,
    tx: mpsc::Sender<Result<Bytes>>,
) {
    let size = span.bytes();
    let generation = first.generation.clone();
    // The object's size as the first answer gave it: every resumed answer must agree.
    let total = first.total;
    let mut opened = first;
    let (mut delivered, mut resumed_at, mut resumes) = (0u64, 0u64, 0u32);
    let mut pace = Pace::new(client.stall_timeout);
    let what = format!("read {key}");
    loop {
        if size == Some(delivered) {
            return;
        }
        let cut = match pace.wait(opened.response.chunk()).await {
            None => pace.stalled(&client.describe(), &what),
            Some(Ok(Some(mut chunk))) => {
                pace.arrived(chunk.len() as u64);
                let skip = usize::try_from(opened.skip)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len());
                opened.skip -= skip as u64;
                let _ = chunk.split_to(skip);
                if let Some(size) = size {
                    // A server that ignored the range sends more than was asked.
                    chunk.truncate(usize::try_from(size - delivered).unwrap_or(usize::MAX));
                }
                if chunk.is_empty() {
                    continue;
                }
                delivered += chunk.len() as u64;
                if delivered - resumed_at >= RESUME_CREDIT_BYTES {
                    resumes = 0;
                }
                match tx.try_send(Ok(chunk)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(item)) => {
                        if tx.send(item).await.is_err() {
                            return;
                        }
                        // Time spent waiting for the reader is not the store's.
                        pace.restart();
                    }
                    Err(TrySendError::Closed(_)) => return, // the reader is gone
                }
                continue;
            }
            Some(Err(e)) => Error::new(
                ErrorKind::Destination,
                format!(
                    "{}: reading {key} failed: {}",
                    client.describe(),
                    transport_reason(&e)
                ),
            )
            .temporary(),
            Some(Ok(None)) if size.is_some_and(|size| delivered < size) => Error::new(
                ErrorKind::Destination,
                format!(
                    "{}: reading {key} failed: the body ended after {delivered} of {} bytes",
                    client.describe(),
                    size.unwrap_or_default()
                ),
            )
            .temporary(),
            Some(Ok(None)) => return,
        };
        resumes += 1;
        if !cut.is_temporary() || resumes > MAX_RESUMES {
            let _ = tx.send(Err(cut)).await;
            return;
        }
        let offset = span.start + delivered;
        tracing::warn!(key = %key, offset, error = %cut, "resuming the read of a gcs object");
        tokio::time::sleep(backoff(&client, resumes)).await;
        let describe = client.describe();
        match open(&client, &key, offset, span.end, generation.as_deref()).await {
            Ok(Some(next)) => {
                if let Err(e) = same_size(&describe, &key, total, next.total, offset) {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                opened = next;
                resumed_at = delivered;
                pace = Pace::new(client.stall_timeout);
            }
            // A server that said the object is longer than it is: the rest is past its end.
            Ok(None) => {
                let e = same_size(&describe, &key, total, None, offset).err();
                let _ = tx.send(Err(e.unwrap_or(cut))).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}

/// Asks for `key` from byte `start` on (up to `end` if given), retried on temporary
/// failures; `generation`, if given, is the one the object must still have. `None`: the
/// range starts at or past the object's end (416).
async fn open(
    client: &Client,
    key: &str,
    start: u64,
    end: Option<u64>,
    generation: Option<&str>,
) -> Result<Option<Opened>> {
    let mut url = format!("{}?alt=media", client.object_url(key));
    if let Some(generation) = generation {
        url.push_str("&ifGenerationMatch=");
        url.push_str(generation);
    }
    let action = format!("read {key}");
    let range = match end {
        Some(end) => Some(format!("bytes={start}-{}", end - 1)),
        None if start > 0 => Some(format!("bytes={start}-")),
        None => None,
    };
    client
        .retry
        .run("get object", || async {
            let response = client
                .send(Method::GET, &url, &action, |r| match &range {
                    Some(range) => r.header(RANGE, range),
                    None => r,
                })
                .await?;
            if response.status() == StatusCode::RANGE_NOT_SATISFIABLE {
                return Ok(None);
            }
            let response = client.check(&action, response).await?;
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let generation = header("x-goog-generation");
            let (total, skip) = match header(CONTENT_RANGE.as_str()).as_deref().and_then(total_of) {
                Some(total) => (Some(total), 0),
                // The whole object: from the start, or the server ignored the range.
                None => (response.content_length(), start),
            };
            Ok(Some(Opened {
                total,
                generation,
                response,
                skip,
            }))
        })
        .await
}

/// `bytes START-END/TOTAL` of a `Content-Range` header: the total.
fn total_of(content_range: &str) -> Option<u64> {
    content_range.rsplit('/').next()?.trim().parse().ok()
}

/// The wait before the `n`th resume in a row: the retry policy's, doubled each time.
fn backoff(client: &Client, n: u32) -> Duration {
    let policy = &client.retry;
    policy
        .initial_backoff
        .saturating_mul(1 << (n - 1).min(16))
        .min(policy.max_backoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_comes_from_content_range() {
        assert_eq!(total_of("bytes 0-9/1073741824"), Some(1_073_741_824));
        assert_eq!(total_of("bytes */1"), Some(1));
        assert_eq!(total_of("bytes 0-1/*"), None);
    }
}
