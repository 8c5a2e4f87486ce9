//! Where backups are stored: the [`Destination`] trait, and the `local` file system
//! implementation.
//!
//! Keys are `/`-separated relative paths (`redis/prod/2026/11/22/<backup>.json`). An object
//! written with [`Destination::put_multipart`] becomes visible only when
//! [`Upload::complete`] returns; an upload that is aborted or dropped leaves nothing that
//! [`Destination::list`] shows.

pub mod body;
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
#[cfg(any(test, feature = "testing"))]
pub mod counting;
pub mod immutability;
pub mod listing;
pub mod local;
pub mod pace;
pub mod retry;

use std::fmt;
use std::io::Read;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

use crate::error::{Error, ErrorKind, Result};

pub use immutability::{Immutability, LockMode};
pub use listing::{ListingGuard, MAX_LISTING_ENTRIES, sorts_wholly_before};
pub use local::{LocalDestination, temp_target};
pub use pace::Pace;
pub use retry::RetryPolicy;

/// An object found by [`Destination::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written, if the store says.
    pub last_modified: Option<DateTime<Utc>>,
}

/// An upload that was started and never completed nor aborted (one cut short by a crash):
/// invisible to [`Destination::list`], but it uses storage until discarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompleteUpload {
    /// The key the object would have had.
    pub key: String,
    /// What the store needs to discard it: an upload id, a temporary file's key.
    pub handle: String,
    /// When it was started or last written, if the store says.
    pub started: Option<DateTime<Utc>>,
}

/// The content of an object, as a stream of byte chunks.
pub struct ObjectStream {
    /// The object's size in bytes, if known before reading.
    pub size: Option<u64>,
    /// The chunks, in order.
    pub chunks: BoxStream<'static, Result<Bytes>>,
}

impl fmt::Debug for ObjectStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStream")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// A store that holds backups: S3, Azure, an SSH server, a local file system…
#[async_trait]
pub trait Destination: Send + Sync + fmt::Debug {
    /// A short description for messages, such as `local /mnt/backups`; never a secret.
    fn describe(&self) -> String;

    /// Starts writing the object `key`; it becomes visible only when completed.
    async fn put_multipart(&self, key: &str) -> Result<Box<dyn Upload>>;

    /// Writes a small object at once, visible only when complete.
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let mut upload = self.put_multipart(key).await?;
        if let Err(e) = upload.write(data).await {
            let _ = upload.abort().await;
            return Err(e);
        }
        upload.complete().await
    }

    /// Reads the object `key` as a stream.
    async fn get(&self, key: &str) -> Result<ObjectStream>;

    /// Reads the bytes `range` of the object `key` as a stream; a range past the end is cut
    /// at the end. This default reads from the start and drops what comes before `range`:
    /// stores that can read a range (an HTTP `Range` header, a seek) override it.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<ObjectStream> {
        let object = self.get(key).await?;
        Ok(cut_to_range(object, range))
    }

    /// Whether reading an object as many ranges costs the store about what one read of it
    /// costs, so that a restore may read ranges several at once; stores that read the whole
    /// object for every range asked (some S3-compatible ones) answer `false`, and restores
    /// read them in one stream, resumed where it stops.
    fn cheap_ranges(&self) -> bool {
        true
    }

    /// Lists the complete objects whose keys start with `prefix`, at any depth.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// Lists like [`Destination::list`], only the keys that sort after `start_after` (in
    /// byte order). This default lists everything and filters: stores that can start a
    /// listing after a key (S3 `StartAfter`, a marker) override it.
    async fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectMeta>> {
        let mut objects = self.list(prefix).await?;
        objects.retain(|o| o.key.as_str() > start_after);
        Ok(objects)
    }

    /// The first objects of [`Destination::list_after`], about `limit` of them, and whether
    /// more follow (then the listing goes on after the last key returned). This default
    /// lists everything after at once and says nothing follows: stores that can stop a
    /// listing early (S3's `MaxKeys`, a directory walk) override it, so that a listing of a
    /// large prefix is never held whole.
    async fn list_page(
        &self,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<(Vec<ObjectMeta>, bool)> {
        let _ = limit;
        Ok((self.list_after(prefix, start_after).await?, false))
    }

    /// Deletes the object `key`; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// The incomplete uploads whose keys start with `prefix` that this store can show
    /// (multipart uploads, temporary files), for a prune to discard.
    async fn list_incomplete(&self, prefix: &str) -> Result<Vec<IncompleteUpload>>;

    /// Discards an upload found by [`Destination::list_incomplete`]; one already gone is
    /// not an error.
    async fn discard_incomplete(&self, upload: &IncompleteUpload) -> Result<()>;

    /// The lock this store puts on each archive and manifest it writes, if any.
    fn immutability(&self) -> Option<Immutability> {
        None
    }

    /// Refuses a store that cannot lock what [`Destination::immutability`] asks for (an S3
    /// bucket without Object Lock), with a message that says what to do; `service-backup
    /// check` asks it, and a backup's first locked write.
    async fn check_immutability(&self) -> Result<()> {
        Ok(())
    }
}

