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
use crate::progress::{self, Bar, units};

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
        } else if progress::for_a_person() {
            eprintln!("no backup made: no destination is configured (backups are disabled)");
        }
        return Ok(Outcome::Success);
    }
    let rt = runtime()?;
    let started = std::time::Instant::now();
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
    if report.succeeded() && progress::for_a_person() {
        eprintln!("{}", summary(&report, started.elapsed()));
        return Ok(Outcome::Success);
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
        // What did succeed is worth a line too, for a person.
        if progress::for_a_person() && !report.stored_in.is_empty() {
            eprintln!(
                "stored in {} of {} destinations: {}",
                report.stored_in.len(),
                config.destinations.len(),
                report.stored_in.join(", ")
            );
        }
        for p in &report.problems {
            eprintln!("error: {}", crate::escape::escape_controls(p));
        }
        Ok(Outcome::Failed)
    }
}

/// The closing line for a person: what, how much, how long, how fast, where.
fn summary(report: &backup::RunReport, took: std::time::Duration) -> String {
    let rate = if took.as_secs_f64() > 0.0 {
        #[allow(
            clippy::cast_precision_loss,
            reason = "a byte count's last bits do not matter to a shown rate"
        )]
        let per_second = report.plain_bytes as f64 / took.as_secs_f64();
        format!(", {}", units::rate(per_second))
    } else {
        String::new()
    };
    let files = match report.file_count {
        1 => "1 file".to_string(),
        n => format!("{n} files"),
    };
    let destinations = match report.stored_in.len() {
        1 => "1 destination".to_string(),
        n => format!("{n} destinations"),
    };
    let task = report
        .task_id
        .map(|id| format!(", task {id}"))
        .unwrap_or_default();
    format!(
        "backed up {} ({files}) in {}{rate} \u{2192} {destinations}: {}\n  backup {}{task}",
        units::bytes(report.plain_bytes),
        units::duration(took),
        report.stored_in.join(", "),
        report.name.as_deref().unwrap_or("-"),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_what_how_much_how_long_how_fast_and_where() {
        let report = backup::RunReport {
            task_id: Some(2),
            name: Some("20261206T101500Z-abc".into()),
            plain_bytes: 1 << 30,
            file_count: 312,
            stored_in: vec!["s3-prod".into(), "local".into()],
            ..backup::RunReport::default()
        };
        assert_eq!(
            summary(&report, std::time::Duration::from_millis(7_200)),
            "backed up 1.0 GiB (312 files) in 7.2 s, 142 MiB/s \u{2192} 2 destinations: s3-prod, local\n  backup 20261206T101500Z-abc, task 2"
        );
    }
}
