//! The daemon: `service-backup CONFIG` and `service-backup run CONFIG`.
//!
//! A scheduler fires backups on the cron schedule into a queue that runs one at a time:
//! with `exit_if_in_progress` a backup that comes due while one runs is rejected, otherwise
//! it waits, and further ones coalesce with the waiting one. SIGTERM and SIGINT stop it
//! gracefully; SIGHUP reloads the configuration (a bad one is logged and the old one kept).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::Utc;
use service_backup_core::{Error, ErrorKind};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

use crate::cli::{CliResult, Outcome, load_config, runtime};
use crate::config::Config;
use crate::lock;
use crate::progress::Bar;
use crate::runner::{self, RunContext, STOP_BUDGET};

/// The longest single sleep of the scheduler, so that a clock change is noticed.
const TICK: Duration = Duration::from_secs(30);

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(path: &Path) -> CliResult {
    let config = load_config(path)?;
    let rt = runtime()?;
    let result = rt.block_on(serve(path.to_path_buf(), config));
    // Aborts of uploads in flight are awaited inside `serve`; this only bounds stragglers.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Backups waiting to run, and whether one runs.
#[derive(Default)]
pub struct Queue {
    state: Mutex<QueueState>,
    wake: Notify,
}

#[derive(Default)]
struct QueueState {
    running: bool,
    pending: bool,
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
    /// Asks for a backup.
    pub fn request(&self, exit_if_in_progress: bool) -> Enqueued {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let outcome = if !st.running && !st.pending {
            st.pending = true;
            Enqueued::Started
        } else if exit_if_in_progress {
            Enqueued::Rejected
        } else if st.pending {
            Enqueued::Coalesced
        } else {
            st.pending = true;
            Enqueued::Queued
        };
        drop(st);
        match outcome {
            Enqueued::Started => self.wake.notify_one(),
            Enqueued::Rejected => tracing::error!("{}", lock::IN_PROGRESS),
            Enqueued::Queued => tracing::info!("Backup queued behind the one in progress"),
            Enqueued::Coalesced => {
                tracing::info!("A backup is already queued; this one is coalesced with it");
            }
        }
        outcome
    }

    /// Takes the waiting request, marking a run as started.
    fn take(&self) -> bool {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let take = st.pending;
        st.pending = false;
        st.running = take;
        take
    }

    fn done(&self) {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .running = false;
    }
}

async fn serve(path: PathBuf, config: Config) -> CliResult {
    tracing::info!("Service-backup Started");
    let mut term = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut int = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut hup = signal(SignalKind::hangup()).map_err(signal_error)?;
    if !config.backups_enabled() {
        tracing::info!("Backups Disabled");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("All backup processes terminated. Exiting");
        return Ok(Outcome::Success);
    }
    let ctx = RunContext::open(&config).await?;
    let config = Arc::new(RwLock::new(config));
    let queue = Arc::new(Queue::default());
    let worker = tokio::spawn(work(config.clone(), ctx.clone(), queue.clone()));

    loop {
        let (schedule, exit_if_in_progress) = {
            let c = config
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (c.schedule.clone(), c.exit_if_in_progress)
        };
        let next = schedule.as_ref().and_then(|s| s.next_after(Utc::now()));
        if let Some(next) = next {
            tracing::debug!(next = %next.to_rfc3339(), "Next backup scheduled");
        }
        let mut fired = false;
        // Sleep in ticks so that a wall clock set forward or back is noticed.
        let wait = async {
            loop {
                let Some(next) = next else {
                    tokio::time::sleep(TICK).await;
                    continue;
                };
                let left = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(TICK)).await;
            }
        };
        tokio::select! {
            () = wait => fired = true,
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(&path, &config),
        }
        if fired {
            queue.request(exit_if_in_progress);
        }
    }

    ctx.cancel.cancel();
    if tokio::time::timeout(STOP_BUDGET, worker).await.is_err() {
        tracing::error!("A backup did not stop in time; exiting anyway");
    }
    tracing::info!("All backup processes terminated. Exiting");
    Ok(Outcome::Success)
}

async fn work(config: Arc<RwLock<Config>>, ctx: RunContext, queue: Arc<Queue>) {
    loop {
        tokio::select! {
            () = queue.wake.notified() => {}
            () = ctx.cancel.cancelled() => return,
        }
        while queue.take() {
            let current = config
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            if let Err(e) = runner::backup(&current, &ctx, "schedule", Bar::hidden()).await {
                tracing::error!(error = %e, "Perform backup completed with error");
            }
            queue.done();
            if ctx.cancel.is_cancelled() {
                return;
            }
        }
    }
}

fn reload(path: &Path, config: &RwLock<Config>) {
    match load_config(path) {
        Ok(new) => {
            *config
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = new;
            tracing::info!("Configuration reloaded");
        }
        Err(crate::cli::CliError::Config(problems)) => {
            tracing::error!(problems = %problems, "Configuration reload failed; keeping the previous configuration");
        }
        Err(crate::cli::CliError::Error(e)) => {
            tracing::error!(error = %e, "Configuration reload failed; keeping the previous configuration");
        }
    }
}

fn signal_error(e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("cannot listen for signals: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_runs_one_at_a_time_and_coalesces() {
        let q = Queue::default();
        assert_eq!(q.request(false), Enqueued::Started);
        assert!(q.take());
        assert_eq!(q.request(false), Enqueued::Queued);
        assert_eq!(q.request(false), Enqueued::Coalesced);
        assert_eq!(q.request(true), Enqueued::Rejected);
        q.done();
        assert!(q.take(), "the queued one runs next");
        q.done();
        assert!(!q.take(), "coalesced requests ran as one");
    }
}
