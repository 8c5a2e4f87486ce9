//! One backup run, in the order of the product contract: a new guid, the service
//! identifier, the in-progress check, the source executable ("Perform backup"), the upload
//! to every destination at once, the cleanup executable; recorded as a task, logged with
//! the original's messages at the original's moments (its `executor/executor.go`).

use std::sync::Arc;
use std::time::Instant;

use chrono::{Local, Utc};
use service_backup_core::format::Keyring;
use service_backup_core::layout::backup_name;
use service_backup_core::ops::backup::{BackupPlan, run_backup};
use service_backup_core::pipeline::archive::{ArchiveSpec, source_size};
use service_backup_core::{Error, ErrorKind, Result};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::Config;
use crate::context::RunContext;
use crate::destinations;
use crate::executables;
use crate::identity;
use crate::lock;
use crate::logging::SESSION_FIELD;
use crate::progress::Bar;
use crate::tasks::Tasks;
use crate::tasks::store::TaskKind;

/// How a backup run ended.
#[derive(Debug, Default)]
pub struct RunReport {
    /// The task recording it, if one was created.
    pub task_id: Option<i64>,
    /// The backup's name, if the upload started.
    pub name: Option<String>,
    /// The problems, one per line; empty when every destination got the backup.
    pub problems: Vec<String>,
    /// Refused because another backup was in progress (`exit_if_in_progress`).
    pub rejected: bool,
    /// Stopped by SIGTERM or SIGINT.
    pub cancelled: bool,
    /// Bytes of file content archived.
    pub plain_bytes: u64,
    /// Bytes stored in each destination.
    pub stored_bytes: u64,
    /// Files archived.
    pub file_count: u64,
    /// The instance id the backup was made under.
    pub instance_id: Option<String>,
    /// The destinations that got the backup.
    pub stored_in: Vec<String>,
}

impl RunReport {
    /// Whether every destination got the backup.
    pub fn succeeded(&self) -> bool {
        self.problems.is_empty() && !self.rejected && !self.cancelled
    }
}

/// A new random guid for a run: a version 4 UUID, as the original's `uuid.NewV4()`.
fn new_guid() -> Result<String> {
    service_backup_core::random::uuid_v4()
}

