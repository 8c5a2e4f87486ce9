//! A restore as a task: find the backup in the destinations, restore it into the target
//! through a staging folder, then run `restore.restore_executable`; recorded in the task
//! database as a task of kind restore (`queued → running → done | failed`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt as _;
use service_backup_core::catalog::{self, Selector, select};
use service_backup_core::ops::browse;
use service_backup_core::ops::restore::{
    Decryption, ReadStats, RestoreInto, restore_backup, restore_resumable,
};
use service_backup_core::{Error, ErrorKind, Result};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::context::{self, RunContext};
use crate::destinations;
use crate::executables;
use crate::identity;
use crate::lock;
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
    /// The folder to restore into (and whether to replace one that is not empty, once
    /// the backup is fully restored), or only a check.
    pub into: RestoreInto,
    /// Another instance whose backups to restore (default: this agent's own).
    pub from_instance: Option<String>,
    /// Only these paths (files, folders, globs), fetched through the archive's index;
    /// empty: the whole backup.
    pub include: Vec<String>,
}

/// The folder a restore goes into by default: `restore.target_folder`, else `source_folder`.
pub fn default_target(config: &Config) -> Option<PathBuf> {
    config
        .restore
        .target_folder
        .clone()
        .or_else(|| config.source_folder.clone())
}

/// Refuses (bad usage) a restore target that is, holds or lies inside one of the agent's
/// own files or folders: a restore replaces the target's whole content, and would delete
/// the task database, a key, the configuration or the backups of a local destination.
pub fn check_target(config: &Config, target: &Path) -> Result<()> {
    let state_dir = context::state_dir(config);
    // A configured state_dir is the agent's alone; the default one is the configuration's
    // folder, where only the agent's own files are.
    let mut own: Vec<(String, PathBuf)> = if config.state_dir.is_some() {
        vec![("the state_dir".to_string(), state_dir)]
    } else {
        [
            crate::tasks::store::DB_FILE,
            "service-backup.sqlite3-wal",
            "service-backup.sqlite3-shm",
            crate::lock::LOCK_FILE,
            crate::destinations::KNOWN_HOSTS_FILE,
            crate::password::PASSWORD_FILE,
        ]
        .iter()
        .map(|name| ("the agent's state".to_string(), state_dir.join(name)))
        .collect()
    };
    for file in &config.key_files {
        own.push(("the encryption key file".to_string(), file.clone()));
    }
    if let Some(file) = &config.source_path {
        own.push(("the configuration file".to_string(), file.clone()));
    }
    for dest in &config.destinations {
        if let crate::config::DestinationKind::Local(local) = &dest.kind {
            own.push((
                format!("the folder of destination {}", dest.display_name()),
                local.path.clone(),
            ));
        }
    }
    if let Some(api) = &config.api {
        if let Some(file) = &api.bearer_tokens_file {
            own.push(("the API's bearer tokens file".to_string(), file.clone()));
        }
        if let Some(tls) = &api.tls {
            own.push((
                "the API's TLS certificate".to_string(),
                tls.cert_file.clone(),
            ));
            own.push(("the API's TLS key".to_string(), tls.key_file.clone()));
        }
    }
    let target_real = real_path(target);
    for (what, path) in own {
        let path = real_path(&path);
        let relation = if target_real == path {
            "is"
        } else if path.starts_with(&target_real) {
            "holds"
        } else if target_real.starts_with(&path) {
            "lies inside"
        } else {
            continue;
        };
        return Err(Error::new(
            ErrorKind::Usage,
            format!(
                "restore target {} {relation} {what} ({}): a restore replaces the target's whole content and would delete it",
                target.display(),
                path.display()
            ),
        )
        .with_hint("restore into a folder apart from the agent's own files (--target, or restore.target_folder)"));
    }
    Ok(())
}

