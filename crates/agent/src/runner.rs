//! One backup run, in the order of the product contract: identifier, source executable,
//! the upload to every destination at once, cleanup; with the original's log lines.

use std::sync::Arc;

use chrono::{Local, Utc};
use service_backup_core::layout::backup_name;
use service_backup_core::pipeline::archive::{ArchiveSpec, source_size};
use service_backup_core::pipeline::fanout::{BackupPlan, Target, run_backup};
use service_backup_core::{Error, ErrorKind, Result};
use tracing::Instrument as _;

use crate::config::Config;
use crate::destinations;
use crate::executables;
use crate::progress::Bar;

/// How a backup run ended.
#[derive(Debug)]
pub struct RunReport {
    /// The backup's name, if the upload started.
    pub name: Option<String>,
    /// The problems, one per line; empty when every destination got the backup.
    pub problems: Vec<String>,
}

impl RunReport {
    /// Whether every destination got the backup.
    pub fn succeeded(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A new random guid for a run, in the usual 8-4-4-4-12 form.
fn new_guid() -> Result<String> {
    let h = service_backup_core::random::hex_token(16)?;
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// The instance id: configured, else the service identifier, else the host name.
pub fn instance_id(config: &Config, identifier: Option<&str>) -> String {
    config
        .instance_id
        .clone()
        .or_else(|| identifier.filter(|s| !s.is_empty()).map(str::to_string))
        .unwrap_or_else(host_name)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Runs one backup now. Errors only on what stops the run before any upload starts.
pub async fn backup(config: &Config, bar: Arc<Bar>) -> Result<RunReport> {
    let guid = new_guid()?;
    let span =
        tracing::info_span!("backup", backup_guid = %guid, identifier = tracing::field::Empty);
    let report = async {
        let identifier = match &config.service_identifier_executable {
            Some(cmd) => match executables::output("service identifier executable", cmd) {
                Ok(id) => {
                    tracing::Span::current().record("identifier", id.as_str());
                    Some(id)
                }
                Err(e) => {
                    tracing::error!(error = %e, "Service identifier executable failed");
                    None
                }
            },
            None => None,
        };
        tracing::info!("Perform backup started");
        let mut report = RunReport { name: None, problems: vec![] };
        if let Err(e) = perform(config, identifier.as_deref(), bar, &mut report).await {
            report.problems.push(e.to_string());
        }
        if report.succeeded() {
            tracing::info!("Perform backup completed successfully");
        } else {
            tracing::error!(error = %report.problems.join("; "), "Perform backup completed with error");
        }
        report
    }
    .instrument(span)
    .await;
    Ok(report)
}

async fn perform(
    config: &Config,
    identifier: Option<&str>,
    bar: Arc<Bar>,
    report: &mut RunReport,
) -> Result<()> {
    let source = config
        .source_folder
        .clone()
        .ok_or_else(|| Error::new(ErrorKind::Config, "source_folder is not configured"))?;
    if let Some(cmd) = &config.source_executable {
        tracing::info!(command = %cmd, "Source executable started");
        executables::run("source executable", cmd)?;
        tracing::info!("Source executable completed successfully");
    }
    if config.keyring.is_none() {
        tracing::warn!("No encryption key is configured: the backup is stored unencrypted");
    }
    let started = Utc::now();
    let instance = instance_id(config, identifier);
    let name = backup_name(started, &instance)?;
    report.name = Some(name.clone());
    let mut targets = Vec::new();
    for dest in &config.destinations {
        match destinations::build(config, dest) {
            Ok(d) => targets.push(Target {
                name: d.name,
                destination: d.destination,
                layout: d.layout,
            }),
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
        bar.set_total_from(source_size(&source));
    }
    let plan = BackupPlan {
        name,
        started_at: started,
        date: started.with_timezone(&Local).date_naive(),
        instance_id: instance,
        deployment: config.deployment_name.clone(),
        archive: ArchiveSpec {
            source,
            compression_level: config.compression_level,
            key: config.keyring.as_ref().and_then(|k| k.current().cloned()),
        },
    };
    let outcomes = run_backup(plan, targets, bar.clone()).await;
    bar.finish();
    for outcome in outcomes? {
        match outcome.result {
            Ok(manifest) => tracing::info!(
                destination_name = %outcome.name,
                duration_in_seconds = outcome.duration.as_secs_f64(),
                size_in_bytes = manifest.plain_bytes,
                stored_bytes = manifest.stored_bytes,
                key = %outcome.archive_key,
                "Upload backup completed successfully"
            ),
            Err(e) => {
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
    if let Some(cmd) = config
        .cleanup_executable
        .as_ref()
        .filter(|_| report.succeeded())
    {
        tracing::info!("Cleanup started");
        match executables::run("cleanup executable", cmd) {
            Ok(()) => tracing::info!("Cleanup completed successfully"),
            Err(e) => tracing::error!(error = %e, "Cleanup completed with error"),
        }
    }
    Ok(())
}
