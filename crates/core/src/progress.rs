//! Progress reporting: the library says how far it got; the agent decides how to show it.

/// Receives progress of a long operation, in bytes.
pub trait Progress: Send + Sync {
    /// The total, when it becomes known.
    fn set_total(&self, _bytes: u64) {}
    /// `bytes` more were processed.
    fn advance(&self, bytes: u64);
}

/// Progress that is not shown.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _bytes: u64) {}
}