/// `path` made absolute with symbolic links resolved, as far as it exists; the rest (which
/// does not exist, so holds no link) is added with `.` and `..` applied.
fn real_path(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut base = absolute.as_path();
    let mut rest = Vec::new();
    let mut real = loop {
        if let Ok(real) = std::fs::canonicalize(base) {
            break real;
        }
        match (base.parent(), base.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                base = parent;
            }
            // `..` last, or the root: apply it lexically below.
            (Some(parent), None) => {
                rest.push("..".into());
                base = parent;
            }
            (None, _) => break base.to_path_buf(),
        }
    };
    for part in rest.into_iter().rev() {
        if part == ".." {
            real.pop();
        } else if part != "." {
            real.push(part);
        }
    }
    real
}

/// Runs the queued restore task `id`: waits for a backup in progress (the backup lock is
/// held for the whole restore), restores, then runs the restore executable; the task ends
/// `done` or `failed` with the reason, whatever fails. Returns the backup's name and what
/// was read.
pub async fn run_task(
    config: &Config,
    ctx: &RunContext,
    id: i64,
    plan: &RestorePlan,
    bar: Arc<Bar>,
) -> Result<(String, ReadStats)> {
    // A backup running meanwhile could archive the target half restored (and the staging
    // folder with it), and a backup starting meanwhile waits for this restore.
    let _lock = match lock::acquire_for_restore(&ctx.state_dir, &ctx.cancel).await {
        Ok(lock) => lock,
        Err(e) => {
            record_failure(&ctx.tasks, id, &e, 0.0).await;
            return Err(e);
        }
    };
    let started = Instant::now();
    let result = async {
        if ctx.cancel.is_cancelled() {
            return Err(Error::new(
                ErrorKind::Cancelled,
                "stopped before the restore began",
            ));
        }
        let guid = service_backup_core::random::hex_token(16)?;
        ctx.tasks.start(id, guid).await?;
        ctx.tasks.watch(id, bar.counters());
        let target = plan.into.path().unwrap_or(Path::new(""));
        tracing::info!(task_id = id, target = %target.display(), "Perform restore started");
        restore_and_run(config, plan, &ctx.cancel, bar).await
    }
    .await;
    ctx.tasks.unwatch(id);
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
            ctx.tasks
                .finish(
                    id,
                    Some(name.clone()),
                    stats.extracted.bytes,
                    stats.stored_bytes,
                    seconds,
                )
                .await?;
        }
        Err(e) => record_failure(&ctx.tasks, id, e, seconds).await,
    }
    result
}

/// Logs the failure of restore task `id` and records it in the task, `queued` or
/// `running`; a task that cannot be updated is logged too.
async fn record_failure(tasks: &Tasks, id: i64, e: &Error, seconds: f64) {
    tracing::error!(task_id = id, error = %e, "Perform restore completed with error");
    let reason = if e.kind() == ErrorKind::Cancelled {
        "terminated".to_string()
    } else {
        e.to_string()
    };
    if let Err(e) = tasks.fail(id, None, reason, seconds).await {
        tracing::error!(task_id = id, error = %e, "The restore task could not be marked failed");
    }
}

async fn restore_and_run(
    config: &Config,
    plan: &RestorePlan,
    cancel: &CancellationToken,
    bar: Arc<Bar>,
) -> Result<(String, ReadStats)> {
    let done = from_destinations(config, plan, bar).await?;
    if let Some(cmd) = &config.restore.restore_executable {
        tracing::info!(command = %cmd, "Restore executable started");
        executables::run("restore executable", cmd, cancel).await?;
        tracing::info!("Restore executable completed successfully");
    }
    Ok(done)
}

