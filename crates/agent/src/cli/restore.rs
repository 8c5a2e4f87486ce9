//! `service-backup restore` and `service-backup verify`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Args;
use service_backup_core::catalog::Selector;
use service_backup_core::format::Passphrase;
use service_backup_core::ops::restore::{
    Binding, Decryption, ReadStats, RestoreInto, binding_of_file, restore_file,
};
use service_backup_core::task::TaskState;
use service_backup_core::{Error, ErrorKind};
use tokio::signal::unix::{SignalKind, signal};

use super::output::{self, ReadResult};
use crate::command::{
    CliError, CliResult, Outcome, keyring, load_config, refuse_write_only, runtime,
};
use crate::config::Config;
use crate::context::RunContext;
use crate::jobs::restore::{self, RestorePlan};
use crate::progress::{self, Bar, units};

mod all;

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
    #[arg(long = "key-file", env = super::KEY_FILE_ENV)]
    key_files: Vec<PathBuf>,
    /// Identity files (written by `keygen --recipient`) that open backups made for their
    /// recipients; repeatable.
    #[arg(long = "identity", value_name = "FILE")]
    identity_files: Vec<PathBuf>,
    /// Open the backup with the backup password (set through the API), typed at the
    /// terminal without echo.
    #[arg(long, conflicts_with_all = ["passphrase_fd", "passphrase_file"])]
    passphrase: bool,
    /// Read the backup password from this open file descriptor (its first line).
    #[arg(long, value_name = "N", conflicts_with = "passphrase_file")]
    passphrase_fd: Option<u32>,
    /// Read the backup password from this file (its first line).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Accept a backup that is not encrypted although a key is given (one made before
    /// encryption was set up); refused by default, as it may have been replaced.
    #[arg(long)]
    allow_unencrypted: bool,
}

/// Arguments of `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The configuration file (not needed with --file).
    #[arg(required_unless_present = "file", env = super::CONFIG_ENV)]
    config: Option<PathBuf>,
    /// Restore a downloaded archive file instead of a backup from the destinations.
    #[arg(long, requires = "target", conflicts_with_all = ["destination", "before", "from_instance"])]
    file: Option<PathBuf>,
    #[command(flatten)]
    which: Which,
    /// Where to restore (default: `restore.target_folder`, else `source_folder`).
    #[arg(long)]
    target: Option<PathBuf>,
    /// Replace the content of a non-empty target (only once the backup is fully restored).
    #[arg(long)]
    force: bool,
    /// Print the result as one JSON document on standard output (README, "JSON output").
    #[arg(long)]
    pub json: bool,
    /// Restore only these paths: files, folders (with everything below them) or globs (`*`
    /// and `?` within a name, `**` across folders), fetching only the parts of the archive
    /// that hold them (through its index); repeatable, or several after one --include.
    #[arg(long, value_name = "PATH", num_args = 1.., conflicts_with = "file")]
    include: Vec<String>,
}

/// Arguments of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The configuration file (not needed with --file).
    #[arg(required_unless_present = "file", env = super::CONFIG_ENV)]
    config: Option<PathBuf>,
    /// Check a downloaded archive file instead.
    #[arg(long, conflicts_with_all = ["destination", "before", "from_instance"])]
    file: Option<PathBuf>,
    /// Check every backup of this agent on every destination (or on --destination's), then
    /// print a summary; exit 1 if any failed.
    #[arg(long, conflicts_with_all = ["file", "backup", "before", "from_instance"])]
    all: bool,
    #[command(flatten)]
    which: Which,
    /// Print the result as one JSON document on standard output (README, "JSON output").
    #[arg(long)]
    pub json: bool,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time such as 2026-11-22T03:00:00Z: {e}"))
}

