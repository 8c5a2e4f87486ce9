//! The local catalog of backups: what this agent has seen in its destinations, kept in the
//! task database and refreshed incrementally (`service_backup_core::catalog::refresh`), so
//! that lists and the API pick backups without listing and reading a shared prefix whole.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt as _};
use service_backup_core::catalog::BackupEntry;
use service_backup_core::catalog::refresh::{self, READ_CONCURRENCY, Reading, Scope};
use service_backup_core::destination::get_small;
use service_backup_core::manifest::{MAX_MANIFEST_BYTES, Manifest};
use service_backup_core::{Error, ErrorKind, Result};

use crate::config::Config;
use crate::destinations::{self, Listing, Target};
use crate::tasks::Tasks;

/// How often a refresh lists a destination whole (and at the first refresh), to drop
/// deleted backups and catch what an incremental refresh cannot see.
pub const FULL_REFRESH_EVERY: Duration = Duration::from_hours(6);

/// How long an API request waits for a refresh it started before answering from the
/// catalog as it is (the refresh goes on).
pub const API_BUDGET: Duration = Duration::from_secs(2);

/// How old a catalog may be before an API request starts a refresh.
pub const API_MAX_AGE: Duration = Duration::from_secs(30);

/// How much a refresh does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Incremental, or full when the last full one is older than [`FULL_REFRESH_EVERY`].
    Auto,
    /// Lists every destination whole.
    Full,
}

/// The catalog's name of a destination: its name, store and prefix, so that a changed
/// bucket or path starts a new catalog rather than mixing two.
pub fn key_of(target: &Target) -> String {
    format!(
        "{}\t{}\t{}",
        target.name,
        target.destination.describe(),
        target.layout.prefix()
    )
}

/// Refreshes the catalog of `target`: this instance's manifests, and the others' too when
/// `others` is set.
pub async fn refresh_one(
    tasks: &Tasks,
    target: &Target,
    instance_id: &str,
    mode: Mode,
    others: bool,
) -> Result<()> {
    let key = key_of(target);
    let started = Utc::now();
    let owned = key.clone();
    let last = tasks.catalog(move |s| s.catalog_refreshes(&owned)).await?;
    let owned = key.clone();
    let unread = tasks
        .catalog(move |s| s.catalog_counts(&owned))
        .await?
        .unread;
    let due = |full_at: Option<DateTime<Utc>>| {
        full_at.is_none_or(|f| {
            (started - f)
                .to_std()
                .is_ok_and(|age| age >= FULL_REFRESH_EVERY)
        })
    };
    let scope = match last {
        Some(last) if mode == Mode::Auto && !due(last.full_at) && !(others && unread > 0) => {
            Scope::since(&target.layout, last.refreshed_at)
        }
        _ => Scope::Full,
    };
    let owned = key.clone();
    let known = tasks.catalog(move |s| s.catalog_read_keys(&owned)).await?;
    let reading = Reading {
        instance_id,
        others,
        concurrency: READ_CONCURRENCY,
    };
    let refreshed = refresh::refresh(
        &*target.destination,
        &target.layout,
        &scope,
        &known,
        reading,
    )
    .await
    .map_err(|e| e.context(format!("destination {}", target.name)))?;
    drop(known);
    tracing::debug!(
        destination_name = %target.name,
        full = scope == Scope::Full,
        listed = refreshed.objects_listed,
        read = refreshed.changed.len(),
        "catalog refreshed"
    );
    tasks
        .catalog(move |s| s.catalog_apply(&key, &refreshed, started))
        .await
}

/// Every destination (or only the one named `only`) with its complete backups from the
/// catalog, each refreshed first; one that cannot be built or refreshed yields its error.
/// `instance` keeps only that instance's backups.
pub fn backups(
    config: &Config,
    tasks: Tasks,
    only: Option<&str>,
    instance_id: String,
    mode: Mode,
    all_instances: bool,
) -> Result<BoxStream<'static, Result<Listing>>> {
    let targets = destinations::select(config, only)?;
    Ok(futures::stream::iter(targets)
        .then(move |target| {
            let (tasks, instance_id) = (tasks.clone(), instance_id.clone());
            async move {
                let target = target?;
                refresh_one(&tasks, &target, &instance_id, mode, all_instances).await?;
                let key = key_of(&target);
                let only = (!all_instances).then_some(instance_id);
                let entries = tasks
                    .catalog(move |s| s.catalog_entries(&key, only.as_deref()))
                    .await?;
                Ok((target, entries))
            }
        })
        .boxed())
}

/// This instance's backups in every destination as the catalog holds them, without
/// touching a store, and when the oldest of those catalogs was refreshed (`None` if one
/// never was).
pub async fn cached(
    config: &Config,
    tasks: &Tasks,
    instance_id: &str,
) -> Result<(Vec<(Target, Vec<BackupEntry>)>, Option<DateTime<Utc>>)> {
    let mut out = Vec::new();
    let mut oldest: Option<Option<DateTime<Utc>>> = None;
    for target in destinations::select(config, None)? {
        let Ok(target) = target else { continue };
        let key = key_of(&target);
        let instance = instance_id.to_string();
        let (entries, last) = tasks
            .catalog(move |s| {
                Ok((
                    s.catalog_entries(&key, Some(&instance))?,
                    s.catalog_refreshes(&key)?,
                ))
            })
            .await?;
        let at = last.map(|l| l.refreshed_at);
        oldest = Some(match oldest {
            None => at,
            Some(prev) => prev.zip(at).map(|(a, b)| a.min(b)),
        });
        out.push((target, entries));
    }
    Ok((out, oldest.flatten()))
}

