//! The task store shared by the daemon's parts ([`store`] in SQLite); every call runs on a
//! blocking thread.

pub mod store;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use service_backup_core::{Result, blocking};

use store::{Discovered, Store, Task, TaskKind};

use crate::progress::Counters;

/// How far a running task got: bytes done of the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// Bytes read so far.
    pub bytes: u64,
    /// Bytes to read in all (the stored object's size).
    pub total: u64,
}

impl Done {
    /// The share done, 0 to 100, rounded down (100 only when everything is read).
    pub fn percent(&self) -> u64 {
        if self.total == 0 {
            return 0;
        }
        (u128::from(self.bytes.min(self.total)) * 100 / u128::from(self.total))
            .try_into()
            .unwrap_or(100)
    }
}

/// A handle on the task database, cheap to clone.
#[derive(Clone)]
pub struct Tasks {
    store: Arc<Mutex<Store>>,
    /// The byte counters of the restores running in this process, by task id.
    live: Arc<Mutex<HashMap<i64, Arc<Counters>>>>,
    /// Held while a background refresh of this database's catalog runs: one at a time.
    refreshing: Arc<tokio::sync::Mutex<()>>,
    /// When an API request of this process last read this database's catalog.
    catalog_read: Arc<Mutex<Option<tokio::time::Instant>>>,
}

impl Tasks {
    /// Opens the database in `state_dir`.
    pub async fn open(state_dir: &Path) -> Result<Self> {
        let dir = state_dir.to_path_buf();
        let store = blocking(move || Store::open(&dir)).await?;
        Ok(Self {
            store: Arc::new(Mutex::new(store)),
            live: Arc::default(),
            refreshing: Arc::default(),
            catalog_read: Arc::default(),
        })
    }

    /// The right to refresh this database's catalog in the background, unless a refresh
    /// already runs.
    pub fn try_refresh(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        self.refreshing.clone().try_lock_owned().ok()
    }

    /// Notes that an API request read the catalog now: the daemon keeps it fresh for a
    /// while ([`crate::catalog::IN_USE_FOR`]).
    pub fn note_catalog_read(&self) {
        *self
            .catalog_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tokio::time::Instant::now());
    }

    /// When an API request of this process last read the catalog, if one did.
    pub fn catalog_read_at(&self) -> Option<tokio::time::Instant> {
        *self
            .catalog_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        let store = self.store.clone();
        blocking(move || {
            let guard = store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&guard)
        })
        .await
    }

    /// Follows task `id`'s progress through `counters` until [`Tasks::unwatch`].
    pub fn watch(&self, id: i64, counters: Arc<Counters>) {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, counters);
    }

    /// Stops following task `id`'s progress.
    pub fn unwatch(&self, id: i64) {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// How far task `id` got, while it runs in this process and its total is known.
    pub fn progress(&self, id: i64) -> Option<Done> {
        let counters = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()?;
        let (bytes, total) = counters.snapshot();
        Some(Done {
            bytes,
            total: total?,
        })
    }

    /// A new queued task, created on the calling thread (for callers already on a blocking
    /// thread, such as the queue's).
    pub fn create_now(&self, kind: TaskKind, trigger: &'static str) -> Result<i64> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .create(kind, trigger)
    }

    /// A new queued task.
    pub async fn create(&self, kind: TaskKind, trigger: &'static str) -> Result<i64> {
        self.with(move |s| s.create(kind, trigger)).await
    }

    /// The task is running under `guid`.
    pub async fn start(&self, id: i64, guid: String) -> Result<()> {
        self.with(move |s| s.start(id, &guid)).await
    }

    /// The running task makes the backup `name`.
    pub async fn name_backup(&self, id: i64, name: String) -> Result<()> {
        self.with(move |s| s.name_backup(id, &name)).await
    }

    /// The task is done.
    pub async fn finish(
        &self,
        id: i64,
        name: Option<String>,
        size: u64,
        stored: u64,
        seconds: f64,
    ) -> Result<()> {
        self.with(move |s| s.finish(id, name.as_deref(), size, stored, seconds))
            .await
    }

    /// The task failed.
    pub async fn fail(
        &self,
        id: i64,
        name: Option<String>,
        reason: String,
        seconds: f64,
    ) -> Result<()> {
        self.with(move |s| s.fail(id, name.as_deref(), &reason, seconds))
            .await
    }

    /// Records which destinations got the backup of task `id` and which failed.
    pub async fn record_destinations(
        &self,
        id: i64,
        stored: Vec<String>,
        failed: Vec<String>,
    ) -> Result<()> {
        self.with(move |s| s.record_destinations(id, &stored, &failed))
            .await
    }

    /// The backup task that made `name` is now `deleted`, for `reason`.
    pub async fn mark_deleted(&self, name: String, reason: String) -> Result<bool> {
        self.with(move |s| s.mark_deleted(&name, &reason)).await
    }

    /// A new queued restore of `backup_name` (the backup task `backup_task_id`) into `target`.
    pub async fn create_restore(
        &self,
        trigger: &'static str,
        backup_task_id: Option<i64>,
        backup_name: String,
        target: String,
    ) -> Result<i64> {
        self.with(move |s| s.create_restore(trigger, backup_task_id, &backup_name, &target))
            .await
    }

    /// The ids of the backup tasks of backups found in destinations, recording the ones no
    /// task made.
    pub async fn backup_ids_for(&self, found: Vec<Discovered>) -> Result<Vec<i64>> {
        self.with(move |s| found.iter().map(|f| s.backup_id_for(f)).collect())
            .await
    }

    /// The task `id`, if it exists.
    pub async fn get(&self, id: i64) -> Result<Option<Task>> {
        self.with(move |s| s.get(id)).await
    }

    /// Every task of `kind`, oldest first.
    pub async fn list(&self, kind: TaskKind) -> Result<Vec<Task>> {
        self.with(move |s| s.list(kind)).await
    }

    /// Runs `f` on the store, for the catalog's calls (`store::catalog`).
    pub async fn catalog<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        self.with(f).await
    }
}

#[cfg(test)]
mod tests {
    use super::Done;

    #[test]
    fn the_percentage_rounds_down_and_reaches_100_only_at_the_end() {
        let done = |bytes, total| Done { bytes, total }.percent();
        assert_eq!(done(0, 0), 0);
        assert_eq!(done(1, 3), 33);
        assert_eq!(done(999, 1000), 99);
        assert_eq!(done(1000, 1000), 100);
        assert_eq!(done(2000, 1000), 100);
        assert_eq!(done(u64::MAX - 1, u64::MAX), 99);
    }
}