/// Runs one backup now, recorded as a task with `trigger` (`schedule`, `manual`, `api`):
/// the queued task `queued` when one was created beforehand (by the API), else a new one.
pub async fn run(
    config: &Config,
    ctx: &RunContext,
    trigger: &'static str,
    queued: Option<i64>,
    bar: Arc<Bar>,
) -> Result<RunReport> {
    let guid = new_guid()?;
    let span = tracing::info_span!(
        "backup",
        backup_guid = %guid,
        identifier = tracing::field::Empty,
        lager_session = tracing::field::Empty
    );
    async {
        let identifier = identify(config, &ctx.cancel).await;
        let _lock =
            match lock::acquire(&ctx.state_dir, config.exit_if_in_progress, &ctx.cancel).await {
                Ok(l) => l,
                Err(e) if e.message() == lock::IN_PROGRESS => {
                    tracing::error!(error = lock::IN_PROGRESS, "{}", lock::IN_PROGRESS);
                    if let Some(id) = queued {
                        ctx.tasks
                            .fail(id, None, lock::IN_PROGRESS.into(), 0.0)
                            .await?;
                    }
                    return Ok(RunReport {
                        task_id: queued,
                        rejected: true,
                        problems: vec![lock::IN_PROGRESS.into()],
                        ..RunReport::default()
                    });
                }
                Err(e) if e.kind() == ErrorKind::Cancelled => {
                    if let Some(id) = queued {
                        ctx.tasks.fail(id, None, "terminated".into(), 0.0).await?;
                    }
                    return Ok(RunReport {
                        task_id: queued,
                        cancelled: true,
                        problems: vec![e.to_string()],
                        ..RunReport::default()
                    });
                }
                Err(e) => {
                    // Recorded as a failed task, the queued one or a new one, so that the
                    // reason shows in `tasks` and the API instead of a task left queued. The
                    // dump could not be made, so it is logged as the perform step's failure.
                    tracing::error!(error = %e, "Perform backup completed with error");
                    let reason = e.to_string();
                    let id = match queued {
                        Some(id) => Some(id),
                        None => ctx.tasks.create(TaskKind::Backup, trigger).await.ok(),
                    };
                    if let Some(id) = id {
                        ctx.tasks.fail(id, None, reason.clone(), 0.0).await?;
                    }
                    return Ok(RunReport {
                        task_id: id,
                        problems: vec![reason],
                        ..RunReport::default()
                    });
                }
            };
        let id = match queued {
            Some(id) => id,
            None => ctx.tasks.create(TaskKind::Backup, trigger).await?,
        };
        ctx.tasks.start(id, guid.clone()).await?;
        tracing::debug!(task_id = id, "Backup task started");
        let started = Instant::now();
        let mut report = RunReport {
            task_id: Some(id),
            ..RunReport::default()
        };
        // As the original: the source executable's end is "Perform backup completed", so a
        // failed upload is never a failed perform.
        let stages = match perform(config, &ctx.cancel).await {
            Ok(()) => upload(config, identifier.as_deref(), bar, ctx, &mut report)
                .await
                .inspect_err(|e| {
                    tracing::error!(error = %e, "Upload backup completed with error");
                }),
            Err(e) => Err(e),
        };
        if let Err(e) = stages {
            report.cancelled |= e.kind() == ErrorKind::Cancelled;
            report.problems.push(e.to_string());
        }
        let seconds = started.elapsed().as_secs_f64();
        if report.succeeded() {
            ctx.tasks
                .finish(
                    id,
                    report.name.clone(),
                    report.plain_bytes,
                    report.stored_bytes,
                    seconds,
                )
                .await?;
            prune_after(config, &report, &ctx.tasks).await;
        } else {
            let reason = if report.cancelled {
                "terminated".to_string()
            } else {
                report.problems.join("; ")
            };
            ctx.tasks
                .fail(id, report.name.clone(), reason, seconds)
                .await?;
        }
        // For the health status: failed on every destination or on some.
        if let Err(e) = ctx
            .tasks
            .record_destinations(id, report.stored_in.clone(), failed_in(config, &report))
            .await
        {
            tracing::warn!(task_id = id, error = %e, "The destinations of the backup could not be recorded");
        }
        Ok(report)
    }
    .instrument(span)
    .await
}

/// The destinations that did not get the backup: those that failed, or every configured one
/// but those that got it when the run failed before the upload.
fn failed_in(config: &Config, report: &RunReport) -> Vec<String> {
    if report.succeeded() {
        return Vec::new();
    }
    config
        .destinations
        .iter()
        .map(crate::config::DestinationConfig::display_name)
        .filter(|name| !report.stored_in.contains(name))
        .collect()
}

/// Logs a scheduled run refused because another is in progress (`exit_if_in_progress`), as
/// the original did: with a guid of its own and, after the service identifier ran, its
/// identifier.
pub async fn log_rejected(config: &Config, cancel: &CancellationToken) {
    let Ok(guid) = new_guid() else {
        tracing::error!(error = lock::IN_PROGRESS, "{}", lock::IN_PROGRESS);
        return;
    };
    let span = tracing::info_span!(
        "backup",
        backup_guid = %guid,
        identifier = tracing::field::Empty,
        lager_session = tracing::field::Empty
    );
    async {
        identify(config, cancel).await;
        tracing::error!(error = lock::IN_PROGRESS, "{}", lock::IN_PROGRESS);
    }
    .instrument(span)
    .await;
}

