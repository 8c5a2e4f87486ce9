//! Streamed reads: the blob is fetched in ranges of [`RANGE`] bytes, one after the other,
//! one range ahead of the reader at most. A range that fails is fetched again from its
//! start (within the retry policy), and every range is pinned to the blob's version
//! (`If-Match` on its `ETag`), so an object overwritten during the read is an error, never
//! a mix of two versions.

use std::sync::Arc;

use std::num::NonZero;

use azure_core::http::Etag;
use azure_storage_blob::models::{
    BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders as _, HttpRange,
};
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use service_backup_core::destination::ObjectStream;
use service_backup_core::{Error, ErrorKind, Result};
use tokio::sync::mpsc;

use crate::store::Store;

/// Bytes fetched per request.
pub(crate) const RANGE: u64 = 4 * 1024 * 1024;

/// Opens `key` for reading: its size and version now, its bytes as the stream is read.
pub(crate) async fn open(store: Arc<Store>, key: &str) -> Result<ObjectStream> {
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
    if size == 0 {
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
        let mut offset = 0;
        while offset < size {
            let end = (offset + RANGE).min(size);
            let range = fetch(&store, &key, &etag, offset, end).await;
            let failed = range.is_err();
            if tx.send(range).await.is_err() || failed {
                return;
            }
            offset = end;
        }
    });
    let guard = AbortOnDrop(task);
    let chunks = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv().await.map(|item| (item, (rx, guard)))
    });
    Ok(ObjectStream {
        size: Some(size),
        chunks: chunks.boxed(),
    })
}

/// Fetches bytes `start..end` of the version `etag` of `key`, retrying temporary failures.
async fn fetch(store: &Store, key: &str, etag: &str, start: u64, end: u64) -> Result<Bytes> {
    let blob = store.container.blob_client(key);
    store
        .retry
        .run("get blob range", || async {
            let what = format!("read bytes {start}..{end} of {key}");
            let options = BlobClientDownloadOptions {
                range: Some(HttpRange::new(start, end - start)),
                if_match: (!etag.is_empty()).then(|| Etag::from(etag.to_string())),
                // One request for the range: the range is the unit of our retries.
                parallel: NonZero::new(1),
                partition_size: NonZero::new(usize::try_from(RANGE).expect("4 MiB fits")),
                ..BlobClientDownloadOptions::default()
            };
            let response = blob
                .download(Some(options))
                .await
                .map_err(|e| store.error(&what, e))?;
            let want = usize::try_from(end - start).expect("a range fits in memory");
            let mut data = BytesMut::with_capacity(want);
            let mut body = response.body;
            while let Some(chunk) = body.next().await {
                data.extend_from_slice(&chunk.map_err(|e| store.error(&what, e))?);
                if data.len() > want {
                    break;
                }
            }
            if data.len() != want {
                return Err(short(store, &what, data.len()));
            }
            Ok(data.freeze())
        })
        .await
}

/// A range that came back with the wrong length: a cut connection, usually.
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

/// Stops the range fetcher when the stream is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
