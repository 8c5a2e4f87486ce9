//! The agent's health: a status computed from what persists (the task database, the
//! schedule, the disks, the newest restore drill), so that it survives restarts and sees
//! the backups of the command line too; and the events that publish it on a change and
//! on an interval, to Kafka, a file or stdout.

pub mod event;
pub mod kafka;
pub mod sinks;
pub mod status;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use service_backup_core::task::TaskState;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::Config;
use crate::context::RunContext;
use crate::lock;
use crate::tasks::store::{Task, TaskKind};
use status::{FullDisk, Inputs, LastBackup, Status};

/// Reads the parachute threshold in force (for `config` and its `state_dir`) and the disks
/// at or over it; the API's metrics provide it, so that this module needs nothing of theirs.
pub type DiskCheck = fn(&Config, &Path) -> (u64, Vec<FullDisk>);

/// How often the daemon recomputes the status between backups.
const TICK: Duration = Duration::from_secs(2);

/// The schedule's period: the gap between its next two fire times after `now`.
pub fn period(config: &Config, now: DateTime<Utc>) -> Option<chrono::Duration> {
    let schedule = config.schedule.as_ref()?;
    let first = schedule.next_after(now)?;
    let second = schedule.next_after(first)?;
    Some(second - first)
}

/// Whether a task ended as an attempt to back up: a run refused because another was in
/// progress, or stopped by the operator, is none.
fn is_attempt(t: &Task) -> bool {
    match t.state {
        TaskState::Done | TaskState::Deleted => true,
        TaskState::Failed => t
            .reason
            .as_deref()
            .is_none_or(|r| r != lock::IN_PROGRESS && r != "terminated"),
        _ => false,
    }
}

fn ended(t: &Task) -> DateTime<Utc> {
    t.finished_at.unwrap_or(t.updated_at)
}

/// The inputs of the status from the backup and drill tasks (oldest first) and the disks
/// at or over the parachute `threshold`.
pub fn inputs(
    config: &Config,
    backups: &[Task],
    drills: &[Task],
    opened_at: DateTime<Utc>,
    (threshold, full_disks): (u64, Vec<FullDisk>),
    now: DateTime<Utc>,
) -> Inputs {
    let names: Vec<String> = config
        .destinations
        .iter()
        .map(crate::config::DestinationConfig::display_name)
        .collect();
    let last_backup = backups.iter().rev().find(|t| is_attempt(t)).map(|t| {
        let succeeded = t.state != TaskState::Failed;
        let (stored, failed) = match (&t.stored_destinations, &t.failed_destinations) {
            (Some(s), Some(f)) => (s.clone(), f.clone()),
            _ if succeeded => (names.clone(), Vec::new()),
            _ => (Vec::new(), names.clone()),
        };
        LastBackup {
            at: ended(t),
            succeeded,
            stored,
            failed,
            reason: t.reason.clone().filter(|_| !succeeded),
        }
    });
    let last_success = backups
        .iter()
        .rev()
        .find(|t| matches!(t.state, TaskState::Done | TaskState::Deleted))
        .map(ended);
    let since = backups
        .first()
        .map_or(opened_at, |t| t.created_at.min(opened_at));
    let drill_failed = drills
        .iter()
        .rev()
        .find(|t| matches!(t.state, TaskState::Done | TaskState::Failed))
        .filter(|t| t.state == TaskState::Failed)
        .map(|t| {
            t.reason
                .as_deref()
                .map_or_else(|| "no reason recorded".into(), without_check_output)
        });
    Inputs {
        now,
        since,
        last_backup,
        last_success,
        period: period(config, now),
        threshold,
        full_disks,
        drill_failed,
    }
}

/// A drill's reason without the restore check executable's output, which may hold secrets
/// (a connection string, a password): the events go to the platform, so they say how the
/// check ended and no more; the output stays in the agent's log and task list.
fn without_check_output(reason: &str) -> String {
    match reason.find(" (its last output: ") {
        Some(at) if reason.ends_with(')') => reason[..at].to_string(),
        _ => reason.to_string(),
    }
}

