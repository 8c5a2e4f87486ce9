//! Catch-up after downtime: when the daemon starts and its schedule fired since the last
//! successful backup (a VM stopped over its schedule, a daemon that died), one backup is
//! queued at once, however many runs were missed.
//!
//! The last success is the newest `done` backup task in the task database; when there is
//! none (a fresh VM, a new `state_dir`), the newest manifest of this instance in the
//! destinations' catalogs, each refreshed within [`LIST_LIMIT`] and all at once, so that a destination
//! that cannot be listed neither holds the start for long nor, on its own, causes a
//! catch-up. With no history at all (a brand-new instance) there is nothing to catch up:
//! the first backup comes on schedule. `catch_up: false` turns this off.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use service_backup_core::prune::MAX_CLOCK_SKEW;
use service_backup_core::retention::time_of_name;
use service_backup_core::task::TaskState;
use service_backup_core::{Error, ErrorKind, Result, blocking};
use tokio_util::sync::CancellationToken;

use crate::catalog::{self, Mode};
use crate::config::Config;
use crate::context::RunContext;
use crate::destinations;
use crate::identity;
use crate::queue::Queue;
use crate::schedule::{Plan, go_duration};
use crate::tasks::Tasks;
use crate::tasks::store::TaskKind;

/// How long one destination may take to list its backups when the start looks for the last
/// success there.
pub const LIST_LIMIT: Duration = Duration::from_secs(20);

/// The task trigger of a catch-up backup, as `tasks` shows it.
pub const TRIGGER: &str = "catch-up";

/// A run of the schedule that no backup followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed {
    /// The newest run of the schedule since the last success.
    pub at: DateTime<Utc>,
    /// The last success.
    pub last_success: DateTime<Utc>,
}

/// The run of `plan` missed since `last_success`, up to `now`; `None` when the schedule
/// did not fire since, or when there is no success to count from.
pub fn missed(
    plan: &Plan,
    last_success: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Missed> {
    let last_success = last_success?;
    plan.newest_in(last_success, now)
        .map(|at| Missed { at, last_success })
}

/// Whether a success dated `dated` is too far in the future to be believed at `now`: more
/// than prune's [`MAX_CLOCK_SKEW`] ahead (a planted manifest, a clock that jumped). Such a
/// success would hold every catch-up off until its date; it is logged and left out.
fn dated_too_late(dated: DateTime<Utc>, now: DateTime<Utc>, what: &str, name: &str) -> bool {
    let too_late = dated > now + MAX_CLOCK_SKEW;
    if too_late {
        tracing::warn!(
            backup = name,
            dated = %dated.to_rfc3339_opts(SecondsFormat::Secs, true),
            found_in = what,
            "Catch-up: a backup dated more than {} hour(s) after this machine's clock is ignored",
            MAX_CLOCK_SKEW.num_hours()
        );
    }
    too_late
}

/// When the newest backup task that is `done` finished, from the task database; one dated
/// more than [`MAX_CLOCK_SKEW`] after `now` is ignored.
pub async fn last_recorded_success(
    tasks: &Tasks,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    let backups = tasks.list(TaskKind::Backup).await?;
    // A done task changes no more: its last change is its end (for a backup recorded as
    // discovered, the end its manifest gives).
    Ok(backups
        .iter()
        .filter(|t| t.state == TaskState::Done)
        .filter(|t| {
            let name = t.backup_name.as_deref().unwrap_or_default();
            !dated_too_late(t.updated_at, now, "the task database", name)
        })
        .map(|t| t.updated_at)
        .max())
}

/// When the newest backup of `instance_id` in the destinations finished, from the catalog,
/// each destination's refreshed first within `limit` (incrementally once filled: a start
/// neither lists a shared prefix whole each time nor holds its listing); one that cannot be
/// refreshed is logged and left out, as is a backup dated more than [`MAX_CLOCK_SKEW`]
/// after `now` (by its name or its times, as prune dates it) and, when this agent has
/// keys, a backup that is not encrypted.
pub async fn last_stored_success(
    config: &Config,
    tasks: &Tasks,
    instance_id: &str,
    limit: Duration,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let targets = match destinations::select(config, None) {
        Ok(targets) => targets,
        Err(e) => {
            tracing::warn!(error = %e, "Catch-up: the destinations cannot be listed");
            return None;
        }
    };
    let every = catalog::full_every(config);
    let refreshes = targets.into_iter().map(|target| async move {
        let target = target?;
        let name = target.name.clone();
        let refreshed = tokio::time::timeout(
            limit,
            catalog::refresh_one(tasks, &target, instance_id, Mode::Auto, false, every),
        )
        .await;
        match refreshed {
            Ok(done) => done.map_err(|e| e.context(format!("destination {name}")))?,
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Destination,
                    format!(
                        "destination {name} was not listed within {} s",
                        limit.as_secs()
                    ),
                ));
            }
        };
        let (key, me) = (catalog::key_of(&target), instance_id.to_string());
        tasks
            .catalog(move |s| s.catalog_entries(&key, Some(&me)))
            .await
    });
    // With keys, archives are encrypted: a plain backup is none of this agent's (one planted
    // by whoever can write the prefix), as prune does not trust it either.
    let encrypted = config.keyring.is_some();
    let mut newest = None;
    for refreshed in futures::future::join_all(refreshes).await {
        match refreshed {
            Ok(entries) => {
                let found = entries
                    .iter()
                    .filter(|e| {
                        let plain = encrypted && !e.manifest.is_encrypted();
                        if plain {
                            tracing::warn!(
                                backup = %e.manifest.name,
                                "Catch-up: a backup that is not encrypted, while this agent encrypts, is ignored"
                            );
                        }
                        !plain
                    })
                    .filter(|e| {
                        let m = &e.manifest;
                        let dated = time_of_name(&m.name)
                            .map_or(m.started_at, |t| t.max(m.started_at))
                            .max(m.finished_at);
                        !dated_too_late(dated, now, "the destinations", &m.name)
                    })
                    .map(|e| e.manifest.finished_at)
                    .max();
                newest = newest.max(found);
            }
            Err(e) => tracing::warn!(
                error = %e,
                "Catch-up: a destination could not be listed; its backups are not counted"
            ),
        }
    }
    newest
}

