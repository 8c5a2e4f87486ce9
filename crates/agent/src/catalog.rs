//! The local catalog of backups: what this agent has seen in its destinations, kept in the
//! task database and refreshed incrementally (`service_backup_core::catalog::refresh`), so
//! that lists and the API pick backups without listing and reading a shared prefix whole.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt as _};
use service_backup_core::catalog::refresh::{self, READ_CONCURRENCY, Reading, Scope};
use service_backup_core::catalog::{BackupEntry, own_archive};
use service_backup_core::destination::{ObjectMeta, get_small};
use service_backup_core::manifest::{MAX_MANIFEST_BYTES, Manifest};
use service_backup_core::{Error, ErrorKind, Result};

use crate::config::Config;
use crate::destinations::{self, Listing, Target};
use crate::tasks::Tasks;

/// How often a refresh lists a destination whole (and at the first refresh), to drop
/// deleted backups and catch what an incremental refresh cannot see, unless configured.
#[cfg(test)]
pub const FULL_REFRESH_EVERY: Duration = Duration::from_hours(6);

/// How often the catalogs of `config` are listed whole (`catalog_full_refresh`).
pub fn full_every(config: &Config) -> Duration {
    config.catalog_full_refresh
}

/// Whether something last done at `at` is due again at `now`, every `every`: never done,
/// done that long ago, or dated after `now` (the clock went back).
pub fn due(at: Option<DateTime<Utc>>, now: DateTime<Utc>, every: Duration) -> bool {
    at.is_none_or(|at| at > now || (now - at).to_std().is_ok_and(|age| age >= every))
}

/// How long an API request waits for a refresh it started before answering from the
/// catalog as it is (the refresh goes on).
pub const API_BUDGET: Duration = Duration::from_secs(2);

/// How old a catalog may be before an API request starts a refresh.
pub const API_MAX_AGE: Duration = Duration::from_secs(30);

/// How often the daemon refreshes its catalogs in the background while the API is in use
/// (within [`API_MAX_AGE`], so that a request rarely waits for a refresh), and how often an
/// idle daemon checks whether a full refresh is due.
pub const BACKGROUND_EVERY: Duration = Duration::from_secs(20);

/// How long after the last API request that read the catalog the daemon keeps refreshing
/// it in the background; past it, only a due full refresh lists a store.
pub const IN_USE_FOR: Duration = Duration::from_mins(10);

/// The pace of the daemon's background refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// The time between two checks (and, while in use, two refreshes).
    pub every: Duration,
    /// How long after the last request that read the catalog it is kept fresh.
    pub in_use_for: Duration,
}

impl Pace {
    /// [`BACKGROUND_EVERY`] and [`IN_USE_FOR`].
    pub const DAEMON: Self = Self {
        every: BACKGROUND_EVERY,
        in_use_for: IN_USE_FOR,
    };
}

/// How much a refresh does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Incremental, or full when the last full one is older than `catalog_full_refresh`.
    Auto,
    /// Lists every destination whole.
    Full,
    /// Lists a destination whole when its last full listing is older than
    /// `catalog_full_refresh` (or it never had one); otherwise lists nothing.
    FullIfDue,
}

