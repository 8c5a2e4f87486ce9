//! The daemon: the scheduler, the worker that runs the queue, the API, signals and reload.
//!
//! A scheduler fires backups on the cron schedule into a queue that runs one at a time:
//! with `exit_if_in_progress` a backup that comes due while one runs is rejected, otherwise
//! it waits, and further ones coalesce with the waiting one. SIGTERM and SIGINT (or the
//! shutdown token) stop it gracefully; SIGHUP reloads the configuration (a bad one is
//! logged and the old one kept). Restore drills run beside it on their own schedule
//! ([`crate::drill`]), stopped by the same token.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use service_backup_core::task::TaskState;
use service_backup_core::{Error, ErrorKind, Result};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::api::StateParts;
use crate::catch_up;
use crate::command::{CliError, load_config};
use crate::config::Config;
use crate::context::{RunContext, STOP_BUDGET};
use crate::identity;
use crate::jobs::backup;
use crate::progress::Bar;
use crate::queue::{Enqueued, Queue};
use crate::schedule::{Plan, go_duration};

mod summary;

/// The longest single sleep of the scheduler, so that a clock change is noticed.
const TICK: Duration = Duration::from_secs(30);

/// Serves until SIGTERM, SIGINT or `shutdown`: backups on the schedule and those asked for
/// on `queue`, the API when configured; `path` is the configuration file reread on SIGHUP.
pub async fn serve(
    path: PathBuf,
    config: Config,
    queue: Arc<Queue>,
    shutdown: CancellationToken,
) -> Result<()> {
    if !config.backups_enabled() {
        // The original's main.go, before its scheduler started.
        tracing::info!("No destination provided - skipping backup");
    }
    tracing::info!("Service-backup Started");
    let mut term = signal(SignalKind::terminate()).map_err(|e| signal_error(&e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| signal_error(&e))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| signal_error(&e))?;
    if !config.backups_enabled() {
        summary::log_start(&path, &config, None);
        tracing::info!("Backups Disabled");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            () = shutdown.cancelled() => {}
        }
        tracing::info!("All backup processes terminated. Exiting");
        return Ok(());
    }
    let ctx = RunContext::open(&config).await?;
    // The instance id, once a spread schedule needs it for its offset.
    let mut instance = None;
    let plan = catch_up::plan(&config, &mut instance, &ctx.cancel).await;
    summary::log_start(&path, &config, plan.as_ref());
    let api_config = config.api.clone();
    let config = Arc::new(RwLock::new(config));
    let mut refresher = None;
    let api = match &api_config {
        Some(api) => {
            let instance_id = served_instance(&config, &ctx).await;
            let parts = StateParts {
                config: config.clone(),
                ctx: ctx.clone(),
                queue: queue.clone(),
                instance_id: instance_id.clone(),
            };
            let started = crate::api::start(api, parts).await?;
            // The API answers from the catalogs: kept fresh in the background while it is
            // used, so that a request rarely waits for a refresh, and listed whole on the
            // slow schedule otherwise.
            refresher = Some(tokio::spawn(crate::catalog::refresh_on_schedule(
                config.clone(),
                ctx.tasks.clone(),
                instance_id,
                crate::catalog::Pace::DAEMON,
                ctx.cancel.clone(),
            )));
            Some(started)
        }
        None => None,
    };
    let health = crate::health::start(&config, &ctx, crate::api::metrics::full_disks);
    let worker = tokio::spawn(work(config.clone(), ctx.clone(), queue.clone(), health));
    catch_up::on_start(&config, &ctx, &queue, &mut instance).await;
    let drills = tokio::spawn(crate::drill::run_on_schedule(config.clone(), ctx.clone()));

    loop {
        let current = config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let exit_if_in_progress = current.exit_if_in_progress;
        let schedule = catch_up::plan(&current, &mut instance, &ctx.cancel).await;
        let mut next = schedule.as_ref().and_then(|s| s.next_after(Utc::now()));
        if let Some(next) = next {
            let offset = schedule.as_ref().and_then(Plan::offset).map(go_duration);
            tracing::debug!(next = %next.to_rfc3339(), offset = offset.as_deref(), "Next backup scheduled");
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
            () = shutdown.cancelled() => break,
            _ = hup.recv() => {
                reload(&path, &config);
                if let Some(api) = &api {
                    let file = config
                        .read()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .api
                        .as_ref()
                        .and_then(|a| a.bearer_tokens_file.clone());
                    api.auth.reload(file.as_deref());
                }
            }
        }
        if fired && queue.request(exit_if_in_progress) == Enqueued::Rejected {
            // As the original: the rejected run has its own guid and identifier.
            let current = config
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let cancel = ctx.cancel.clone();
            tokio::spawn(async move {
                backup::log_rejected(&current, &cancel).await;
                crate::alerts::after_rejected(&current);
            });
        }
    }

    ctx.cancel.cancel();
    if let Some(api) = api {
        api.shutdown().await;
    }
    if tokio::time::timeout(STOP_BUDGET, worker).await.is_err() {
        tracing::error!("A backup did not stop in time; exiting anyway");
    }
    if tokio::time::timeout(STOP_BUDGET, drills).await.is_err() {
        tracing::error!("A restore drill did not stop in time; exiting anyway");
    }
    if let Some(refresher) = refresher {
        let _ = tokio::time::timeout(STOP_BUDGET, refresher).await;
    }
    // A backup still waiting its turn never runs: its task says so instead of staying
    // queued.
    if let Some(Some(id)) = queue.take()
        && let Err(e) = ctx.tasks.fail(id, None, "terminated".into(), 0.0).await
    {
        tracing::error!(task_id = id, error = %e, "The queued backup could not be marked failed");
    }
    tracing::info!("All backup processes terminated. Exiting");
    Ok(())
}

