//! A bound on how slowly an answer's body may come: at least [`MIN_PACE_BYTES`] within
//! every window of time, else the read is given up as stalled. A silent connection and one
//! that trickles a byte every few seconds are both caught, which an idle timeout alone
//! (reset by every byte) would not do for the second.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, ErrorKind};

/// The fewest bytes a body must bring within each window.
pub const MIN_PACE_BYTES: u64 = 64 * 1024;

/// The bytes a body must bring after a resume before the resumes are forgiven: a store
/// that answers each resume with a little, then stalls, runs out of resumes instead of
/// being read at one window's pace for ever.
pub const RESUME_CREDIT_BYTES: u64 = 8 * 1024 * 1024;

/// The pace of one body being read.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    window: Duration,
    since: Instant,
    bytes: u64,
}

impl Pace {
    /// A pace whose first window starts now.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            since: Instant::now(),
            bytes: 0,
        }
    }

    /// Waits for `next` (the body's next chunk) until the current window ends; `None`
    /// once it ended with fewer than [`MIN_PACE_BYTES`] in it.
    pub async fn wait<F: Future>(&self, next: F) -> Option<F::Output> {
        tokio::time::timeout_at(self.since + self.window, next)
            .await
            .ok()
    }

    /// Counts `n` bytes that came; a window that got its bytes starts a new one.
    pub fn arrived(&mut self, n: u64) {
        self.bytes += n;
        if self.bytes >= MIN_PACE_BYTES {
            self.since = Instant::now();
            self.bytes = 0;
        }
    }

    /// Starts a new window, after a wait that was not the store's (the reader's).
    pub fn restart(&mut self) {
        self.since = Instant::now();
        self.bytes = 0;
    }

    /// The temporary error of a stalled body: `store` names the destination, `what` the
    /// read.
    pub fn stalled(&self, store: &str, what: &str) -> Error {
        Error::new(
            ErrorKind::Destination,
            format!(
                "{store}: cannot {what}: fewer than {} KiB came in {} s",
                MIN_PACE_BYTES / 1024,
                self.window.as_secs_f64()
            ),
        )
        .with_hint("check the store's health and the network between this VM and the store")
        .temporary()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_trickle_stalls_and_a_steady_body_does_not() {
        // a byte every 100 ms: each arrives, but the window ends without enough of them
        let mut pace = Pace::new(Duration::from_millis(500));
        let started = Instant::now();
        let mut got = 0;
        while pace
            .wait(tokio::time::sleep(Duration::from_millis(100)))
            .await
            .is_some()
        {
            pace.arrived(1);
            got += 1;
        }
        assert!((3..=5).contains(&got), "{got}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let err = Pace::new(Duration::from_secs(5)).stalled("s3 bucket b", "read k");
        assert!(err.is_temporary());
        assert_eq!(
            err.message(),
            "s3 bucket b: cannot read k: fewer than 64 KiB came in 5 s"
        );
        // 64 KiB every 50 ms goes on for as long as it lasts, past many windows
        let mut pace = Pace::new(Duration::from_millis(200));
        for _ in 0..20 {
            let tick = tokio::time::sleep(Duration::from_millis(50));
            assert!(pace.wait(tick).await.is_some());
            pace.arrived(MIN_PACE_BYTES);
        }
    }
}