/// An object being written; see [`Destination::put_multipart`].
#[async_trait]
pub trait Upload: Send {
    /// Appends `data` to the object.
    async fn write(&mut self, data: Bytes) -> Result<()>;

    /// Makes the object visible under its key.
    async fn complete(self: Box<Self>) -> Result<()>;

    /// Discards everything written; nothing becomes visible.
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// The part `range` of an object read from its start: the bytes before it dropped, the
/// stream ended at its end.
fn cut_to_range(object: ObjectStream, range: Range<u64>) -> ObjectStream {
    use futures::StreamExt as _;
    let size = object
        .size
        .map(|size| range.end.min(size).saturating_sub(range.start));
    let chunks = object
        .chunks
        .scan(0u64, move |position, chunk| {
            // Ends the stream once past the range, so the rest is never read.
            if *position >= range.end {
                return std::future::ready(None);
            }
            let chunk = chunk.map(|chunk| {
                let start = *position;
                let end = start + chunk.len() as u64;
                *position = end;
                let from = range.start.clamp(start, end) - start;
                let to = range.end.clamp(start, end) - start;
                #[allow(clippy::cast_possible_truncation)] // both are within one chunk
                chunk.slice(from as usize..to as usize)
            });
            std::future::ready(Some(chunk))
        })
        .filter(|chunk| std::future::ready(!matches!(chunk, Ok(c) if c.is_empty())))
        .boxed();
    ObjectStream { size, chunks }
}

/// Reads a whole small object, refusing one larger than `limit` bytes.
pub async fn get_small(dest: &dyn Destination, key: &str, limit: usize) -> Result<Vec<u8>> {
    use futures::StreamExt as _;
    let mut object = dest.get(key).await?;
    let mut out = Vec::new();
    while let Some(chunk) = object.chunks.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > limit {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("{key} in {} is larger than {limit} bytes", dest.describe()),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Size of the chunks that [`blocking_read_stream`] yields.
pub const READ_CHUNK: usize = 256 * 1024;

/// Streams a blocking reader's bytes from a blocking thread, a few chunks ahead at most.
///
/// For destinations whose client is blocking (local files, SSH); `describe` names the
/// object in error messages.
pub fn blocking_read_stream<R>(mut reader: R, describe: String) -> BoxStream<'static, Result<Bytes>>
where
    R: Read + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        loop {
            let mut buf = vec![0u8; READ_CHUNK];
            let mut filled = 0;
            // Fill whole chunks so that small reads do not become small messages.
            while filled < buf.len() {
                match reader.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let err = Error::new(ErrorKind::Io, format!("cannot read {describe}: {e}"))
                            .temporary();
                        let _ = tx.blocking_send(Err(err));
                        return;
                    }
                }
            }
            if filled == 0 {
                return;
            }
            buf.truncate(filled);
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return;
            }
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Refuses object keys that are not plain `/`-separated names (empty parts, `.`, `..`, a
/// leading or trailing `/`); `store` names the destination in the error.
pub fn check_object_key(store: &str, key: &str) -> Result<()> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.ends_with('/')
        || key
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..");
    if bad {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("{store}: {key:?} is not a valid object key"),
        ));
    }
    Ok(())
}