/// Finds the selected backup in the destinations, in configuration order, and restores or
/// (with [`RestoreInto::CheckOnly`]) verifies it from the first destination that has it
/// and answers.
pub async fn from_destinations(
    config: &Config,
    plan: &RestorePlan,
    bar: Arc<Bar>,
) -> Result<(String, ReadStats)> {
    let mut last_error: Option<Error> = None;
    let what = if plan.into.path().is_some() {
        "Restore"
    } else {
        "Verify"
    };
    // A backup named explicitly is found whatever instance made it; otherwise the newest
    // (or the newest before a time) of this instance, or of the one asked for.
    let instance = instance_of(config, plan).await;
    // A restore that finds its backup damaged in one destination takes the same backup
    // (by name) from the next one that has it, saying so; a verify reports the damage.
    let mut pinned: Option<Selector> = None;
    let mut damaged: Option<Error> = None;
    let mut listings = match from_catalog(config, plan, instance.as_deref()).await {
        Some(listed) => futures::stream::iter(listed).boxed(),
        None => destinations::backups(config, plan.destination.as_deref())?,
    };
    while let Some(listed) = listings.next().await {
        let selector = pinned.clone().unwrap_or_else(|| plan.selector.clone());
        // A restore of the newest backup (or the newest before a time) passes over one that
        // shows it is not genuine, saying so; a backup named explicitly is never replaced.
        let tries = if plan.into.path().is_some() && !matches!(selector, Selector::Named(_)) {
            FALLBACK_TRIES
        } else {
            1
        };
        let untrusted = std::sync::atomic::AtomicBool::new(false);
        let attempt = async {
            let (d, mut entries) = listed.map_err(|e| (e, None))?;
            let (others, shown) = keep_instance(
                &mut entries,
                instance.as_deref(),
                plan.from_instance.is_some(),
            );
            drop_future(&mut entries, &selector, &d.name);
            // The first candidate must exist: its absence is the usual "no such backup".
            select(&entries, &selector).map_err(|e| match &shown {
                Some(id) => (of_instance(&e, id, others), None),
                None => (e, None),
            })?;
            let candidates = candidates(&entries, &selector);
            let mut skipped: Vec<(String, Error)> = Vec::new();
            for entry in candidates.into_iter().take(tries) {
                // Picked from the catalog: what counts is its manifest in the store now.
                let entry = match crate::catalog::current(&d, entry).await {
                    Ok(entry) => entry,
                    Err(e) if tries > 1 && e.kind() == ErrorKind::Corrupt => {
                        skip(&mut skipped, &entry.manifest.name, &d.name, e);
                        continue;
                    }
                    Err(e) => return Err((e.context(format!("destination {}", d.name)), None)),
                };
                if tries > 1 {
                    match genuine(&d, &entry, &plan.decryption).await {
                        Ok(()) => {}
                        Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::WrongKey) => {
                            skip(&mut skipped, &entry.manifest.name, &d.name, e);
                            continue;
                        }
                        Err(e) => {
                            return Err((
                                e.context(format!(
                                    "backup {} in destination {}",
                                    entry.manifest.name, d.name
                                )),
                                None,
                            ));
                        }
                    }
                }
                tracing::info!(destination_name = %d.name, backup_name = %entry.manifest.name, "{what} started");
                let stats =
                    restore_entry(config, d.destination.clone(), &entry, plan, bar.clone()).await;
                bar.finish();
                return stats
                    .map(|s| ((entry.manifest.name.clone(), s), d.name.clone()))
                    .map_err(|e| {
                        (
                            e.context(format!(
                                "backup {} in destination {}",
                                entry.manifest.name, d.name
                            )),
                            Some(entry.manifest.name.clone()),
                        )
                    });
            }
            untrusted.store(true, std::sync::atomic::Ordering::Relaxed);
            Err((none_genuine(skipped, &d.name), None))
        };
        let failure = match attempt.await {
            Ok((done, dest_name)) => {
                if let Some(e) = &damaged {
                    tracing::warn!(destination_name = %dest_name, error = %e, "Restored from this destination because another copy is damaged");
                }
                return Ok(done);
            }
            Err(failure) => failure,
        };
        match failure {
            // Another destination may hold genuine backups.
            (e, None) if untrusted.load(std::sync::atomic::Ordering::Relaxed) => {
                tracing::error!(error = %e, "trying the next destination");
                last_error = Some(e);
            }
            (e, Some(name))
                if e.kind() == ErrorKind::Corrupt
                    && plan.into.path().is_some()
                    && damaged.is_none() =>
            {
                tracing::error!(error = %e, "The copy of the backup is damaged; trying the next destination that has it");
                pinned = Some(Selector::Named(name));
                damaged = Some(e);
            }
            // A backup that is damaged or refused is not retried elsewhere silently.
            (e, _)
                if !matches!(
                    e.kind(),
                    ErrorKind::NotFound | ErrorKind::Destination | ErrorKind::Io
                ) =>
            {
                return Err(e);
            }
            (e, _) => {
                tracing::warn!(error = %e, "trying the next destination");
                last_error = Some(e);
            }
        }
    }
    Err(damaged
        .or(last_error)
        .unwrap_or_else(|| Error::new(ErrorKind::NotFound, "no destination has the backup")))
}