/// Runs the service identifier executable, if one is configured; a non-empty output becomes
/// `identifier` on every later line of the run and opens the original's `WithIdentifier`
/// session. Its failure is logged with the original's messages and is not fatal.
async fn identify(config: &Config, cancel: &CancellationToken) -> Option<String> {
    match identity::service_identifier(config, cancel).await? {
        Ok(id) if id.is_empty() => None,
        Ok(id) => {
            let span = tracing::Span::current();
            span.record("identifier", id.as_str());
            span.record(SESSION_FIELD, "WithIdentifier");
            Some(id)
        }
        // The executable could not be started (the original checked that its path exists).
        Err(e) if e.kind() == ErrorKind::Config => {
            tracing::error!(error = %e, "Service identifier command not found");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "Service identifier command returned error");
            None
        }
    }
}

/// The original's "perform backup" step: the source executable, when one is configured.
async fn perform(config: &Config, cancel: &CancellationToken) -> Result<()> {
    let Some(cmd) = &config.source_executable else {
        tracing::info!("source_executable not provided, skipping performing of backup");
        return Ok(());
    };
    tracing::info!(command = %cmd, "Perform backup started");
    let started = Instant::now();
    match executables::run("source executable", cmd, cancel).await {
        Ok(_) => {
            tracing::info!(
                duration_in_seconds = started.elapsed().as_secs_f64(),
                "Perform backup completed successfully"
            );
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "Perform backup completed with error");
            Err(e)
        }
    }
}

/// Prunes each destination that got the backup and has a retention policy; its failure is
/// logged and does not fail the backup.
async fn prune_after(config: &Config, report: &RunReport, tasks: &Tasks) {
    let Some(instance) = &report.instance_id else {
        return;
    };
    for dest in &config.destinations {
        let Some(policy) = dest.retention_or(config.retention) else {
            continue;
        };
        if !report.stored_in.contains(&dest.display_name()) {
            continue;
        }
        match destinations::build(config, dest) {
            Ok(built) => {
                let keyring = config.keyring.clone();
                let every = crate::catalog::full_every(config);
                super::prune::after_backup(&built, &policy, instance, tasks, keyring, every).await;
            }
            Err(e) => {
                tracing::error!(destination_name = %dest.display_name(), error = %e, "Prune completed with error");
            }
        }
    }
}

/// The public half of the backup password, read afresh for every run (a password set
/// through the API applies from the next backup, without a restart). A password file that
/// cannot be read is logged: the backup goes on without the password stanza.
fn backup_password(
    config: &Config,
    ctx: &RunContext,
) -> Option<service_backup_core::format::PassphraseRecipient> {
    let set = match crate::password::load(&ctx.state_dir) {
        Ok(set) => set?,
        Err(e) => {
            tracing::error!(error = %e, "The backup password cannot be read: this backup carries no password stanza");
            return None;
        }
    };
    if !config.keyring.as_ref().is_some_and(Keyring::can_encrypt) {
        tracing::warn!(
            "A backup password is set, but no encryption key or recipient is configured: the backup is stored unencrypted, without a password stanza"
        );
        return None;
    }
    Some(set.recipient)
}