/// What a refresh of one destination found besides what it recorded.
#[derive(Debug, Default)]
pub struct Outcome {
    /// After a full refresh, the archives listed without a manifest beside them; `None`
    /// after an incremental one.
    pub orphans: Option<Vec<ObjectMeta>>,
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
/// `others` is set. An automatic refresh lists the destination whole every `full_every`,
/// and when manifests it must read were listed and left unread before (another instance
/// sharing this task database, or `others`).
pub async fn refresh_one(
    tasks: &Tasks,
    target: &Target,
    instance_id: &str,
    mode: Mode,
    others: bool,
    full_every: Duration,
) -> Result<Outcome> {
    let key = key_of(target);
    let started = Utc::now();
    let (owned, me) = (key.clone(), instance_id.to_string());
    let (last, unread) = tasks
        .catalog(move |s| {
            let last = s.catalog_refreshes(&owned)?;
            let unread = if others {
                s.catalog_counts(&owned)?.unread > 0
            } else {
                s.catalog_unread_of(&owned, &me)?
            };
            Ok((last, unread))
        })
        .await?;
    if mode == Mode::FullIfDue
        && let Some(last) = &last
        && !due(last.full_at, started, full_every)
    {
        return Ok(Outcome::default());
    }
    let scope = match last {
        Some(last) if mode == Mode::Auto && !due(last.full_at, started, full_every) && !unread => {
            Scope::since(&target.layout, last.refreshed_at)
        }
        _ => Scope::Full,
    };
    let reading = Reading {
        instance_id,
        others,
        concurrency: READ_CONCURRENCY,
    };
    // A refresh's rows are marked with its generation as the listing goes; at its end the
    // rows of the range listed that it did not see are dropped.
    let generation = started.timestamp_micros();
    let mut sink = Recorder {
        tasks,
        key: key.clone(),
        generation,
        reread: match (&scope, mode, others) {
            (Scope::After(_), _, _) => Reread::Nothing,
            // Asked for (`list --all-instances --refresh`, a prune of every instance when it
            // lists whole): every manifest is read again.
            (Scope::Full, Mode::Full, true) => Reread::All,
            (Scope::Full, _, _) => Reread::Of(instance_id.to_string()),
        },
        read: 0,
    };
    let summary = refresh::refresh_into(
        &*target.destination,
        &target.layout,
        &scope,
        &mut sink,
        reading,
    )
    .await
    .map_err(|e| e.context(format!("destination {}", target.name)))?;
    tracing::debug!(
        destination_name = %target.name,
        full = scope == Scope::Full,
        listed = summary.objects_listed,
        read = sink.read,
        "catalog refreshed"
    );
    let listed_after = summary.listed_after;
    tasks
        .catalog(move |s| s.catalog_finish(&key, listed_after.as_deref(), generation, started))
        .await?;
    let orphans = summary.orphans;
    Ok(Outcome { orphans })
}

/// Which manifests a refresh reads again, besides those it never read.
enum Reread {
    /// None (an incremental refresh: a rewritten manifest waits for a full one).
    Nothing,
    /// The damaged ones and this instance's (a full refresh: a backup repaired in the store
    /// comes back, and a manifest rewritten since is taken as it is now).
    Of(String),
    /// Every one (a full refresh of every instance's asked for).
    All,
}

/// Records what a refresh finds in the task database as the listing goes.
struct Recorder<'a> {
    tasks: &'a Tasks,
    key: String,
    generation: i64,
    /// Which manifests read before are read again.
    reread: Reread,
    /// How many manifests the refresh read.
    read: usize,
}