/// How many of the newest backups a restore of the latest tries, passing over those that
/// show they are not genuine.
const FALLBACK_TRIES: usize = 3;

/// How far in the future a backup's start may lie (clocks differ) before a pick of the
/// newest passes over it.
const FUTURE_SLACK: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// Drops from `entries`, for a pick of the newest (not of a name), the backups that say
/// they started more than a day from now: no agent made those, and one planted there
/// would be picked before every real one.
fn drop_future(entries: &mut Vec<catalog::BackupEntry>, selector: &Selector, destination: &str) {
    if matches!(selector, Selector::Named(_)) {
        return;
    }
    let limit = chrono::Utc::now() + FUTURE_SLACK;
    entries.retain(|e| {
        let future = e.manifest.started_at > limit;
        if future {
            tracing::warn!(
                destination_name = %destination,
                backup_name = %e.manifest.name,
                started_at = %e.manifest.started_at.to_rfc3339(),
                "passing over a backup that says it started more than a day from now; no agent made it at that time"
            );
        }
        !future
    });
}

/// The backups `selector` may pick from `entries` (newest first), in the order to try.
fn candidates<'a>(
    entries: &'a [catalog::BackupEntry],
    selector: &Selector,
) -> Vec<&'a catalog::BackupEntry> {
    match selector {
        Selector::Latest => entries.iter().collect(),
        Selector::Before(t) => entries
            .iter()
            .filter(|e| e.manifest.started_at < *t)
            .collect(),
        Selector::Named(_) => select(entries, selector).into_iter().collect(),
    }
}

/// Records and logs a backup passed over as not genuine.
fn skip(skipped: &mut Vec<(String, Error)>, name: &str, destination: &str, e: Error) {
    tracing::warn!(destination_name = %destination, backup_name = %name, error = %e, "passing over this backup, which is not genuine; trying the next newest");
    skipped.push((name.to_string(), e));
}

/// The error of a destination none of whose newest backups (`skipped`, with why) is
/// genuine: the one backup's own error (and hint) when it was the only one.
fn none_genuine(mut skipped: Vec<(String, Error)>, destination: &str) -> Error {
    if skipped.len() == 1 {
        let (name, e) = skipped.remove(0);
        return e.context(format!("backup {name} in destination {destination}"));
    }
    let hint = skipped
        .iter()
        .find_map(|(_, e)| e.hint())
        .map_or_else(String::new, |h| format!("; {h}"));
    let why: Vec<String> = skipped.iter().map(|(n, e)| format!("{n}: {e}")).collect();
    Error::new(
        ErrorKind::Corrupt,
        format!(
            "destination {destination}: none of the {} newest backups is genuine: {}",
            skipped.len(),
            why.join("; ")
        ),
    )
    .with_hint(format!(
        "someone who can write to the destination may have planted these backups: compare them with `service-backup list CONFIG`, restore a backup by name with --backup, and check who can write there{hint}"
    ))
}