/// Starts a refresh of this instance's catalogs in the background when the oldest was
/// refreshed more than `max_age` ago (and none is running), and waits for it at most
/// `budget`: a caller answering a request answers from the catalog either way. Returns
/// whether it started one.
pub async fn refresh_in_background(
    config: Arc<Config>,
    tasks: Tasks,
    instance_id: String,
    refreshed_at: Option<DateTime<Utc>>,
    max_age: Duration,
    budget: Duration,
) -> bool {
    let fresh =
        refreshed_at.is_some_and(|at| (Utc::now() - at).to_std().map_or(true, |age| age < max_age));
    if fresh {
        return false;
    }
    // One background refresh at a time per task database (agent), not per process: the
    // agents of a process's tests must not keep each other's catalogs stale.
    let Some(guard) = tasks.try_refresh() else {
        return false;
    };
    let job = tokio::spawn(async move {
        let _one = guard;
        refresh_all(&config, &tasks, &instance_id, Mode::Auto).await;
    });
    let _ = tokio::time::timeout(budget, job).await;
    true
}

/// Refreshes this instance's catalog of every destination, logging the failures.
pub async fn refresh_all(config: &Config, tasks: &Tasks, instance_id: &str, mode: Mode) {
    let Ok(targets) = destinations::select(config, None) else {
        return;
    };
    for target in targets {
        let result = match target {
            Ok(target) => refresh_one(tasks, &target, instance_id, mode, false).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "the catalog of a destination could not be refreshed");
        }
    }
}

/// `entry`, picked from the catalog, as its manifest and archive in the store are now: the
/// catalog is a cache and never changes what a restore or a download finds. A manifest
/// rewritten since the catalog read it is taken as the store has it, and the archive's
/// size as listed now (the restore then checks the archive against them, as without a
/// catalog); a manifest gone, or now naming another backup or instance, is an error.
pub async fn current(target: &Target, entry: &BackupEntry) -> Result<BackupEntry> {
    let bytes = get_small(
        &*target.destination,
        &entry.manifest_key,
        MAX_MANIFEST_BYTES,
    )
    .await?;
    let now = Manifest::from_json(&bytes)?;
    // Listed now, as a restore without a catalog lists it; gone is an error there too.
    let archive_size = target
        .destination
        .list(&entry.archive_key)
        .await?
        .into_iter()
        .find(|o| o.key == entry.archive_key)
        .map(|o| o.size)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "the archive of backup {} is gone: {}",
                    entry.manifest.name, entry.archive_key
                ),
            )
        })?;
    if now == entry.manifest {
        return Ok(BackupEntry {
            archive_size,
            ..entry.clone()
        });
    }
    if now.name != entry.manifest.name || now.instance_id != entry.manifest.instance_id {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "the manifest of backup {} now names backup {} of instance {}",
                entry.manifest.name, now.name, now.instance_id
            ),
        ));
    }
    tracing::info!(
        backup_name = %entry.manifest.name,
        "the manifest changed since the catalog read it; using the store's"
    );
    Ok(BackupEntry {
        manifest: now,
        archive_size,
        ..entry.clone()
    })
}

/// Records a backup this agent just stored in `target`, so that it is listed at once.
pub async fn record(tasks: &Tasks, target: &Target, entry: BackupEntry) {
    let key = key_of(target);
    if let Err(e) = tasks.catalog(move |s| s.catalog_add(&key, &entry)).await {
        tracing::warn!(error = %e, "a new backup could not be recorded in the catalog");
    }
}

/// Forgets a backup deleted from `target`.
pub async fn forget(tasks: &Tasks, target: &Target, manifest_key: &str) {
    let (key, manifest_key) = (key_of(target), manifest_key.to_string());
    if let Err(e) = tasks
        .catalog(move |s| s.catalog_remove(&key, &manifest_key))
        .await
    {
        tracing::warn!(error = %e, "a deleted backup could not be dropped from the catalog");
    }
}

/// The copies of backup `name` the catalog holds, in configuration order, without touching
/// a store: the caller checks each with [`verify`] before using it.
pub async fn find(
    config: &Config,
    tasks: &Tasks,
    name: &str,
) -> Result<Vec<(Target, BackupEntry)>> {
    let mut out = Vec::new();
    for target in destinations::select(config, None)? {
        let Ok(target) = target else { continue };
        let (key, wanted) = (key_of(&target), name.to_string());
        let found = tasks
            .catalog(move |s| s.catalog_entry(&key, &wanted))
            .await?;
        if let Some(entry) = found {
            out.push((target, entry));
        }
    }
    Ok(out)
}
