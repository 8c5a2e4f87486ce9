//! The core of service-backup: the encrypted archive format, the backup and restore
//! pipelines, the `Destination` trait with its `local` implementation, the manifest, the
//! remote path layout and the task state machine.
//!
//! Nothing here prints: progress goes through [`progress::Progress`] and notices through
//! `tracing` events, which the agent renders.

pub mod error;
pub mod format;
pub mod random;

pub use error::{Error, ErrorKind, Result};
