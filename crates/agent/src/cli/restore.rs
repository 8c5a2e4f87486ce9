//! `service-backup restore` and `service-backup verify`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use clap::Args;
use service_backup_core::catalog::{self, Selector, list_backups, select};
use service_backup_core::pipeline::restore::{Decryption, ReadStats};
use service_backup_core::{Error, ErrorKind};

use super::{CliError, CliResult, Outcome, keyring, load_config, runtime};
use crate::config::Config;
use crate::destinations;
use crate::executables;
use crate::progress::Bar;

/// Which backup, from where.
#[derive(Debug, Args)]
pub struct Which {
    /// The backup's name, or `latest`.
    #[arg(long, default_value = "latest")]
    backup: String,
    /// The newest backup started before this time (RFC 3339).
    #[arg(long, value_parser = parse_time, conflicts_with = "backup")]
    before: Option<DateTime<Utc>>,
    /// Only this destination (default: the first that has the backup).
    #[arg(long)]
    destination: Option<String>,
    /// A backup of another instance writing the same destinations (its instance id, as
    /// `list --all-instances` shows it), instead of this agent's own.
    #[arg(long)]
    from_instance: Option<String>,
    /// Further key files (older keys), besides the configured ones.
    #[arg(long = "key-file")]
    key_files: Vec<PathBuf>,
    /// Accept a backup that is not encrypted although a key is given (one made before
    /// encryption was set up); refused by default, as it may have been replaced.
    #[arg(long)]
    allow_unencrypted: bool,
}

/// Arguments of `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The configuration file (not needed with --file).
    #[arg(required_unless_present = "file")]
    config: Option<PathBuf>,
    /// Restore a downloaded archive file instead of a backup from the destinations.
    #[arg(long, requires = "target", conflicts_with_all = ["destination", "before", "from_instance"])]
    file: Option<PathBuf>,
    #[command(flatten)]
    which: Which,
    /// Where to restore (default: restore.target_folder, else source_folder).
    #[arg(long)]
    target: Option<PathBuf>,
    /// Replace the content of a non-empty target (only once the backup is fully restored).
    #[arg(long)]
    force: bool,
}

/// Arguments of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The configuration file (not needed with --file).
    #[arg(required_unless_present = "file")]
    config: Option<PathBuf>,
    /// Check a downloaded archive file instead.
    #[arg(long, conflicts_with_all = ["destination", "before", "from_instance"])]
    file: Option<PathBuf>,
    #[command(flatten)]
    which: Which,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time such as 2026-11-22T03:00:00Z: {e}"))
}

impl Which {
    fn decryption(&self, config: Option<&Config>) -> Result<Decryption, Error> {
        Ok(Decryption {
            keyring: keyring(config, &self.key_files)?,
            allow_unencrypted: self.allow_unencrypted,
        })
    }

    fn selector(&self) -> Selector {
        match (&self.before, self.backup.as_str()) {
            (Some(t), _) => Selector::Before(*t),
            (None, "latest") => Selector::Latest,
            (None, name) => Selector::Named(name.to_string()),
        }
    }
}

/// Restores a backup or an archive file.
pub fn run_restore(args: &RestoreArgs) -> CliResult {
    if let Some(file) = &args.file {
        let target = args
            .target
            .as_deref()
            .expect("clap requires --target with --file");
        let stats = from_file(file, &args.which, Some((target, args.force)))?;
        report_restored(&stats, target);
        return Ok(Outcome::Success);
    }
    let config = load_config(
        args.config
            .as_deref()
            .expect("clap requires CONFIG without --file"),
    )?;
    let target = args
        .target
        .clone()
        .or_else(|| config.restore.target_folder.clone())
        .or_else(|| config.source_folder.clone())
        .ok_or_else(|| Error::new(ErrorKind::Usage, "no restore target: pass --target DIR"))?;
    let decryption = args.which.decryption(Some(&config))?;
    let (name, stats) = from_destinations(
        &config,
        &args.which,
        &decryption,
        Some((&target, args.force)),
    )?;
    eprintln!("restored backup {name}");
    report_restored(&stats, &target);
    if let Some(cmd) = &config.restore.restore_executable {
        tracing::info!(command = %cmd, "Restore executable started");
        runtime()?.block_on(executables::run(
            "restore executable",
            cmd,
            &tokio_util::sync::CancellationToken::new(),
        ))?;
        tracing::info!("Restore executable completed successfully");
    }
    Ok(Outcome::Success)
}

