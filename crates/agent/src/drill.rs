//! Restore drills: on `verify_schedule`, the newest backup of this instance in each
//! destination is downloaded and checked end to end, as `verify` checks one (every chunk's
//! tag, the SHA-256, the compression's checksums, the tar structure, the binding of the
//! archive to its manifest); with `restore_check_executable`, the newest backup that passed
//! is then restored into a scratch folder in `state_dir` and the executable checks it there.
//!
//! A drill holds the backup lock from start to end, so it never runs beside a backup or a
//! restore: it waits for one in progress, and a backup that comes due meanwhile waits for
//! it. Each drill is a task of kind `drill`, `done` when every destination passed, else
//! `failed` with one reason per destination; a destination without a backup of this
//! instance fails the drill (it has nothing that would restore).

pub mod scratch;

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt as _;
use service_backup_core::catalog::BackupEntry;
use service_backup_core::layout::name_is_of_instance;
use service_backup_core::ops::restore::{Decryption, ReadStats, RestoreInto, restore_backup};
use service_backup_core::{Error, ErrorKind, Result, blocking};
use tracing::Instrument as _;

use crate::config::Config;
use crate::context::RunContext;
use crate::destinations::{self, Target};
use crate::executables::{self, Place};
use crate::identity;
use crate::lock;
use crate::progress::Bar;
use crate::tasks::store::TaskKind;

pub use scratch::FreeSpace;

/// The longest single sleep of the drill schedule, so that a reload or a clock change is
/// noticed.
const TICK: Duration = Duration::from_secs(30);

/// The environment variable that names the scratch folder to the restore check executable.
pub const DIR_VAR: &str = "SERVICE_BACKUP_DRILL_DIR";

/// The environment variable that names the restored backup to the restore check executable.
pub const BACKUP_VAR: &str = "SERVICE_BACKUP_DRILL_BACKUP";

/// How a drill ended.
#[derive(Debug, Default)]
pub struct DrillReport {
    /// The task recording it.
    pub task_id: Option<i64>,
    /// The newest backup that passed, if one did.
    pub backup_name: Option<String>,
    /// The destinations whose newest backup passed.
    pub verified: Vec<String>,
    /// One reason per failure, each naming its destination; empty when the drill passed.
    pub problems: Vec<String>,
}

