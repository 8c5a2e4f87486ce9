//! `service-backup backup CONFIG`: one backup now.

use std::path::Path;

use service_backup_core::{Error, ErrorKind};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::output;
use crate::command::{CliResult, Outcome, load_config, runtime};
use crate::config::{Config, DestinationConfig, DestinationKind, LocalConfig};
use crate::context::RunContext;
use crate::jobs::backup;
use crate::progress::Bar;

/// Cancels `token` on SIGTERM or SIGINT, so that a manual backup stops cleanly too.
pub fn cancel_on_signals(token: CancellationToken) -> Result<(), Error> {
    let listen = |kind| {
        signal(kind)
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot listen for signals: {e}")))
    };
    let (mut term, mut int) = (
        listen(SignalKind::terminate())?,
        listen(SignalKind::interrupt())?,
    );
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        token.cancel();
    });
    Ok(())
}

/// Makes one backup; exit 0 only if every destination got it. With `to_dir`, the one
/// destination is that folder (BBR's artifact folder), whatever the configuration lists.
pub fn run(path: &Path, to_dir: Option<&Path>) -> CliResult {
    let mut config = load_config(path)?;
    if let Some(dir) = to_dir {
        config = into_folder(config, dir)?;
    }
    if !config.backups_enabled() {
        // The original's manual-backup logged both, then exited 0.
        tracing::info!("No destination provided - skipping backup");
        tracing::info!("Backups Disabled");
        if output::json() {
            output::print_json(&output::BackupResult {
                ok: true,
                name: None,
                task_id: None,
                instance_id: None,
                destinations: Vec::new(),
                size_in_bytes: 0,
                stored_bytes: 0,
                duration_in_seconds: 0.0,
                status: "disabled",
                problems: Vec::new(),
            });
        }
        return Ok(Outcome::Success);
    }
    let started = std::time::Instant::now();
    let rt = runtime()?;
    let report = rt.block_on(async {
        let ctx = RunContext::open(&config).await?;
        cancel_on_signals(ctx.cancel.clone())?;
        backup::run(&config, &ctx, "manual", None, Bar::new("backup")).await
    })?;
    if output::json() {
        output::print_json(&output::BackupResult {
            ok: report.succeeded(),
            name: report.name.clone(),
            task_id: report.task_id,
            instance_id: report.instance_id.clone(),
            destinations: report.stored_in.clone(),
            size_in_bytes: report.plain_bytes,
            stored_bytes: report.stored_bytes,
            duration_in_seconds: started.elapsed().as_secs_f64(),
            status: if report.rejected {
                "rejected"
            } else if report.cancelled {
                "cancelled"
            } else if report.succeeded() {
                "done"
            } else {
                "failed"
            },
            problems: if report.rejected {
                vec![crate::lock::IN_PROGRESS.to_string()]
            } else {
                report.problems.clone()
            },
        });
    }
    if !report.succeeded() {
        // The original's manual-backup ended a failed run with this line.
        tracing::error!(error = %report.problems.join("; "), "Error running backup");
    }
    if report.rejected {
        eprintln!("error: {}", crate::lock::IN_PROGRESS);
        return Ok(Outcome::Failed);
    }
    if report.succeeded() {
        if let Some(name) = &report.name {
            let task = report
                .task_id
                .map(|id| format!(" (task {id})"))
                .unwrap_or_default();
            eprintln!(
                "backup {name} stored in {} destination(s){task}",
                config.destinations.len()
            );
        }
        Ok(Outcome::Success)
    } else {
        for p in &report.problems {
            eprintln!("error: {p}");
        }
        Ok(Outcome::Failed)
    }
}

/// The configuration with `dir` as its only destination: the archive lands at
/// `dir/YYYY/MM/DD/<name>.<ext>` beside its manifest, and nothing there is pruned.
fn into_folder(mut config: Config, dir: &Path) -> Result<Config, Error> {
    if config.source_folder.is_none() {
        return Err(Error::new(
            ErrorKind::Usage,
            "backup --to-dir needs source_folder in the configuration",
        ));
    }
    // Without trailing slashes (bbr gives one), so that a link is seen as a link.
    let dir: std::path::PathBuf = dir.components().collect();
    if dir.is_symlink() {
        return Err(Error::new(
            ErrorKind::Usage,
            format!(
                "backup --to-dir {}: refusing a symbolic link; give the folder itself",
                dir.display()
            ),
        ));
    }
    if !dir.is_dir() {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("backup --to-dir {}: not a folder", dir.display()),
        ));
    }
    config.destinations = vec![DestinationConfig {
        name: Some("artifact-folder".to_string()),
        kind: DestinationKind::Local(LocalConfig { path: dir }),
        retention: None,
        immutability: None,
    }];
    config.add_deployment_name_to_backup_path = false;
    config.retention = None;
    Ok(config)
}