impl refresh::Sink for Recorder<'_> {
    fn known(
        &mut self,
        first: String,
        last: String,
    ) -> BoxFuture<'_, Result<std::collections::HashSet<String>>> {
        let key = self.key.clone();
        let reread_of = match &self.reread {
            Reread::All => return Box::pin(async { Ok(std::collections::HashSet::new()) }),
            Reread::Nothing => None,
            Reread::Of(instance) => Some(instance.clone()),
        };
        Box::pin(
            self.tasks.catalog(move |s| {
                s.catalog_read_between(&key, &first, &last, reread_of.as_deref())
            }),
        )
    }

    fn write(&mut self, found: refresh::Refreshed) -> BoxFuture<'_, Result<()>> {
        self.read += found
            .changed
            .iter()
            .filter(|l| l.found != refresh::Found::Unread)
            .count();
        let (key, generation) = (self.key.clone(), self.generation);
        Box::pin(
            self.tasks
                .catalog(move |s| s.catalog_write_batch(&key, &found, generation)),
        )
    }
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
    let every = full_every(config);
    Ok(futures::stream::iter(targets)
        .then(move |target| {
            let (tasks, instance_id) = (tasks.clone(), instance_id.clone());
            async move {
                let target = target?;
                refresh_one(&tasks, &target, &instance_id, mode, all_instances, every).await?;
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

/// The catalog keys ([`key_of`]) of the destinations of `config` that can be built.
pub fn keys(config: &Config) -> Result<Vec<String>> {
    Ok(destinations::select(config, None)?
        .into_iter()
        .filter_map(|target| target.ok().map(|t| key_of(&t)))
        .collect())
}

/// Records this instance's backups in the catalogs of `config` that no task made as
/// `discovered` tasks, without touching a store, and returns when the oldest of those
/// catalogs was refreshed (`None` if one never was).
pub async fn discover(
    config: &Config,
    tasks: &Tasks,
    instance_id: &str,
) -> Result<Option<DateTime<Utc>>> {
    let keys = keys(config)?;
    let instance = instance_id.to_string();
    tasks
        .catalog(move |s| s.catalog_discover(&keys, &instance))
        .await
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

/// Keeps this instance's catalogs fresh in the background until `cancel`: every
/// `pace.every` (the first check at once) while an API request read the catalog within
/// `pace.in_use_for` (incrementally, whole on the slow schedule); otherwise only the full
/// refresh when it is due. A refresh already running (one an API request started) is not
/// doubled. The configuration in force is read each time.
pub async fn refresh_on_schedule(
    config: Arc<std::sync::RwLock<Config>>,
    tasks: Tasks,
    instance_id: String,
    pace: Pace,
    cancel: tokio_util::sync::CancellationToken,
) {
    let refresh = {
        let tasks = tasks.clone();
        move |mode: Mode| {
            let current = config
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let (tasks, instance_id) = (tasks.clone(), instance_id.clone());
            Box::pin(async move { refresh_all(&current, &tasks, &instance_id, mode).await })
                as BoxFuture<'static, ()>
        }
    };
    keep_fresh(&tasks, pace, &cancel, refresh).await;
}

/// The loop of [`refresh_on_schedule`], with `refresh` doing one refresh of every catalog
/// in the mode given.
async fn keep_fresh<F>(
    tasks: &Tasks,
    pace: Pace,
    cancel: &tokio_util::sync::CancellationToken,
    mut refresh: F,
) where
    F: FnMut(Mode) -> BoxFuture<'static, ()>,
{
    let mut ticks = tokio::time::interval(pace.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = cancel.cancelled() => return,
        }
        let Some(_one) = tasks.try_refresh() else {
            continue;
        };
        let in_use = tasks
            .catalog_read_at()
            .is_some_and(|at| at.elapsed() < pace.in_use_for);
        let mode = if in_use { Mode::Auto } else { Mode::FullIfDue };
        tokio::select! {
            () = refresh(mode) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// Refreshes this instance's catalog of every destination, logging the failures.
pub async fn refresh_all(config: &Config, tasks: &Tasks, instance_id: &str, mode: Mode) {
    let Ok(targets) = destinations::select(config, None) else {
        return;
    };
    let every = full_every(config);
    for target in targets {
        let result = match target {
            Ok(target) => refresh_one(tasks, &target, instance_id, mode, false, every)
                .await
                .map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "the catalog of a destination could not be refreshed");
        }
    }
}

/// Backup `name` of any instance in `target`, when the catalog listed it: its manifest alone
/// is read (another instance's manifests are listed, not read, by this agent's refreshes),
/// judged as a refresh judges it ([`own_archive`]) and its archive listed, and the backup
/// recorded as read; `None` when the catalog does not know it or its manifest is not that
/// backup's (another name, instance or archive).
pub async fn named(tasks: &Tasks, target: &Target, name: &str) -> Result<Option<BackupEntry>> {
    let (key, wanted) = (key_of(target), name.to_string());
    let Some(manifest_key) = tasks
        .catalog(move |s| s.catalog_key_of(&key, &wanted))
        .await?
    else {
        return Ok(None);
    };
    let bytes = get_small(&*target.destination, &manifest_key, MAX_MANIFEST_BYTES).await?;
    let manifest = Manifest::from_json(&bytes)?;
    let Ok(archive_key) = own_archive(&target.layout, &manifest_key, name, &manifest) else {
        return Ok(None);
    };
    let archive_size = archive_size(target, &archive_key, name).await?;
    let entry = BackupEntry {
        manifest,
        manifest_key,
        archive_key,
        archive_size,
    };
    record(tasks, target, entry.clone()).await;
    Ok(Some(entry))
}

/// The size of the archive `key` of backup `name` as `target` lists it now; gone is an error.
async fn archive_size(target: &Target, key: &str, name: &str) -> Result<u64> {
    target
        .destination
        .list(key)
        .await?
        .into_iter()
        .find(|o| o.key == key)
        .map(|o| o.size)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("the archive of backup {name} is gone: {key}"),
            )
        })
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
    let archive_size = archive_size(target, &entry.archive_key, &entry.manifest.name).await?;
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

#[cfg(test)]
mod tests;