impl Which {
    fn decryption(&self, config: Option<&Config>) -> Result<Decryption, Error> {
        let mut keyring = keyring(config, &self.key_files, &self.identity_files)?;
        let source = super::decrypt::passphrase::Source::of(
            self.passphrase,
            self.passphrase_fd,
            self.passphrase_file.as_deref(),
        );
        if let Some(source) = source {
            let password = super::decrypt::passphrase::read(&source)?;
            keyring
                .get_or_insert_default()
                .set_passphrase(Passphrase::new(password));
        }
        refuse_write_only(keyring.as_ref())?;
        Ok(Decryption {
            keyring,
            allow_unencrypted: self.allow_unencrypted,
            bound_to: Binding::Unchecked,
        })
    }

    pub(super) fn plan(&self, config: &Config, into: RestoreInto) -> Result<RestorePlan, Error> {
        Ok(RestorePlan {
            selector: self.selector(),
            destination: self.destination.clone(),
            decryption: self.decryption(Some(config))?,
            into,
            from_instance: self.from_instance.clone(),
            include: Vec::new(),
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
        // With a configuration at hand, its own files are known and protected.
        if let Some(config) = &args.config {
            restore::check_target(&load_config(config)?, target)?;
        }
        let into = RestoreInto::Dir {
            path: target.to_path_buf(),
            replace: args.force,
        };
        let started = Instant::now();
        let stats = from_file(file, &args.which, &into)?;
        if output::json() {
            output::print_json(&ReadResult::new(&stats, None, Some(file), Some(target)));
        }
        report_restored(None, &stats, target, started.elapsed());
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
        .or_else(|| restore::default_target(&config))
        .ok_or_else(|| Error::new(ErrorKind::Usage, "no restore target: pass --target DIR"))?;
    restore::check_target(&config, &target)?;
    let mut plan = args.which.plan(
        &config,
        RestoreInto::Dir {
            path: target.clone(),
            replace: args.force,
        },
    )?;
    plan.include.clone_from(&args.include);
    let started = Instant::now();
    let (name, stats) = runtime()?.block_on(async {
        let ctx = RunContext::open(&config).await?;
        let id = ctx
            .tasks
            .create_restore(
                "manual",
                None,
                args.which.backup.clone(),
                target.display().to_string(),
            )
            .await?;
        stop_on_signals(&ctx, id)?;
        restore::run_task(&config, &ctx, id, &plan, Bar::new("restore")).await
    })?;
    if output::json() {
        output::print_json(&ReadResult::new(&stats, Some(&name), None, Some(&target)));
    }
    report_restored(Some(&name), &stats, &target, started.elapsed());
    if !args.include.is_empty() {
        // A selective restore reads only the blocks of what it restores: say how much.
        let fetched = if progress::for_a_person() {
            units::bytes(stats.stored_bytes)
        } else {
            format!("{} bytes", stats.stored_bytes)
        };
        eprintln!(
            "fetched {fetched} of the archive (its header, index and the blocks holding the included paths)"
        );
    }
    Ok(Outcome::Success)
}

/// On SIGTERM or SIGINT: a restore still waiting for a backup to finish stops waiting (its
/// task fails "terminated"); a restore already running fails its task "terminated" and
/// ends the process at once, as the signal would have without this listener (the next
/// restore removes the staging folder it leaves).
fn stop_on_signals(ctx: &RunContext, id: i64) -> Result<(), Error> {
    let listen = |kind| {
        signal(kind)
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot listen for signals: {e}")))
    };
    let (mut term, mut int) = (
        listen(SignalKind::terminate())?,
        listen(SignalKind::interrupt())?,
    );
    let (cancel, tasks) = (ctx.cancel.clone(), ctx.tasks.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            cancel.cancel();
            let running = tasks
                .get(id)
                .await
                .is_ok_and(|t| t.is_some_and(|t| t.state == TaskState::Running));
            if running {
                let _ = tasks.fail(id, None, "terminated".into(), 0.0).await;
                eprintln!("error: the restore was stopped by a signal");
                std::process::exit(1);
            }
        }
    });
    Ok(())
}

/// Verifies a backup or an archive file end to end.
pub fn run_verify(args: &VerifyArgs) -> CliResult {
    if let Some(file) = &args.file {
        let started = Instant::now();
        let stats = from_file(file, &args.which, &RestoreInto::CheckOnly)?;
        if output::json() {
            output::print_json(&ReadResult::new(&stats, None, Some(file), None));
            return Ok(Outcome::Success);
        }
        if progress::for_a_person() {
            println!(
                "{} is valid: {}",
                file.display(),
                how_much(&stats, started.elapsed())
            );
        } else {
            println!(
                "{} is valid: {} entries, {} bytes",
                file.display(),
                stats.extracted.entries,
                stats.extracted.bytes
            );
        }
        return Ok(Outcome::Success);
    }
    let config = load_config(
        args.config
            .as_deref()
            .expect("clap requires CONFIG without --file"),
    )?;
    if args.all {
        return all::verify_all(&config, &args.which);
    }
    let plan = args.which.plan(&config, RestoreInto::CheckOnly)?;
    let started = Instant::now();
    let (name, stats) = runtime()?.block_on(restore::from_destinations(
        &config,
        &plan,
        Bar::new("verify"),
    ))?;
    if output::json() {
        output::print_json(&ReadResult::new(&stats, Some(&name), None, None));
        return Ok(Outcome::Success);
    }
    if progress::for_a_person() {
        println!(
            "backup {name} is valid: {}, sha256 {}",
            how_much(&stats, started.elapsed()),
            stats.sha256
        );
    } else {
        println!(
            "backup {name} is valid: {} entries, {} bytes, sha256 {}",
            stats.extracted.entries, stats.extracted.bytes, stats.sha256
        );
    }
    Ok(Outcome::Success)
}

/// Restores (with a target) or verifies a downloaded archive file, with a progress bar.
fn from_file(file: &Path, which: &Which, into: &RestoreInto) -> Result<ReadStats, CliError> {
    let mut decryption = which.decryption(None)?;
    // A file named for a backup (as downloads are) must hold that backup's archive.
    decryption.bound_to = binding_of_file(file);
    let bar = Bar::new(if into.path().is_some() {
        "restore"
    } else {
        "verify"
    });
    let stats = restore_file(file, &decryption, into, &*bar);
    bar.finish();
    Ok(stats?)
}

/// The closing lines of a restore: for a person, how much, how long, how fast and where
/// (`restored backup NAME: 1.0 GiB (312 entries) in 3.1 s, 330 MiB/s → /target`); else the
/// lines scripts have read since the first release.
fn report_restored(name: Option<&str>, stats: &ReadStats, target: &Path, took: Duration) {
    if progress::for_a_person() {
        let what = name.map_or_else(
            || "restored".to_string(),
            |n| format!("restored backup {n}:"),
        );
        eprintln!(
            "{what} {} \u{2192} {}",
            how_much(stats, took),
            target.display()
        );
        return;
    }
    if let Some(name) = name {
        eprintln!("restored backup {name}");
    }
    eprintln!(
        "restored {} entries ({} bytes) into {}",
        stats.extracted.entries,
        stats.extracted.bytes,
        target.display()
    );
}

/// `1.0 GiB (312 entries) in 3.1 s, 330 MiB/s`: the content read, in human units.
fn how_much(stats: &ReadStats, took: Duration) -> String {
    let entries = match stats.extracted.entries {
        1 => "1 entry".to_string(),
        n => format!("{n} entries"),
    };
    let secs = took.as_secs_f64();
    #[allow(
        clippy::cast_precision_loss,
        reason = "a byte count's last bits do not matter to a shown rate"
    )]
    let rate = if secs > 0.0 {
        format!(", {}", units::rate(stats.extracted.bytes as f64 / secs))
    } else {
        String::new()
    };
    format!(
        "{} ({entries}) in {}{rate}",
        units::bytes(stats.extracted.bytes),
        units::duration(took)
    )
}
