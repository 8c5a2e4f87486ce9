//! A restore as a task: find the backup in the destinations, restore it into the target
//! through a staging folder, then run `restore.restore_executable`; recorded in the task
//! database as a task of kind restore (`queued → running → done | failed`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use service_backup_core::catalog::{self, Selector, list_backups, select};
use service_backup_core::pipeline::restore::{Decryption, ReadStats};
use service_backup_core::{Error, ErrorKind, Result};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::destinations;
use crate::executables;
use crate::progress::Bar;
use crate::tasks::Tasks;

/// What to restore, from where, into where.
#[derive(Debug, Clone)]
pub struct RestorePlan {
    /// Which backup.
    pub selector: Selector,
    /// Only this destination (default: the first that has the backup).
    pub destination: Option<String>,
    /// The keys to decrypt with.
    pub decryption: Decryption,
    /// The folder to restore into.
    pub target: PathBuf,
    /// Replace a target that is not empty (once the backup is fully restored).
    pub replace: bool,
}

/// The folder a restore goes into by default: `restore.target_folder`, else `source_folder`.
pub fn default_target(config: &Config) -> Option<PathBuf> {
    config
        .restore
        .target_folder
        .clone()
        .or_else(|| config.source_folder.clone())
}

/// Runs the queued restore task `id`: restores, then runs the restore executable; the task
/// ends `done` or `failed` with the reason. Returns the backup's name and what was read.
pub async fn run_task(
    config: &Config,
    tasks: &Tasks,
    id: i64,
    plan: &RestorePlan,
    cancel: &CancellationToken,
    bar: Arc<Bar>,
) -> Result<(String, ReadStats)> {
    let guid = service_backup_core::random::hex_token(16)?;
    tasks.start(id, guid).await?;
    tracing::info!(task_id = id, target = %plan.target.display(), "Perform restore started");
    let started = Instant::now();
    let result = restore_and_run(config, plan, cancel, bar).await;
    let seconds = started.elapsed().as_secs_f64();
    match &result {
        Ok((name, stats)) => {
            tracing::info!(
                task_id = id,
                backup_name = %name,
                duration_in_seconds = seconds,
                size_in_bytes = stats.extracted.bytes,
                "Perform restore completed successfully"
            );
            tasks
                .finish(
                    id,
                    Some(name.clone()),
                    stats.extracted.bytes,
                    stats.stored_bytes,
                    seconds,
                )
                .await?;
        }
        Err(e) => {
            tracing::error!(task_id = id, error = %e, "Perform restore completed with error");
            let reason = if e.kind() == ErrorKind::Cancelled {
                "terminated".to_string()
            } else {
                e.to_string()
            };
            tasks.fail(id, None, reason, seconds).await?;
        }
    }
    result
}

async fn restore_and_run(
    config: &Config,
    plan: &RestorePlan,
    cancel: &CancellationToken,
    bar: Arc<Bar>,
) -> Result<(String, ReadStats)> {
    let done = from_destinations(config, plan, Some((&plan.target, plan.replace)), bar).await?;
    if let Some(cmd) = &config.restore.restore_executable {
        tracing::info!(command = %cmd, "Restore executable started");
        executables::run("restore executable", cmd, cancel).await?;
        tracing::info!("Restore executable completed successfully");
    }
    Ok(done)
}

/// Finds the selected backup in the destinations, in configuration order, and restores or
/// (without a target) verifies it from the first destination that has it and answers.
pub async fn from_destinations(
    config: &Config,
    plan: &RestorePlan,
    target: Option<(&Path, bool)>,
    bar: Arc<Bar>,
) -> Result<(String, ReadStats)> {
    let mut last_error: Option<Error> = None;
    let what = if target.is_some() {
        "Restore"
    } else {
        "Verify"
    };
    for dest in destinations::select(config, plan.destination.as_deref())? {
        let attempt = async {
            let d = dest?;
            let entries = list_backups(&*d.destination, &d.layout).await?;
            let entry = select(&entries, &plan.selector)?.clone();
            tracing::info!(destination_name = %d.name, backup_name = %entry.manifest.name, "{what} started");
            let stats = catalog::restore_backup(
                d.destination.clone(),
                &entry,
                &plan.decryption,
                target,
                bar.clone(),
            )
            .await;
            bar.finish();
            stats
                .map(|s| (entry.manifest.name.clone(), s))
                .map_err(|e| {
                    e.context(format!(
                        "backup {} in destination {}",
                        entry.manifest.name, d.name
                    ))
                })
        };
        match attempt.await {
            Ok(done) => return Ok(done),
            // A backup that is damaged or refused is not retried elsewhere silently.
            Err(e)
                if !matches!(
                    e.kind(),
                    ErrorKind::NotFound | ErrorKind::Destination | ErrorKind::Io
                ) =>
            {
                return Err(e);
            }
            Err(e) => {
                tracing::warn!(error = %e, "trying the next destination");
                last_error = Some(e);
            }
        }
    }
    Err(last_error
        .unwrap_or_else(|| Error::new(ErrorKind::NotFound, "no destination has the backup")))
}