/// The health now, with the inputs it came from.
pub struct Health {
    /// The status.
    pub status: Status,
    /// What it was computed from.
    pub inputs: Inputs,
}

/// Computes the health now from the task database of `ctx`, `config` and the disks as
/// `disks` reads them.
pub async fn current(config: &Config, ctx: &RunContext, disks: DiskCheck) -> Health {
    let backups = ctx.tasks.list(TaskKind::Backup).await.unwrap_or_default();
    let drills = ctx.tasks.list(TaskKind::Drill).await.unwrap_or_default();
    let (owned, state_dir) = (config.clone(), ctx.state_dir.clone());
    let checked = tokio::task::spawn_blocking(move || disks(&owned, &state_dir))
        .await
        .unwrap_or((0, Vec::new()));
    let inputs = inputs(
        config,
        &backups,
        &drills,
        ctx.opened_at,
        checked,
        Utc::now(),
    );
    Health {
        status: status::assess(&inputs),
        inputs,
    }
}

/// Starts publishing health events when `health` has a sink: at once, on each change of
/// status, and every `health.interval`. Returns what the worker pokes after each backup so
/// that the status is recomputed at once. Nothing here delays the daemon's start: the
/// instance id (which may run the service identifier) is found on a task of its own.
pub fn start(config: &Arc<RwLock<Config>>, ctx: &RunContext, disks: DiskCheck) -> Arc<Notify> {
    let poke = Arc::new(Notify::new());
    let current_config = config
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let Some(health) = current_config
        .health
        .clone()
        .filter(crate::config::HealthConfig::has_sink)
    else {
        return poke;
    };
    let (config, ctx, woken) = (config.clone(), ctx.clone(), poke.clone());
    tokio::spawn(async move {
        let instance = crate::identity::served_instance(&current_config, &ctx.cancel).await;
        let names = event::Names::new(
            &health,
            &instance,
            current_config.deployment_name.as_deref(),
        );
        let sinks = sinks::Sinks::start(&health, &names, ctx.cancel.clone());
        tracing::info!(sinks = %sinks.describe(), interval_seconds = health.interval.as_secs(), "Health events started");
        let publisher = Publisher {
            names,
            sinks,
            interval: health.interval,
            disks,
        };
        publisher.run(config, ctx, woken).await;
    });
    poke
}

/// What publishes the events.
struct Publisher {
    names: event::Names,
    sinks: sinks::Sinks,
    interval: Duration,
    disks: DiskCheck,
}

impl Publisher {
    async fn run(self, config: Arc<RwLock<Config>>, ctx: RunContext, poke: Arc<Notify>) {
        let mut last: Option<(status::Level, Instant)> = None;
        loop {
            let current_config = config
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let health = current(&current_config, &ctx, self.disks).await;
            let level = health.status.level;
            let due = last.is_none_or(|(was, at)| was != level || at.elapsed() >= self.interval);
            if due {
                if let Some((was, _)) = last.filter(|(was, _)| *was != level) {
                    tracing::info!(from = was.as_str(), to = level.as_str(), description = %health.status.description, "Health status changed");
                }
                match event::new_id() {
                    Ok(id) => self
                        .sinks
                        .publish(&self.names.event(&health.status, Utc::now(), id)),
                    Err(e) => tracing::error!(error = %e, "A health event could not be made"),
                }
                last = Some((level, Instant::now()));
            }
            let next_repeat =
                last.map_or(TICK, |(_, at)| self.interval.saturating_sub(at.elapsed()));
            tokio::select! {
                () = tokio::time::sleep(TICK.min(next_repeat)) => {}
                () = poke.notified() => {}
                () = ctx.cancel.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::without_check_output;

    #[test]
    fn a_drill_reason_loses_the_check_output_and_keeps_the_exit_code() {
        assert_eq!(
            without_check_output(
                "the restore check executable exited with code 4 (its last output: psql: password=S | x)"
            ),
            "the restore check executable exited with code 4"
        );
        assert_eq!(
            without_check_output("checksum mismatch"),
            "checksum mismatch"
        );
    }
}
