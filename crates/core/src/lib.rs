//! The core of service-backup: the encrypted archive format, the backup and restore
//! pipelines, the `Destination` trait with its `local` implementation, the manifest, the
//! remote path layout and the task state machine.
//!
//! Nothing here prints: progress goes through [`progress::Progress`] and notices through
//! `tracing` events, which the agent renders.

pub mod catalog;
pub mod destination;
pub mod error;
pub mod format;
pub mod layout;
pub mod manifest;
pub mod pipeline;
pub mod progress;
pub mod random;
pub mod secret;
pub mod task;

pub use error::{Error, ErrorKind, Result};