async fn work(
    config: Arc<RwLock<Config>>,
    ctx: RunContext,
    queue: Arc<Queue>,
    health: Arc<tokio::sync::Notify>,
) {
    // The instance id, once a spread schedule needs it for its offset.
    let mut instance = None;
    loop {
        tokio::select! {
            () = queue.woken() => {}
            () = ctx.cancel.cancelled() => return,
        }
        while let Some(task) = queue.take() {
            let current = config
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let trigger = if task.is_some() { "api" } else { "schedule" };
            let outcome =
                crate::queue::caught(backup::run(&current, &ctx, trigger, task, Bar::hidden()))
                    .await;
            crate::alerts::after_backup(&current, &ctx, &outcome).await;
            if let Err(e) = outcome {
                tracing::error!(error = %e, "Perform backup completed with error");
                if let Some(id) = task {
                    fail_unfinished(&ctx, id, &e).await;
                }
            }
            queue.done();
            // The health status is recomputed at once, not on its next tick.
            health.notify_one();
            if ctx.cancel.is_cancelled() {
                return;
            }
            summary::log_next(
                catch_up::plan(&current, &mut instance, &ctx.cancel)
                    .await
                    .as_ref(),
            );
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

/// The instance id the API serves, from the configuration in force.
async fn served_instance(config: &RwLock<Config>, ctx: &RunContext) -> String {
    let current = config
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    identity::served_instance(&current, &ctx.cancel).await
}

/// Rereads the configuration at `path` into `config`; a bad one is logged and the one in
/// force kept. Returns whether the new one was taken.
pub fn reload(path: &Path, config: &RwLock<Config>) -> bool {
    match load_config(path) {
        Ok(new) => {
            *config
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = new;
            tracing::info!("Configuration reloaded");
            true
        }
        Err(CliError::Config(problems)) => {
            tracing::error!(problems = %problems, "Configuration reload failed; keeping the previous configuration");
            false
        }
        Err(CliError::Error(e)) => {
            tracing::error!(error = %e, "Configuration reload failed; keeping the previous configuration");
            false
        }
    }
}

fn signal_error(e: &std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("cannot listen for signals: {e}"))
}