/// Verifies a backup or an archive file end to end.
pub fn run_verify(args: &VerifyArgs) -> CliResult {
    if let Some(file) = &args.file {
        let stats = from_file(file, &args.which, None)?;
        println!(
            "{} is valid: {} entries, {} bytes",
            file.display(),
            stats.extracted.entries,
            stats.extracted.bytes
        );
        return Ok(Outcome::Success);
    }
    let config = load_config(
        args.config
            .as_deref()
            .expect("clap requires CONFIG without --file"),
    )?;
    let decryption = args.which.decryption(Some(&config))?;
    let (name, stats) = from_destinations(&config, &args.which, &decryption, None)?;
    println!(
        "backup {name} is valid: {} entries, {} bytes, sha256 {}",
        stats.extracted.entries, stats.extracted.bytes, stats.sha256
    );
    Ok(Outcome::Success)
}

/// Restores (with a target) or verifies a downloaded archive file, with a progress bar.
fn from_file(
    file: &Path,
    which: &Which,
    target: Option<(&Path, bool)>,
) -> Result<ReadStats, CliError> {
    let decryption = which.decryption(None)?;
    let bar = Bar::new(if target.is_some() {
        "restore"
    } else {
        "verify"
    });
    let stats = catalog::restore_file(file, &decryption, target, &*bar);
    bar.finish();
    Ok(stats?)
}

fn report_restored(stats: &ReadStats, target: &Path) {
    eprintln!(
        "restored {} entries ({} bytes) into {}",
        stats.extracted.entries,
        stats.extracted.bytes,
        target.display()
    );
}

/// Finds the selected backup in the destinations, in configuration order, and restores or
/// verifies it from the first destination that has it and answers.
fn from_destinations(
    config: &Config,
    which: &Which,
    decryption: &Decryption,
    target: Option<(&Path, bool)>,
) -> Result<(String, ReadStats), CliError> {
    let rt = runtime()?;
    let selector = which.selector();
    let instance = match &which.from_instance {
        Some(id) => id.clone(),
        None => rt.block_on(crate::runner::this_instance(config)),
    };
    let mut last_error: Option<Error> = None;
    for dest in destinations::select(config, which.destination.as_deref())? {
        let attempt = dest.and_then(|d| {
            rt.block_on(async {
                let all = list_backups(&*d.destination, &d.layout).await?;
                let others = all.iter().filter(|e| e.manifest.instance_id != instance).count();
                let entries: Vec<_> = all.into_iter().filter(|e| e.manifest.instance_id == instance).collect();
                let entry = select(&entries, &selector)
                    .map_err(|e| of_instance(e, &instance, others))?
                    .clone();
                let what = if target.is_some() { "restore" } else { "verify" };
                tracing::info!(destination_name = %d.name, backup_name = %entry.manifest.name, "{}", format!("{} started", capitalize(what)));
                let bar = Bar::new(what);
                let stats = catalog::restore_backup(d.destination.clone(), &entry, decryption, target, bar.clone()).await;
                bar.finish();
                stats.map(|s| (entry.manifest.name.clone(), s))
                    .map_err(|e| e.context(format!("backup {} in destination {}", entry.manifest.name, d.name)))
            })
        });
        match attempt {
            Ok(done) => return Ok(done),
            // A backup that is damaged or refused is not retried elsewhere silently.
            Err(e)
                if !matches!(
                    e.kind(),
                    ErrorKind::NotFound | ErrorKind::Destination | ErrorKind::Io
                ) =>
            {
                return Err(e.into());
            }
            Err(e) => {
                tracing::warn!(error = %e, "trying the next destination");
                last_error = Some(e);
            }
        }
    }
    Err(last_error
        .unwrap_or_else(|| Error::new(ErrorKind::NotFound, "no destination has the backup"))
        .into())
}

/// A "no such backup" error that names the instance, and points to the other instances'
/// backups when there are some.
fn of_instance(e: Error, instance: &str, others: usize) -> Error {
    let out = Error::new(e.kind(), format!("instance {instance}: {}", e.message()));
    if others > 0 {
        out.with_hint(format!(
            "{others} backup(s) of other instances exist: `service-backup list CONFIG --all-instances` shows them, `--from-instance ID` restores one"
        ))
    } else {
        match e.hint() {
            Some(h) => out.with_hint(h.to_string()),
            None => out,
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}