/// Checks from its archive's header alone (a ranged read of a few hundred bytes) that
/// `entry` is the backup its manifest names: opened by a key given, bound to that backup,
/// and encrypted when keys are given (unless unencrypted archives are accepted).
async fn genuine(
    d: &destinations::Target,
    entry: &catalog::BackupEntry,
    decryption: &Decryption,
) -> Result<()> {
    let len = entry
        .manifest
        .stored_bytes
        .min(service_backup_core::format::MAX_HEADER_LEN as u64);
    let mut object = d.destination.get_range(&entry.archive_key, 0..len).await?;
    let read = catalog::read_head(&mut object.chunks).await?;
    drop(object);
    let head: Vec<u8> = read.iter().flat_map(|c| c.iter().copied()).collect();
    let keys = decryption.keyring.as_ref().filter(|k| !k.is_empty());
    match catalog::judge(&head, keys, entry)? {
        catalog::Authenticity::Plain if keys.is_some() && !decryption.allow_unencrypted => {
            Err(Error::new(
                ErrorKind::Corrupt,
                "the archive is not encrypted although a key is configured, so it may have been replaced",
            )
            .with_hint("if it is an old backup made before encryption was set up, pass --allow-unencrypted"))
        }
        _ => Ok(()),
    }
}

/// Restores (or verifies) `entry`: the whole backup, or with `plan.include` only the
/// entries it names, fetched through the archive's index. A whole restore keeps its
/// checkpoints in the state folder, and goes on where one of the same backup into the same
/// target stopped.
async fn restore_entry(
    config: &Config,
    dest: Arc<dyn service_backup_core::destination::Destination>,
    entry: &catalog::BackupEntry,
    plan: &RestorePlan,
    bar: Arc<Bar>,
) -> Result<ReadStats> {
    let RestoreInto::Dir { path, replace } = &plan.into else {
        return restore_backup(dest, entry, &plan.decryption, &plan.into, bar).await;
    };
    if plan.include.is_empty() {
        return restore_resumable(
            dest,
            entry,
            &plan.decryption,
            path,
            *replace,
            &context::state_dir(config),
            bar,
        )
        .await;
    }
    let backup = browse::open_backup(dest, entry, &plan.decryption).await?;
    browse::restore_selected(
        backup,
        browse::Selection::new(&plan.include),
        path.clone(),
        *replace,
        Some(entry.manifest.plain_bytes),
        bar,
    )
    .await
}

