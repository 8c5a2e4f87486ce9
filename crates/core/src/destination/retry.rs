//! Retries with exponential backoff for temporary failures, within a total time budget;
//! shared by every destination rather than written once per service.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::Result;

/// How often and how long to retry a request that failed temporarily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The most attempts, the first included.
    pub max_attempts: u32,
    /// The wait before the second attempt; doubled each time.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// No new attempt starts after this much time since the first.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            budget: Duration::from_mins(2),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Runs `attempt` until it succeeds, fails permanently, or the policy is spent; `what`
    /// names the request in the log line of each retry.
    pub async fn run<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let start = Instant::now();
        let mut backoff = self.initial_backoff;
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let spent =
                        tries >= self.max_attempts || start.elapsed() + backoff > self.budget;
                    if !e.is_temporary() || spent {
                        return Err(e);
                    }
                    tracing::warn!(request = what, attempt = tries, error = %e, "retrying after a temporary failure");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::error::{Error, ErrorKind};

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            budget: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn temporary_failures_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let out = quick(5)
            .run("put", || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(Error::new(ErrorKind::Destination, "503").temporary())
                } else {
                    Ok(7)
                }
            })
            .await
            .unwrap();
        assert_eq!((out, calls.load(Ordering::SeqCst)), (7, 3));
    }

    #[tokio::test]
    async fn permanent_failures_and_spent_policies_stop() {
        let calls = AtomicU32::new(0);
        let err = quick(5)
            .run("put", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Error::new(ErrorKind::Destination, "403"))
            })
            .await
            .unwrap_err();
        assert_eq!((err.message(), calls.load(Ordering::SeqCst)), ("403", 1));
        let calls = AtomicU32::new(0);
        quick(3)
            .run("put", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Error::new(ErrorKind::Destination, "503").temporary())
            })
            .await
            .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
