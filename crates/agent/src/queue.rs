//! The backup queue that the daemon's worker runs and the API feeds: one backup at a time,
//! one more waiting, further requests coalesced with the waiting one.

use std::sync::Mutex;

use service_backup_core::{Error, ErrorKind};
use tokio::sync::Notify;

use crate::lock;

/// Backups waiting to run, and whether one runs.
#[derive(Default)]
pub struct Queue {
    state: Mutex<QueueState>,
    wake: Notify,
}

#[derive(Default)]
struct QueueState {
    running: bool,
    /// The waiting request, with the task made for it if one was (by the API).
    // The outer `None` is no waiting request, the inner one a request without a task.
    #[allow(clippy::option_option)]
    pending: Option<Option<i64>>,
}

/// What became of a request for a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// It starts now.
    Started,
    /// It waits for the running one.
    Queued,
    /// One was already waiting: they run as one.
    Coalesced,
    /// Refused: one is in progress and `exit_if_in_progress` is set.
    Rejected,
}

impl Queue {
    /// Asks for a backup (from the schedule: its task is made when it runs).
    pub fn request(&self, exit_if_in_progress: bool) -> Enqueued {
        self.request_with(exit_if_in_progress, None::<fn() -> Result<i64, Error>>)
            .map_or(Enqueued::Rejected, |(outcome, _)| outcome)
    }

    /// Asks for a backup that has a task from now on: `create` makes it (unless the
    /// request is rejected, or coalesces with a waiting one that already has a task).
    /// Returns the outcome and the id of the task that will carry the backup out.
    pub fn request_task(
        &self,
        exit_if_in_progress: bool,
        create: impl FnOnce() -> Result<i64, Error>,
    ) -> Result<(Enqueued, Option<i64>), Error> {
        self.request_with(exit_if_in_progress, Some(create))
    }

    fn request_with<F: FnOnce() -> Result<i64, Error>>(
        &self,
        exit_if_in_progress: bool,
        create: Option<F>,
    ) -> Result<(Enqueued, Option<i64>), Error> {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A scheduled run that is rejected is logged by the caller, inside a run's span.
        let has_task = create.is_some();
        let make = |create: Option<F>| create.map(|f| f()).transpose();
        let (outcome, id) = if !st.running && st.pending.is_none() {
            let id = make(create)?;
            st.pending = Some(id);
            (Enqueued::Started, id)
        } else if exit_if_in_progress {
            (Enqueued::Rejected, None)
        } else if let Some(waiting) = st.pending {
            let id = match waiting {
                Some(id) => Some(id),
                None => make(create)?,
            };
            st.pending = Some(id);
            (Enqueued::Coalesced, id)
        } else {
            let id = make(create)?;
            st.pending = Some(id);
            (Enqueued::Queued, id)
        };
        drop(st);
        match outcome {
            Enqueued::Started => self.wake.notify_one(),
            Enqueued::Rejected if has_task => {
                tracing::error!(error = lock::IN_PROGRESS, "{}", lock::IN_PROGRESS);
            }
            Enqueued::Rejected => {}
            Enqueued::Queued => tracing::info!("Backup queued behind the one in progress"),
            Enqueued::Coalesced => {
                tracing::info!("A backup is already queued; this one is coalesced with it");
            }
        }
        Ok((outcome, id))
    }

    /// Takes the waiting request (with its task, if it has one), marking a run as started.
    pub fn take(&self) -> Option<Option<i64>> {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let taken = st.pending.take();
        st.running = taken.is_some();
        taken
    }

    /// Waits until a request starts a run (one made before the wait counts too).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// The run taken last has ended.
    pub fn done(&self) {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .running = false;
    }
}

/// Runs a backup job, turning a panic inside it into an error: the worker lives on, so
/// that the daemon's caller can release the queue and fail the job's task instead of
/// queueing every later backup behind one that will never end.
pub async fn caught<T>(job: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    use futures::FutureExt as _;
    std::panic::AssertUnwindSafe(job)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Io,
                "the backup stopped on an internal error; please report it",
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_that_panics_fails_and_releases_the_queue() {
        let q = Queue::default();
        assert_eq!(q.request(false), Enqueued::Started);
        assert!(q.take().is_some());
        let outcome: Result<(), Error> = caught(async { panic!("inside the job") }).await;
        let e = outcome.unwrap_err();
        assert!(e.to_string().contains("internal error"), "{e}");
        q.done();
        assert_eq!(
            q.request(false),
            Enqueued::Started,
            "the next backup is not queued behind the one that panicked"
        );
    }

    #[test]
    fn the_queue_runs_one_at_a_time_and_coalesces() {
        let q = Queue::default();
        assert_eq!(q.request(false), Enqueued::Started);
        assert!(q.take().is_some());
        assert_eq!(q.request(false), Enqueued::Queued);
        assert_eq!(q.request(false), Enqueued::Coalesced);
        assert_eq!(q.request(true), Enqueued::Rejected);
        q.done();
        assert!(q.take().is_some(), "the queued one runs next");
        q.done();
        assert!(q.take().is_none(), "coalesced requests ran as one");
    }

    #[test]
    fn api_requests_get_the_task_that_carries_them_out() {
        let q = Queue::default();
        let mut next = 10;
        let mut make = || {
            next += 1;
            Ok::<i64, Error>(next)
        };
        assert_eq!(
            q.request_task(false, &mut make).unwrap(),
            (Enqueued::Started, Some(11))
        );
        assert_eq!(q.take(), Some(Some(11)));
        assert_eq!(q.request(false), Enqueued::Queued);
        assert_eq!(
            q.request_task(false, &mut make).unwrap(),
            (Enqueued::Coalesced, Some(12)),
            "a scheduled request waiting gets the API's task"
        );
        assert_eq!(
            q.request_task(false, &mut make).unwrap(),
            (Enqueued::Coalesced, Some(12)),
            "a second API request shares it"
        );
        assert_eq!(
            q.request_task(true, &mut make).unwrap(),
            (Enqueued::Rejected, None)
        );
        q.done();
        assert_eq!(q.take(), Some(Some(12)));
    }
}