/// The destination and backup `plan` selects, from the first destination (in
/// configuration order) that has it, picked from the catalog as a restore picks it; for
/// reading parts of it, as `ls` does.
pub async fn locate(
    config: &Config,
    plan: &RestorePlan,
) -> Result<(destinations::Target, catalog::BackupEntry)> {
    let instance = instance_of(config, plan).await;
    let mut last_error = None;
    let mut listings = match from_catalog(config, plan, instance.as_deref()).await {
        Some(listed) => futures::stream::iter(listed).boxed(),
        None => destinations::backups(config, plan.destination.as_deref())?,
    };
    while let Some(listed) = listings.next().await {
        let (d, mut entries) = match listed {
            Ok(listed) => listed,
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        let (others, _) = keep_instance(
            &mut entries,
            instance.as_deref(),
            plan.from_instance.is_some(),
        );
        drop_future(&mut entries, &plan.selector, &d.name);
        match select(&entries, &plan.selector) {
            // Picked from the catalog: what counts is its manifest in the store now.
            Ok(entry) => match crate::catalog::current(&d, entry).await {
                Ok(entry) => return Ok((d, entry)),
                Err(e) => last_error = Some(e.context(format!("destination {}", d.name))),
            },
            Err(e) => {
                last_error = Some(match &instance {
                    Some(id) => of_instance(&e, id, others),
                    None => e,
                });
            }
        }
    }
    Err(last_error
        .unwrap_or_else(|| Error::new(ErrorKind::NotFound, "no destination has the backup")))
}

/// This instance's backups (or those of `instance`) from the refreshed catalog, when
/// every destination could be refreshed and one holds the backup `plan` selects; a backup
/// named explicitly is found whatever instance made it, reading its manifest alone. `None`
/// sends the caller to the destinations themselves (a backup the catalog does not know, a
/// `state_dir` that cannot be opened).
async fn from_catalog(
    config: &Config,
    plan: &RestorePlan,
    instance: Option<&str>,
) -> Option<Vec<Result<destinations::Listing>>> {
    let (own, named) = match (instance, &plan.selector) {
        (Some(id), _) => (id.to_string(), None),
        (None, Selector::Named(name)) => (identity::this_instance(config).await, Some(name)),
        (None, _) => return None,
    };
    let tasks = Tasks::open(&crate::context::state_dir(config)).await.ok()?;
    let mut listed: Vec<Result<destinations::Listing>> = crate::catalog::backups(
        config,
        tasks.clone(),
        plan.destination.as_deref(),
        own,
        crate::catalog::Mode::Auto,
        false,
    )
    .ok()?
    .collect()
    .await;
    if let Some(name) = named {
        for (target, entries) in listed.iter_mut().flatten() {
            entries.retain(|e| e.manifest.name == *name);
            if entries.is_empty()
                && let Ok(Some(entry)) = crate::catalog::named(&tasks, target, name).await
            {
                entries.push(entry);
            }
        }
    }
    let found = listed.iter().all(Result::is_ok)
        && listed
            .iter()
            .flatten()
            .any(|(_, entries)| select(entries, &plan.selector).is_ok());
    found.then_some(listed)
}

/// The instance whose backups `plan` picks from: the one asked for, none for a backup
/// named explicitly (found whatever instance made it), else this one.
async fn instance_of(config: &Config, plan: &RestorePlan) -> Option<String> {
    match (&plan.from_instance, &plan.selector) {
        (Some(id), _) => Some(id.clone()),
        (None, Selector::Named(_)) => None,
        (None, _) => Some(identity::this_instance(config).await),
    }
}

/// Keeps in `entries` only the backups of `instance` (or of the instance it adopts, see
/// [`adopted_instance`]); returns how many others it dropped and the instance kept.
fn keep_instance(
    entries: &mut Vec<catalog::BackupEntry>,
    instance: Option<&str>,
    chosen: bool,
) -> (usize, Option<String>) {
    let Some(own) = instance else {
        return (0, None);
    };
    let wanted = adopted_instance(entries, own, chosen);
    let before = entries.len();
    entries.retain(|e| e.manifest.instance_id == wanted);
    (before - entries.len(), Some(wanted))
}

/// The instance whose backups to restore: `own`; or, on a new VM that has none of its own
/// (its host name, the default instance id, changed), the one other instance whose
/// backups are under the prefix, so that a restore from the config alone works. With
/// several other instances nothing is guessed: the error points to `--from-instance`.
fn adopted_instance(all: &[catalog::BackupEntry], own: &str, chosen: bool) -> String {
    if chosen || all.iter().any(|e| e.manifest.instance_id == own) {
        return own.to_string();
    }
    let mut others: Vec<&str> = all
        .iter()
        .map(|e| e.manifest.instance_id.as_str())
        .collect();
    others.sort_unstable();
    others.dedup();
    match others[..] {
        [only] => {
            tracing::warn!(
                instance = own,
                other_instance = only,
                "this instance has no backups; using those of the only instance under this prefix"
            );
            only.to_string()
        }
        _ => own.to_string(),
    }
}

/// A "no such backup" error that names the instance, and points to the other instances'
/// backups when there are some.
fn of_instance(e: &Error, instance: &str, others: usize) -> Error {
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