/// The upload to every destination at once, then the cleanup executable after a complete
/// upload. Each destination's outcome is logged and kept in `report`; an `Err` is a
/// failure before any destination was written.
async fn upload(
    config: &Config,
    identifier: Option<&str>,
    bar: Arc<Bar>,
    ctx: &RunContext,
    report: &mut RunReport,
) -> Result<()> {
    let cancel = &ctx.cancel;
    let source = config
        .source_folder
        .clone()
        .ok_or_else(|| Error::new(ErrorKind::Config, "source_folder is not configured"))?;
    if config.keyring.is_none() {
        tracing::warn!("No encryption key is configured: the backup is stored unencrypted");
    }
    let started = Utc::now();
    let instance = identity::instance_id(config, identifier);
    let name = backup_name(started, &instance)?;
    report.instance_id = Some(instance.clone());
    report.name = Some(name.clone());
    if let Some(id) = report.task_id {
        ctx.tasks.name_backup(id, name.clone()).await?;
    }
    let mut targets = Vec::new();
    for dest in &config.destinations {
        match destinations::build(config, dest) {
            Ok(target) => targets.push(target),
            Err(e) => {
                tracing::error!(destination_name = %dest.display_name(), error = %e, "Upload backup completed with error");
                report.problems.push(e.to_string());
            }
        }
    }
    for t in &targets {
        tracing::info!(destination_name = %t.name, backup_name = %name, "Upload backup started");
    }
    if bar.visible() {
        let source = source.clone();
        let total = tokio::task::spawn_blocking(move || source_size(&source))
            .await
            .unwrap_or(0);
        bar.set_total_from(total);
    }
    let plan = BackupPlan {
        name,
        started_at: started,
        date: started.with_timezone(&Local).date_naive(),
        instance_id: instance,
        deployment: config.deployment_name.clone(),
        archive: ArchiveSpec {
            source,
            compression: config.compression,
            compression_level: config.compression_level,
            key: config.keyring.as_ref().and_then(|k| k.current().cloned()),
            recipients: config
                .keyring
                .as_ref()
                .map(|k| k.recipients().to_vec())
                .unwrap_or_default(),
            passphrase: backup_password(config, ctx),
        },
    };
    // Each backup stored enters the catalog at once, so that lists show it at once.
    let stored_to = targets.clone();
    let outcomes = run_backup(plan, targets, bar.clone(), cancel.clone()).await;
    bar.finish();
    for outcome in outcomes? {
        match outcome.result {
            Ok(manifest) => {
                if let Some(target) = stored_to.iter().find(|t| t.name == outcome.name) {
                    let manifest_key = service_backup_core::layout::Layout::sibling(
                        &outcome.archive_key,
                        &format!(
                            "{}{}",
                            manifest.name,
                            service_backup_core::layout::MANIFEST_EXT
                        ),
                    );
                    let entry = service_backup_core::catalog::BackupEntry {
                        manifest: manifest.clone(),
                        manifest_key,
                        archive_key: outcome.archive_key.clone(),
                        archive_size: manifest.stored_bytes,
                    };
                    crate::catalog::record(&ctx.tasks, target, entry).await;
                }
                report.stored_in.push(outcome.name.clone());
                report.plain_bytes = manifest.plain_bytes;
                report.stored_bytes = manifest.stored_bytes;
                report.file_count = manifest.file_count;
                // The original's s3 and scp uploaders ended with "s3 completed" and "scp
                // completed" (multiple_destinations_integration_test.go waits for them).
                let kind = config
                    .destinations
                    .iter()
                    .find(|d| d.display_name() == outcome.name)
                    .map(|d| d.kind.type_word());
                if let Some(word @ ("s3" | "scp")) = kind {
                    tracing::info!(destination_name = %outcome.name, "{word} completed");
                }
                tracing::info!(
                    destination_name = %outcome.name,
                    duration_in_seconds = outcome.duration.as_secs_f64(),
                    size_in_bytes = manifest.plain_bytes,
                    stored_bytes = manifest.stored_bytes,
                    key = %outcome.archive_key,
                    "Upload backup completed successfully"
                );
            }
            Err(e) => {
                report.cancelled |= e.kind() == ErrorKind::Cancelled;
                tracing::error!(
                    destination_name = %outcome.name,
                    duration_in_seconds = outcome.duration.as_secs_f64(),
                    error = %e,
                    "Upload backup completed with error"
                );
                report.problems.push(e.to_string());
            }
        }
    }
    // As the original: only after a successful upload, so a failed one keeps the dump.
    if !report.problems.is_empty() {
        return Ok(());
    }
    let Some(cmd) = &config.cleanup_executable else {
        tracing::info!("Cleanup command not provided");
        return Ok(());
    };
    tracing::info!("Cleanup started");
    match executables::run("cleanup executable", cmd, cancel).await {
        Ok(_) => tracing::info!("Cleanup completed successfully"),
        Err(e) => tracing::error!(error = %e, "Cleanup completed with error"),
    }
    Ok(())
}
