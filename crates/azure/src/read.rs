//! Streamed reads: the blob (or the asked range of it) is fetched in ranges of [`RANGE`]
//! bytes, one after the other, one range ahead of the reader at most. A range whose answer
//! fails or is cut is asked again from its first byte not yet received (within the retry
//! policy), and every range is pinned to the blob's version (`If-Match` on its `ETag`), so
//! an object overwritten during the read is an error, never a mix of two versions. An
//! answer slower than 64 KiB per `stall_timeout` fails its attempt: a connection that
//! trickles cannot hang a restore.

use std::num::NonZero;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use azure_core::http::Etag;
use azure_storage_blob::models::{
    BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders as _, HttpRange,
};
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use service_backup_core::destination::body::AbortOnDrop;
use service_backup_core::destination::{ObjectStream, Pace};
use service_backup_core::{Error, ErrorKind, Result};
use tokio::sync::mpsc;

use crate::store::Store;

/// Bytes fetched per request.
pub(crate) const RANGE: u64 = 4 * 1024 * 1024;

/// Opens `key` for reading (its bytes `range`, cut at its end, or all of it): its size and
/// version now, its bytes as the stream is read.
pub(crate) async fn open(
    store: Arc<Store>,
    key: &str,
    range: Option<Range<u64>>,
) -> Result<ObjectStream> {
    let blob = store.container.blob_client(key);
    let (size, etag) = store
        .retry
        .run("get blob properties", || async {
            let what = format!("read {key}");
            let properties = blob
                .get_properties(None)
                .await
                .map_err(|e| store.error(&what, e))?;
            let size = properties
                .content_length()
                .map_err(|e| store.error(&what, e))?
                .unwrap_or_default();
            let etag = properties.etag().map_err(|e| store.error(&what, e))?;
            Ok((size, etag.map(|e| e.to_string()).unwrap_or_default()))
        })
        .await?;
    let range = range.unwrap_or(0..size);
    // Cut at the end: a range from the end on is empty, never asked.
    let (start, end) = (range.start.min(size), range.end.min(size));
    if start >= end {
        return Ok(ObjectStream {
            size: Some(0),
            chunks: futures::stream::empty().boxed(),
        });
    }

    // One range queued while the next is fetched; the task stops when the reader drops
    // the stream (the send fails) or at the first error.
    let (tx, rx) = mpsc::channel::<Result<Bytes>>(1);
    let key = key.to_string();
    let task = tokio::spawn(async move {
        let mut offset = start;
        while offset < end {
            let upto = (offset + RANGE).min(end);
            let range = fetch(&store, &key, &etag, offset, upto).await;
            let failed = range.is_err();
            if tx.send(range).await.is_err() || failed {
                return;
            }
            offset = upto;
        }
    });
    let guard = AbortOnDrop(task);
    let chunks = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv().await.map(|item| (item, (rx, guard)))
    });
    Ok(ObjectStream {
        size: Some(end - start),
        chunks: chunks.boxed(),
    })
}

/// Fetches bytes `start..end` of the version `etag` of `key`, retrying temporary failures;
/// an attempt asks only for what the ones before it did not bring.
async fn fetch(store: &Store, key: &str, etag: &str, start: u64, end: u64) -> Result<Bytes> {
    let blob = store.container.blob_client(key);
    let want = usize::try_from(end - start).expect("a range fits in memory");
    // Kept across attempts; locked only between awaits.
    let data = Mutex::new(BytesMut::with_capacity(want));
    let received = || data.lock().expect("not poisoned").len();
    store
        .retry
        .run("get blob range", || async {
            let from = start + received() as u64;
            let what = format!("read bytes {from}..{end} of {key}");
            let options = BlobClientDownloadOptions {
                range: Some(HttpRange::new(from, end - from)),
                if_match: (!etag.is_empty()).then(|| Etag::from(etag.to_string())),
                // One request for the range: the range is the unit of our retries.
                parallel: NonZero::new(1),
                partition_size: NonZero::new(usize::try_from(RANGE).expect("4 MiB fits")),
                ..BlobClientDownloadOptions::default()
            };
            let mut pace = Pace::new(store.stall_timeout);
            let response = pace
                .wait(blob.download(Some(options)))
                .await
                .ok_or_else(|| pace.stalled(&store.describe(), &what))?
                .map_err(|e| store.error(&what, e))?;
            let mut body = response.body;
            loop {
                let chunk = match pace.wait(body.next()).await {
                    None => return Err(pace.stalled(&store.describe(), &what)),
                    Some(None) => break,
                    Some(Some(chunk)) => chunk.map_err(|e| store.error(&what, e))?,
                };
                pace.arrived(chunk.len() as u64);
                let mut data = data.lock().expect("not poisoned");
                let take = chunk.len().min(want - data.len());
                data.extend_from_slice(&chunk[..take]);
                if take < chunk.len() {
                    return Err(long(store, &what));
                }
            }
            if received() != want {
                return Err(short(
                    store,
                    &what,
                    received() - usize::try_from(from - start).unwrap_or(0),
                ));
            }
            Ok(())
        })
        .await?;
    Ok(data.into_inner().expect("not poisoned").freeze())
}

/// A range that came back shorter than asked: a cut connection, usually.
fn short(store: &Store, what: &str, got: usize) -> Error {
    Error::new(
        ErrorKind::Destination,
        format!(
            "{}: cannot {what}: the answer had {got} bytes",
            store.describe()
        ),
    )
    .temporary()
}

/// A range that came back longer than asked: a store that ignored the range.
fn long(store: &Store, what: &str) -> Error {
    Error::new(
        ErrorKind::Destination,
        format!(
            "{}: cannot {what}: the answer had more bytes than asked",
            store.describe()
        ),
    )
}
