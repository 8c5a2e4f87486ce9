//! The core of service-backup: the encrypted archive format, the backup and restore
//! operations and the byte pipes under them, the `Destination` trait with its `local`
//! implementation, the manifest, the remote path layout and the task state machine.
//!
//! The `testing` feature adds what other crates' tests use (`destination::conformance`,
//! `format::vectors`); they enable it as a dev-dependency, so no build of the agent has it.
//!
//! Nothing here prints: progress goes through [`progress::Progress`] and notices through
//! `tracing` events, which the agent renders.

pub mod catalog;
pub mod compression;
pub mod destination;
pub mod error;
pub mod format;
pub mod layout;
pub mod manifest;
pub mod ops;
pub mod pipeline;
pub mod progress;
pub mod prune;
pub mod random;
pub mod retention;
pub mod secret;
pub mod task;

pub use error::{Error, ErrorKind, Result};

/// Runs blocking work (file system, CPU-bound) on a blocking thread, never on the async
/// runtime's workers, inside the caller's log span; a panic in it becomes an error.
pub async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    // Lines logged on the thread keep the run's fields (backup_guid, identifier).
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("a background task failed: {e}")))?
}