impl DrillReport {
    /// Whether every destination passed.
    pub fn succeeded(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Runs drills on the `verify_schedule` of the configuration in force (reread at every
/// tick, so a reload takes effect) until `ctx.cancel` fires. Removes what an interrupted
/// drill left in the scratch space first.
pub async fn run_on_schedule(config: Arc<RwLock<Config>>, ctx: RunContext) {
    let root = scratch::root(&ctx.state_dir);
    let _ = blocking(move || {
        scratch::clear(&root);
        Ok(())
    })
    .await;
    let current = || {
        config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    };
    // The expression in force and its next fire time.
    let mut due: Option<(String, chrono::DateTime<Utc>)> = None;
    loop {
        let now = Utc::now();
        let schedule = current().drill.schedule;
        due = match (schedule, due) {
            (None, _) => None,
            // Kept while the expression stays, unless the clock was set back before it.
            (Some(s), Some((expr, at))) if expr == s.expression() => {
                Some((expr, s.next_after(now).filter(|t| *t < at).unwrap_or(at)))
            }
            (Some(s), _) => s.next_after(now).map(|at| {
                tracing::debug!(next = %at.to_rfc3339(), "Next restore drill scheduled");
                (s.expression().to_string(), at)
            }),
        };
        let left = due.as_ref().map_or(TICK, |(_, at)| {
            (*at - now).to_std().unwrap_or(Duration::ZERO)
        });
        if due.is_some() && left.is_zero() {
            due = None;
            if let Err(e) = run(&current(), &ctx, "schedule", scratch::statvfs_free).await {
                tracing::error!(error = %e, "Restore drill completed with error");
            }
            if ctx.cancel.is_cancelled() {
                return;
            }
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(left.min(TICK)) => {}
            () = ctx.cancel.cancelled() => return,
        }
    }
}

/// Runs one drill now, recorded as a task with `trigger`; `free` measures the scratch
/// space's filesystem. An error is returned only when the drill could not be recorded or
/// was stopped before it began; every other failure is in the report and the task.
pub async fn run(
    config: &Config,
    ctx: &RunContext,
    trigger: &'static str,
    free: FreeSpace,
) -> Result<DrillReport> {
    let guid = service_backup_core::random::hex_token(16)?;
    let span = tracing::info_span!("drill", drill_guid = %guid);
    async {
        let _lock = lock::acquire_for_drill(&ctx.state_dir, &ctx.cancel).await?;
        let root = scratch::root(&ctx.state_dir);
        let id = ctx.tasks.create(TaskKind::Drill, trigger).await?;
        ctx.tasks.start(id, guid).await?;
        tracing::info!(task_id = id, "Restore drill started");
        let started = Instant::now();
        let mut report = DrillReport {
            task_id: Some(id),
            ..DrillReport::default()
        };
        let mut stats = None;
        let cleared = root.clone();
        let prepared = blocking(move || {
            scratch::create(&cleared)?;
            scratch::clear(&cleared);
            Ok(())
        })
        .await;
        let drilled = match prepared {
            Ok(()) => drill(config, ctx, &root, free, &mut report, &mut stats).await,
            Err(e) => Err(e),
        };
        if let Err(e) = drilled {
            report.problems.push(e.to_string());
        }
        let cleared = root.clone();
        let _ = blocking(move || {
            scratch::clear(&cleared);
            Ok(())
        })
        .await;
        let seconds = started.elapsed().as_secs_f64();
        if report.succeeded() {
            let (plain, stored) = stats.map_or((0, 0), |s: ReadStats| {
                (s.extracted.bytes, s.stored_bytes)
            });
            tracing::info!(task_id = id, backup_name = report.backup_name.as_deref().unwrap_or_default(), destinations = %report.verified.join(", "), duration_in_seconds = seconds, "Restore drill completed successfully");
            ctx.tasks
                .finish(id, report.backup_name.clone(), plain, stored, seconds)
                .await?;
        } else {
            let reason = if ctx.cancel.is_cancelled() {
                "terminated".to_string()
            } else {
                report.problems.join("; ")
            };
            tracing::error!(task_id = id, error = %reason, "Restore drill completed with error");
            ctx.tasks
                .fail(id, report.backup_name.clone(), reason, seconds)
                .await?;
        }
        Ok(report)
    }
    .instrument(span)
    .await
}

/// Lists, checks the space, verifies each destination's newest backup, then restores and
/// checks the newest that passed; failures go into `report`, one per destination. `stats`
/// gets what the newest passing backup's verification read.
async fn drill(
    config: &Config,
    ctx: &RunContext,
    root: &Path,
    free: FreeSpace,
    report: &mut DrillReport,
    stats: &mut Option<ReadStats>,
) -> Result<()> {
    let instance = identity::this_instance(config).await;
    let found = newest_backups(config, &instance, report).await?;
    let check = config.drill.check_executable.as_deref();
    // Before anything is downloaded: a drill that cannot restore fails at once.
    if check.is_some()
        && let Some((_, biggest)) = found.iter().max_by_key(|(_, e)| e.manifest.plain_bytes)
    {
        let (root, name, plain) = (
            root.to_path_buf(),
            biggest.manifest.name.clone(),
            biggest.manifest.plain_bytes,
        );
        blocking(move || scratch::check_space(&root, &name, plain, free)).await?;
    }
    let decryption = Decryption::new(config.keyring.clone());
    let mut passed: Vec<(Target, BackupEntry)> = Vec::new();
    for (target, entry) in found {
        let name = entry.manifest.name.clone();
        tracing::info!(destination_name = %target.name, backup_name = %name, "Restore drill verifying");
        match cancellable(
            ctx,
            restore_backup(
                target.destination.clone(),
                &entry,
                &decryption,
                &RestoreInto::CheckOnly,
                Bar::hidden(),
            ),
        )
        .await
        {
            Ok(read) => {
                tracing::info!(destination_name = %target.name, backup_name = %name, size_in_bytes = read.extracted.bytes, "Restore drill verified the backup");
                report.verified.push(target.name.clone());
                let newer = passed
                    .first()
                    .is_none_or(|(_, e)| entry.manifest.started_at > e.manifest.started_at);
                if newer {
                    report.backup_name = Some(name);
                    *stats = Some(read);
                    passed.insert(0, (target, entry));
                } else {
                    passed.push((target, entry));
                }
            }
            Err(e) => {
                if e.kind() == ErrorKind::Cancelled {
                    return Err(e);
                }
                report.problems.push(format!(
                    "destination {}: backup {name} failed verification: {e}",
                    target.name
                ));
            }
        }
    }
    if let (Some(cmd), Some((target, entry))) = (check, passed.first()) {
        let scratch = root.join(format!("drill-{}", Utc::now().format("%Y%m%dT%H%M%S%.3fZ")));
        let checked = restore_and_check(
            ctx,
            (
                cmd,
                config.drill.check_timeout,
                &config.drill.check_timeout_text,
            ),
            target,
            entry,
            &decryption,
            &scratch,
        )
        .await;
        let removed = scratch.clone();
        let _ = blocking(move || {
            scratch::remove(&removed).map_err(|e| Error::io("remove", &removed, e))
        })
        .await;
        if let Err(e) = checked {
            if e.kind() == ErrorKind::Cancelled {
                return Err(e);
            }
            report.problems.push(format!(
                "destination {}: backup {}: {e}",
                target.name, entry.manifest.name
            ));
        }
    }
    Ok(())
}

/// The newest backup of `instance` in each destination, in configuration order; a
/// destination that cannot be listed, or has none, goes into `report`.
async fn newest_backups(
    config: &Config,
    instance: &str,
    report: &mut DrillReport,
) -> Result<Vec<(Target, BackupEntry)>> {
    let mut found = Vec::new();
    let mut listings = destinations::backups(config, None)?;
    while let Some(listed) = listings.next().await {
        match listed {
            // The error names its destination.
            Err(e) => report.problems.push(e.to_string()),
            Ok((target, entries)) => {
                // Listed newest first. The name must be this instance's too: a manifest
                // alone could claim the instance for a backup another agent named.
                match entries.into_iter().find(|e| {
                    e.manifest.instance_id == instance
                        && name_is_of_instance(&e.manifest.name, instance)
                }) {
                    Some(entry) => found.push((target, entry)),
                    None => report.problems.push(format!(
                        "destination {}: there is no backup of instance {instance} to verify",
                        target.name
                    )),
                }
            }
        }
    }
    Ok(found)
}

/// Restores `entry` into `scratch` and runs the restore check executable there, stopping
/// it (SIGTERM to its process group, SIGKILL after a grace) once `check` says it took too long.
async fn restore_and_check(
    ctx: &RunContext,
    check: (&str, Duration, &str),
    target: &Target,
    entry: &BackupEntry,
    decryption: &Decryption,
    scratch: &Path,
) -> Result<()> {
    let name = &entry.manifest.name;
    tracing::info!(destination_name = %target.name, backup_name = %name, folder = %scratch.display(), "Restore drill restoring into its scratch folder");
    let created = scratch.to_path_buf();
    blocking(move || scratch::create_drill_dir(&created)).await?;
    cancellable(
        ctx,
        restore_backup(
            target.destination.clone(),
            entry,
            decryption,
            &RestoreInto::Dir {
                path: scratch.to_path_buf(),
                replace: false,
            },
            Bar::hidden(),
        ),
    )
    .await?;
    // Checked again: the check runs in this folder and it is removed after.
    let restored = scratch.to_path_buf();
    blocking(move || scratch::real_dir(&restored)).await?;
    let place = Place {
        dir: Some(scratch.to_path_buf()),
        env: vec![
            (DIR_VAR, scratch.as_os_str().to_owned()),
            (BACKUP_VAR, name.into()),
        ],
    };
    let (cmd, timeout, timeout_text) = check;
    tracing::info!(command = %cmd, "Restore check executable started");
    // Stopped as at shutdown, by a token of its own that the timer or shutdown cancels.
    let stop = ctx.cancel.child_token();
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            stop.cancel();
        })
    };
    let ran = executables::run_in("restore check executable", cmd, &place, &stop).await;
    timer.abort();
    let finished = match ran {
        Err(e) if e.kind() == ErrorKind::Cancelled && !ctx.cancel.is_cancelled() => {
            tracing::error!(timeout = %timeout_text, "Restore check executable timed out and was stopped");
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "the restore check executable timed out after {timeout_text} and was stopped"
                ),
            )
            .with_hint("make it faster, or raise restore_check_timeout"));
        }
        ran => ran?,
    };
    if finished.status.success() {
        tracing::info!("Restore check executable completed successfully");
        return Ok(());
    }
    let how = match (finished.status.code(), finished.status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended ({})", finished.status),
    };
    let tail = if finished.tail.is_empty() {
        "no output".to_string()
    } else {
        format!("its last output: {}", finished.tail.join(" | "))
    };
    Err(Error::new(
        ErrorKind::Io,
        format!("the restore check executable {how} ({tail})"),
    ))
}

/// `work`, or a cancelled error as soon as `ctx.cancel` fires.
async fn cancellable<T>(
    ctx: &RunContext,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        r = work => r,
        () = ctx.cancel.cancelled() => Err(Error::new(ErrorKind::Cancelled, "the restore drill was stopped: the agent is shutting down")),
    }
}
