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
use service_backup_core::task::TaskState;
use service_backup_core::{Error, ErrorKind};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

use crate::api::StateParts;
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
    /// The waiting request, with the task made for it if one was (by the API).
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
            Enqueued::Rejected => tracing::error!("{}", lock::IN_PROGRESS),
            Enqueued::Queued => tracing::info!("Backup queued behind the one in progress"),
            Enqueued::Coalesced => {
                tracing::info!("A backup is already queued; this one is coalesced with it");
            }
        }
        Ok((outcome, id))
    }

    /// Takes the waiting request (with its task, if it has one), marking a run as started.
    fn take(&self) -> Option<Option<i64>> {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let taken = st.pending.take();
        st.running = taken.is_some();
        taken
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
    let api_config = config.api.clone();
    let config = Arc::new(RwLock::new(config));
    let queue = Arc::new(Queue::default());
    let api = match &api_config {
        Some(api) => {
            let parts = StateParts {
                config: config.clone(),
                ctx: ctx.clone(),
                queue: queue.clone(),
                instance_id: api_instance_id(&config, &ctx).await,
            };
            Some(crate::api::start(api, parts).await?)
        }
        None => None,
    };
    let worker = tokio::spawn(work(config.clone(), ctx.clone(), queue.clone()));

    loop {
        let (schedule, exit_if_in_progress) = {
            let c = config
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (c.schedule.clone(), c.exit_if_in_progress)
        };
        let mut next = schedule.as_ref().and_then(|s| s.next_after(Utc::now()));
        if let Some(next) = next {
            tracing::debug!(next = %next.to_rfc3339(), "Next backup scheduled");
        }
        let mut fired = false;
        // Sleep in ticks so that a wall clock set forward or back is noticed: forward, the
        // due backup runs once; back, the fire time is taken again from the new time, so
        // the schedule goes on instead of waiting for the clock to catch up.
        let wait = async {
            loop {
                let Some(due) = next else {
                    tokio::time::sleep(TICK).await;
                    continue;
                };
                let now = Utc::now();
                if let Some(earlier) = schedule
                    .as_ref()
                    .and_then(|s| s.next_after(now))
                    .filter(|t| *t < due)
                {
                    tracing::info!(next = %earlier.to_rfc3339(), "The clock was set back; the next backup is rescheduled");
                    next = Some(earlier);
                    continue;
                }
                let left = (due - now).to_std().unwrap_or(Duration::ZERO);
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
            _ = hup.recv() => {
                reload(&path, &config);
                if let Some(api) = &api {
                    let file = config
                        .read()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .api
                        .as_ref()
                        .map(|a| a.bearer_tokens_file.clone());
                    api.tokens.reload(file.as_deref());
                }
            }
        }
        if fired {
            queue.request(exit_if_in_progress);
        }
    }

    ctx.cancel.cancel();
    if let Some(api) = api {
        api.shutdown().await;
    }
    if tokio::time::timeout(STOP_BUDGET, worker).await.is_err() {
        tracing::error!("A backup did not stop in time; exiting anyway");
    }
    // A backup still waiting its turn never runs: its task says so instead of staying
    // queued.
    if let Some(Some(id)) = queue.take()
        && let Err(e) = ctx.tasks.fail(id, None, "terminated".into(), 0.0).await
    {
        tracing::error!(task_id = id, error = %e, "The queued backup could not be marked failed");
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
        while let Some(task) = queue.take() {
            let current = config
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let trigger = if task.is_some() { "api" } else { "schedule" };
            if let Err(e) = runner::backup(&current, &ctx, trigger, task, Bar::hidden()).await {
                tracing::error!(error = %e, "Perform backup completed with error");
                if let Some(id) = task {
                    fail_unfinished(&ctx, id, &e).await;
                }
            }
            queue.done();
            if ctx.cancel.is_cancelled() {
                return;
            }
        }
    }
}

/// Fails task `id` with `e` as its reason if it is still queued or running, so that no
/// error leaves an API task waiting forever.
async fn fail_unfinished(ctx: &RunContext, id: i64, e: &Error) {
    let open = ctx
        .tasks
        .get(id)
        .await
        .map(|t| t.is_some_and(|t| matches!(t.state, TaskState::Queued | TaskState::Running)));
    let failed = match open {
        Ok(true) => ctx.tasks.fail(id, None, e.to_string(), 0.0).await,
        Ok(false) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = failed {
        tracing::error!(task_id = id, error = %e, "The backup task could not be marked failed");
    }
}

/// The instance id the API serves: configured, else the service identifier's output, else
/// the host name (as a backup run names it).
async fn api_instance_id(config: &RwLock<Config>, ctx: &RunContext) -> String {
    let current = config
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let identifier = match (&current.instance_id, &current.service_identifier_executable) {
        (None, Some(cmd)) => {
            crate::executables::run("service identifier executable", cmd, &ctx.cancel)
                .await
                .inspect_err(
                    |e| tracing::error!(error = %e, "Service identifier executable failed"),
                )
                .ok()
        }
        _ => None,
    };
    runner::instance_id(&current, identifier.as_deref())
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