/// The schedule of `config` as this instance runs it; `instance` holds the instance id
/// once a spread needed it (configured, else the service identifier's output, else the
/// host name, as the API and backup names have it).
pub async fn plan(
    config: &Config,
    instance: &mut Option<String>,
    cancel: &CancellationToken,
) -> Option<Plan> {
    let schedule = config.schedule.as_ref()?;
    // A configured id is taken as it is now (a reload may change it); a derived one is
    // resolved once.
    if config.spread.is_some() && config.instance_id.is_none() && instance.is_none() {
        *instance = Some(bounded_instance(config, cancel).await);
    }
    let id = config
        .instance_id
        .as_deref()
        .or(instance.as_deref())
        .unwrap_or_default();
    Some(Plan::new(schedule, config.spread, id))
}

/// How long the service identifier may take when a spread needs the instance id (the
/// daemon's start waits for it).
const IDENTIFY_LIMIT: Duration = Duration::from_secs(30);

/// The instance id as [`identity::served_instance`] finds it; a service identifier still
/// running after [`IDENTIFY_LIMIT`] is stopped, and the host name taken, so that the start
/// is never held for long.
async fn bounded_instance(config: &Config, cancel: &CancellationToken) -> String {
    let token = cancel.child_token();
    let resolving = identity::served_instance(config, &token);
    tokio::pin!(resolving);
    tokio::select! {
        id = &mut resolving => id,
        () = tokio::time::sleep(IDENTIFY_LIMIT) => {
            tracing::warn!(
                limit_seconds = IDENTIFY_LIMIT.as_secs(),
                "The service identifier did not answer in time; the offset of this instance comes from its host name until the next start"
            );
            token.cancel();
            // Stopped, it yields no identifier: the host name.
            resolving.await
        }
    }
}

/// Logs where in its spread this instance runs, and when next.
fn log_spread(plan: &Plan, config: &Config) {
    let (Some(offset), Some(spread)) = (plan.offset(), config.spread) else {
        return;
    };
    let within = match spread {
        crate::schedule::Spread::Jitter(span) => format!("cron_jitter {}", go_duration(span)),
        crate::schedule::Spread::Window(window) => format!("backup_window {window}"),
    };
    let next = plan
        .next_after(Utc::now())
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
    tracing::info!(
        offset = %go_duration(offset),
        within = %within,
        next = next.as_deref(),
        "Backups of this instance run at a fixed offset"
    );
}

/// At the daemon's start: logs the spread, if any, and queues one backup when the
/// schedule fired since the last success, unless `catch_up` is off. Returns at once: the
/// decision is made in the background (it may list the destinations). `instance` is as
/// [`plan`] has it.
pub async fn on_start(
    config: &RwLock<Config>,
    ctx: &RunContext,
    queue: &Arc<Queue>,
    instance: &mut Option<String>,
) {
    let config = config
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let Some(plan) = plan(&config, instance, &ctx.cancel).await else {
        return;
    };
    log_spread(&plan, &config);
    if !config.catch_up {
        return;
    }
    let (ctx, queue) = (ctx.clone(), queue.clone());
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = catch_up(&config, &ctx, &queue, &plan, Utc::now()) => {}
            () = cancel.cancelled() => {}
        }
    });
}

async fn catch_up(
    config: &Config,
    ctx: &RunContext,
    queue: &Arc<Queue>,
    plan: &Plan,
    now: DateTime<Utc>,
) {
    let (last_success, from) = match last_recorded_success(&ctx.tasks, now).await {
        Ok(Some(at)) => (Some(at), "the task database"),
        Ok(None) => {
            let instance = identity::served_instance(config, &ctx.cancel).await;
            (
                last_stored_success(config, &ctx.tasks, &instance, LIST_LIMIT, now).await,
                "the destinations",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "Catch-up: the task database cannot be read; no catch-up");
            return;
        }
    };
    let Some(missed) = missed(plan, last_success, now) else {
        match last_success {
            None => tracing::info!("No backup of this instance was found: nothing to catch up"),
            Some(at) => tracing::info!(
                last_success = %at.to_rfc3339_opts(SecondsFormat::Secs, true),
                last_success_from = from,
                "No backup was missed since the last success"
            ),
        }
        return;
    };
    let at = missed.at.to_rfc3339_opts(SecondsFormat::Secs, true);
    tracing::info!(
        missed = %at,
        last_success = %missed.last_success.to_rfc3339_opts(SecondsFormat::Secs, true),
        last_success_from = from,
        "Catching up a backup missed at {at}"
    );
    let exit_if_in_progress = config.exit_if_in_progress;
    let tasks = ctx.tasks.clone();
    let queue = queue.clone();
    let requested = blocking(move || {
        queue.request_task(exit_if_in_progress, || {
            tasks.create_now(TaskKind::Backup, TRIGGER)
        })
    })
    .await;
    // A rejection (`exit_if_in_progress` with a backup running) is logged by the queue.
    if let Err(e) = requested {
        tracing::error!(error = %e, "Catch-up: the backup could not be queued");
    }
}

#[cfg(test)]
mod tests;
