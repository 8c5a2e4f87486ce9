//! Tasks in SQLite: every backup, restore and restore drill, with the states of the core
//! state machine.
//!
//! The database lives in `state_dir` (WAL mode, schema versioned by a migration table),
//! readable by the agent alone: the folder is created 0700, the database files 0600. A
//! task found `running` when the store opens belonged to a process that died: it becomes
//! `failed` with reason "interrupted". A database that cannot be read is an error, never
//! silently replaced.

use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension as _, params};
use service_backup_core::task::TaskState;
use service_backup_core::{Error, ErrorKind, Result};

/// The file name of the database in `state_dir`.
pub const DB_FILE: &str = "service-backup.sqlite3";

/// The schema, one migration per version; never edit one that shipped, add the next.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE tasks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL CHECK (kind IN ('backup', 'restore')),
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'deleted')),
        trigger TEXT NOT NULL,
        backup_guid TEXT,
        backup_name TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        size_in_bytes INTEGER,
        stored_bytes INTEGER,
        duration_in_seconds REAL,
        reason TEXT
    );
    CREATE INDEX tasks_by_kind ON tasks (kind, id);",
    // 2: when a backup was deleted by a prune (the rule goes in `reason`).
    "ALTER TABLE tasks ADD COLUMN deleted_at TEXT;
    CREATE INDEX tasks_by_backup_name ON tasks (backup_name);",
    // 3: restores as tasks: which backup task a restore restores, and where to.
    "ALTER TABLE tasks ADD COLUMN backup_task_id INTEGER;
    ALTER TABLE tasks ADD COLUMN target TEXT;",
    // 4: the process that queued or runs a task (`crate::owner`), so that only the tasks
    // of processes that died are marked interrupted.
    "ALTER TABLE tasks ADD COLUMN owner TEXT;",
    // 5: restore drills as tasks. SQLite cannot change a CHECK constraint, so the table is
    // rebuilt with the same columns, ids and rows, and its indexes made again.
    "CREATE TABLE tasks_v5 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL CHECK (kind IN ('backup', 'restore', 'drill')),
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'deleted')),
        trigger TEXT NOT NULL,
        backup_guid TEXT,
        backup_name TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        size_in_bytes INTEGER,
        stored_bytes INTEGER,
        duration_in_seconds REAL,
        reason TEXT,
        deleted_at TEXT,
        backup_task_id INTEGER,
        target TEXT,
        owner TEXT
    );
    INSERT INTO tasks_v5 (id, kind, state, trigger, backup_guid, backup_name, created_at,
        updated_at, started_at, finished_at, size_in_bytes, stored_bytes, duration_in_seconds,
        reason, deleted_at, backup_task_id, target, owner)
    SELECT id, kind, state, trigger, backup_guid, backup_name, created_at, updated_at,
        started_at, finished_at, size_in_bytes, stored_bytes, duration_in_seconds, reason,
        deleted_at, backup_task_id, target, owner FROM tasks;
    DROP TABLE tasks;
    ALTER TABLE tasks_v5 RENAME TO tasks;
    CREATE INDEX tasks_by_kind ON tasks (kind, id);
    CREATE INDEX tasks_by_backup_name ON tasks (backup_name);",
    // 6: which destinations got a backup and which failed (JSON lists of names), for the
    // health status: failed on every destination or only on some.
    "ALTER TABLE tasks ADD COLUMN stored_destinations TEXT;
    ALTER TABLE tasks ADD COLUMN failed_destinations TEXT;",
    // 7: the catalog of what this agent has seen in its destinations (`catalog`): one row
    // per manifest key, and per destination when it was last refreshed.
    "CREATE TABLE catalog (
        destination TEXT NOT NULL,
        manifest_key TEXT NOT NULL,
        name TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('sound', 'damaged', 'unread')),
        instance_id TEXT,
        started_at TEXT,
        archive_key TEXT,
        archive_size INTEGER,
        manifest TEXT,
        problem TEXT,
        last_seen TEXT NOT NULL,
        PRIMARY KEY (destination, manifest_key)
    );
    CREATE INDEX catalog_by_instance ON catalog (destination, instance_id, started_at);
    CREATE TABLE catalog_refreshes (
        destination TEXT PRIMARY KEY,
        refreshed_at TEXT NOT NULL,
        full_at TEXT
    );",
    // 8: when a prune last looked at a destination's leftovers (archives without a manifest,
    // incomplete uploads) and left none it could remove; and which refresh last saw each
    // row, so that a refresh records what it lists as it goes and drops the rest at its end.
    "ALTER TABLE catalog_refreshes ADD COLUMN leftovers_at TEXT;
    ALTER TABLE catalog ADD COLUMN seen_in INTEGER;",
];

/// What a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// A backup run.
    Backup,
    /// A restore run.
    Restore,
    /// A restore drill: the newest backup downloaded and verified on a schedule.
    Drill,
}

impl TaskKind {
    /// Its name, as stored and as `tasks` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backup => "backup",
            Self::Restore => "restore",
            Self::Drill => "drill",
        }
    }
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Its id, counting from 1.
    pub id: i64,
    /// Backup, restore or drill.
    pub kind: TaskKind,
    /// Its state.
    pub state: TaskState,
    /// What started it: `schedule`, `manual`, `api`.
    pub trigger: String,
    /// The run's guid, as in the logs.
    pub backup_guid: Option<String>,
    /// The backup made or restored.
    pub backup_name: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Bytes of file content.
    pub size_in_bytes: Option<u64>,
    /// Bytes stored.
    pub stored_bytes: Option<u64>,
    /// How long it ran.
    pub duration_in_seconds: Option<f64>,
    /// Why it failed or was deleted.
    pub reason: Option<String>,
    /// When its backup was deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// For a restore: the backup task it restores.
    pub backup_task_id: Option<i64>,
    /// For a restore: the folder it restores into.
    pub target: Option<String>,
    /// When it started running.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished, done or failed.
    pub finished_at: Option<DateTime<Utc>>,
    /// For a backup: the destinations that got it, when recorded.
    pub stored_destinations: Option<Vec<String>>,
    /// For a backup: the destinations that failed, when recorded.
    pub failed_destinations: Option<Vec<String>>,
}

/// The task database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// This process, as recorded in the tasks it queues or runs.
    owner: String,
}

fn db_error(path: &Path, e: &rusqlite::Error) -> Error {
    if is_full(path, e) {
        let dir = path.parent().unwrap_or(path);
        return Error::new(
            ErrorKind::Io,
            format!(
                "the task database {} cannot be written: database or disk is full (no space left in {})",
                path.display(),
                dir.display()
            ),
        )
        .with_hint("free space in state_dir and run again; the tasks recorded so far are kept");
    }
    Error::new(
        ErrorKind::Io,
        format!("the task database {} cannot be used: {e}", path.display()),
    )
    .with_hint("check state_dir's permissions and free space; if the file is damaged, move it aside (the backups themselves are not affected)")
}

/// Whether `e` comes from a full disk: SQLite says so, or (when it fails to grow its
/// shared-memory file, which it reports as a disk I/O error) the disk has no room left.
fn is_full(path: &Path, e: &rusqlite::Error) -> bool {
    let rusqlite::Error::SqliteFailure(failure, _) = e else {
        return false;
    };
    match failure.code {
        rusqlite::ErrorCode::DiskFull => true,
        rusqlite::ErrorCode::SystemIoFailure => {
            let dir = path.parent().unwrap_or(path);
            nix::sys::statvfs::statvfs(dir)
                .is_ok_and(|s| s.blocks_available().saturating_mul(s.fragment_size()) < 1024 * 1024)
        }
        _ => false,
    }
}

/// Creates `state_dir` if it is missing, readable by the agent alone (mode 0700; its
/// parents as the umask makes them). An existing one is left as it is, but refused when
/// another user owns it or others may write to it.
pub fn create_state_dir(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("create state_dir", dir, e))?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Err(e) if !(e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir()) => {
                return Err(Error::io("create state_dir", dir, e));
            }
            _ => {}
        }
    }
    check_state_dir(dir)
}

/// Refuses a `state_dir` that another user owns or that group or others may write: they
/// could plant a `known_hosts` pinning their own server's key, or links under the names of
/// the agent's files.
fn check_state_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::io("read state_dir", dir, e))?;
    let (uid, mode) = (meta.uid(), meta.mode() & 0o7777);
    let euid = nix::unistd::geteuid().as_raw();
    if uid == euid && mode & 0o022 == 0 {
        return Ok(());
    }
    let why = if uid == euid {
        format!("others may write to it (mode {mode:04o})")
    } else {
        format!("it belongs to another user (uid {uid}, the agent runs as {euid})")
    };
    Err(Error::new(
        ErrorKind::Config,
        format!("state_dir {} is not the agent's alone: {why}", dir.display()),
    )
    .with_hint(format!(
        "make it the agent's (chown it to the agent's user, chmod 700 {}), or set state_dir to a folder of its own",
        dir.display()
    )))
}

/// The `state_dir`s already warned about: a command that opens its task database twice (a
/// restore reads the catalog, then records its task) says it once.
static WARNED: std::sync::Mutex<std::collections::BTreeSet<PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Warns (once per process and folder) when other users may list `state_dir`: the default
/// one is the configuration's folder, which is not the agent's to change.
fn warn_if_readable(dir: &Path) {
    if let Ok(meta) = std::fs::metadata(dir)
        && meta.mode() & 0o077 != 0
        && WARNED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(dir.to_path_buf())
    {
        tracing::warn!(
            state_dir = %dir.display(),
            mode = %format!("{:04o}", meta.mode() & 0o7777),
            "state_dir may be read by other users; make it the agent's alone (chmod 700), or set state_dir to a folder of its own"
        );
    }
}

/// Creates the database file with mode 0600 if it is missing, and takes group and other
/// permissions away from it and its journals if they have some (a warning where it
/// cannot). SQLite gives the `-wal`,
/// `-shm` and `-journal` files it creates the database file's mode.
fn make_private(path: &Path) -> Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("create the task database", path, e)),
    }
    // SQLite would follow a link planted under the database's name.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(|e| Error::io("open the task database", path, e))?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_os_string();
        name.push(suffix);
        let file = PathBuf::from(name);
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        if meta.mode() & 0o077 != 0
            && let Err(e) = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
        {
            tracing::warn!(file = %file.display(), error = %e, "the task database may be read by other users and its mode cannot be changed; make it the agent's alone (chmod 600)");
        }
    }
    Ok(())
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Store {
    /// Opens (creating if needed) the database in `state_dir`, migrates it, and fails every
    /// task left `queued` or `running` by a process that died (not those of a live daemon).
    pub fn open(state_dir: &Path) -> Result<Self> {
        create_state_dir(state_dir)?;
        warn_if_readable(state_dir);
        let path = state_dir.join(DB_FILE);
        make_private(&path)?;
        let conn = Connection::open(&path).map_err(|e| db_error(&path, &e))?;
        let mut store = Self {
            conn,
            path,
            owner: crate::owner::this_process(),
        };
        // Openers of a new database at once can deadlock between the switch to WAL and
        // another's first write; SQLite then answers "busy" at once, without waiting. Each
        // step is safe to repeat, so a busy answer is tried again for a while.
        let mut tries = 0;
        loop {
            match store.prepare() {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if matches!(
                        f.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) && tries < 100 =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(db_error(&store.path, &e)),
            }
        }
        let interrupted = store
            .fail_orphans()
            .map_err(|e| db_error(&store.path, &e))?;
        if interrupted > 0 {
            tracing::info!(
                tasks = interrupted,
                "Tasks of a previous run were interrupted and are marked failed"
            );
        }
        Ok(store)
    }

    /// Marks `failed` / "interrupted" the queued and running tasks whose process is gone;
    /// returns how many.
    fn fail_orphans(&self) -> rusqlite::Result<usize> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, owner FROM tasks WHERE state IN ('running', 'queued')")?;
        let open = stmt
            .query_map([], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut failed = 0;
        for (id, owner) in open {
            if crate::owner::is_alive(owner.as_deref()) {
                continue;
            }
            failed += self.conn.execute(
                "UPDATE tasks SET state = 'failed', reason = 'interrupted', updated_at = ?2
                 WHERE id = ?1 AND state IN ('running', 'queued')",
                params![id, now()],
            )?;
        }
        Ok(failed)
    }

    fn prepare(&mut self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(Duration::from_secs(10))?;
        // Checks the file is a database before anything else touches it.
        self.conn
            .query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0))?;
        self.conn.pragma_update(None, "journal_mode", "WAL")?;
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        // One write transaction from reading the version to the last migration: two
        // processes opening a new database at once (the daemon and a command) would
        // otherwise both read version 0 and both migrate, and one would fail.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);",
        )?;
        let current: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?;
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if current > known {
            return Err(rusqlite::Error::InvalidQuery).inspect_err(|_| {
                tracing::error!(
                    version = current,
                    "the task database was written by a newer service-backup"
                );
            });
        }
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(current).unwrap_or(0))
        {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![i64::try_from(i + 1).unwrap_or(i64::MAX), now()],
            )?;
        }
        tx.commit()
    }

    /// Records a new task in state `queued`; returns its id.
    pub fn create(&self, kind: TaskKind, trigger: &str) -> Result<i64> {
        let at = now();
        self.conn
            .execute(
                "INSERT INTO tasks (kind, state, trigger, created_at, updated_at, owner) VALUES (?1, 'queued', ?2, ?3, ?3, ?4)",
                params![kind.as_str(), trigger, at, self.owner],
            )
            .map_err(|e| db_error(&self.path, &e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records a new restore of the backup task `backup_task_id` (named `backup_name`) into
    /// `target`, in state `queued`; returns its id.
    pub fn create_restore(
        &self,
        trigger: &str,
        backup_task_id: Option<i64>,
        backup_name: &str,
        target: &str,
    ) -> Result<i64> {
        let at = now();
        self.conn
            .execute(
                "INSERT INTO tasks (kind, state, trigger, backup_name, backup_task_id, target, created_at, updated_at, owner)
                 VALUES ('restore', 'queued', ?1, ?2, ?3, ?4, ?5, ?5, ?6)",
                params![trigger, backup_name, backup_task_id, target, at, self.owner],
            )
            .map_err(|e| db_error(&self.path, &e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The id of the backup task that made `backup_name`, recording the backup as a `done`
    /// task with trigger `discovered` if no task made it (a backup found in a destination,
    /// made before this database existed): its id stays the same from then on.
    pub fn backup_id_for(&self, found: &Discovered) -> Result<i64> {
        let existing: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM tasks WHERE kind = 'backup' AND backup_name = ?1 ORDER BY id LIMIT 1",
                params![found.name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_error(&self.path, &e))?;
        if let Some(id) = existing {
            return Ok(id);
        }
        let started = found
            .started_at
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        let finished = found
            .finished_at
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        self.conn
            .execute(
                "INSERT INTO tasks (kind, state, trigger, backup_name, created_at, updated_at,
                 started_at, finished_at, size_in_bytes, stored_bytes)
                 VALUES ('backup', 'done', 'discovered', ?1, ?2, ?3, ?2, ?3, ?4, ?5)",
                params![
                    found.name,
                    started,
                    finished,
                    i64::try_from(found.size_in_bytes).unwrap_or(i64::MAX),
                    i64::try_from(found.stored_bytes).unwrap_or(i64::MAX)
                ],
            )
            .map_err(|e| db_error(&self.path, &e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Moves a task to `running`, with its guid.
    pub fn start(&self, id: i64, backup_guid: &str) -> Result<()> {
        self.transition(id, TaskState::Running, |c, at| {
            c.execute(
                "UPDATE tasks SET backup_guid = ?2, started_at = ?3, owner = ?4 WHERE id = ?1",
                params![id, backup_guid, at, self.owner],
            )
        })
    }

    /// Records the name of the backup a running task makes, as soon as it is chosen: a
    /// listing that finds its manifest before the task is done then finds the task too,
    /// instead of recording the backup a second time as `discovered`.
    pub fn name_backup(&self, id: i64, backup_name: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE tasks SET backup_name = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, backup_name, now()],
            )
            .map_err(|e| db_error(&self.path, &e))?;
        Ok(())
    }

    /// Moves a task to `done` with what it made.
    pub fn finish(
        &self,
        id: i64,
        backup_name: Option<&str>,
        size: u64,
        stored: u64,
        seconds: f64,
    ) -> Result<()> {
        self.transition(id, TaskState::Done, |c, at| {
            c.execute(
                "UPDATE tasks SET backup_name = ?2, size_in_bytes = ?3, stored_bytes = ?4,
                 duration_in_seconds = ?5, finished_at = ?6 WHERE id = ?1",
                params![
                    id,
                    backup_name,
                    size.cast_signed(),
                    stored.cast_signed(),
                    seconds,
                    at
                ],
            )
        })
    }

    /// Moves a task to `failed` with the reason.
    pub fn fail(
        &self,
        id: i64,
        backup_name: Option<&str>,
        reason: &str,
        seconds: f64,
    ) -> Result<()> {
        self.transition(id, TaskState::Failed, |c, at| {
            c.execute(
                "UPDATE tasks SET backup_name = COALESCE(?2, backup_name), reason = ?3,
                 duration_in_seconds = ?4, finished_at = ?5 WHERE id = ?1",
                params![id, backup_name, reason, seconds, at],
            )
        })
    }

    /// Marks the done backup task that made `backup_name` as `deleted`, with why; returns
    /// whether this agent had such a task (another instance's backup has none here).
    pub fn mark_deleted(&self, backup_name: &str, reason: &str) -> Result<bool> {
        let at = now();
        let changed = self
            .conn
            .execute(
                "UPDATE tasks SET state = 'deleted', reason = ?2, deleted_at = ?3, updated_at = ?3
                 WHERE kind = 'backup' AND state = 'done' AND backup_name = ?1",
                params![backup_name, reason, at],
            )
            .map_err(|e| db_error(&self.path, &e))?;
        Ok(changed > 0)
    }

    /// Records which destinations got the backup of task `id` and which failed.
    pub fn record_destinations(&self, id: i64, stored: &[String], failed: &[String]) -> Result<()> {
        let list = |names: &[String]| serde_json::to_string(names).unwrap_or_default();
        self.conn
            .execute(
                "UPDATE tasks SET stored_destinations = ?2, failed_destinations = ?3 WHERE id = ?1",
                params![id, list(stored), list(failed)],
            )
            .map_err(|e| db_error(&self.path, &e))?;
        Ok(())
    }

    fn transition(
        &self,
        id: i64,
        next: TaskState,
        details: impl FnOnce(&Connection, &str) -> rusqlite::Result<usize>,
    ) -> Result<()> {
        let task = self
            .get(id)?
            .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("there is no task {id}")))?;
        if !task.state.can_become(next) {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("task {id} cannot go from {} to {next}", task.state),
            ));
        }
        let at = now();
        self.conn
            .execute(
                "UPDATE tasks SET state = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, next.as_str(), at],
            )
            .and_then(|_| details(&self.conn, &at))
            .map_err(|e| db_error(&self.path, &e))?;
        Ok(())
    }

    /// The task `id`, if it exists.
    pub fn get(&self, id: i64) -> Result<Option<Task>> {
        self.conn
            .query_row(&format!("{SELECT} WHERE id = ?1"), params![id], row_to_task)
            .optional()
            .map_err(|e| db_error(&self.path, &e))
    }

    /// Every task of `kind`, oldest first.
    pub fn list(&self, kind: TaskKind) -> Result<Vec<Task>> {
        let mut stmt = self
            .conn
            .prepare(&format!("{SELECT} WHERE kind = ?1 ORDER BY id"))
            .map_err(|e| db_error(&self.path, &e))?;
        let rows = stmt
            .query_map(params![kind.as_str()], row_to_task)
            .map_err(|e| db_error(&self.path, &e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| db_error(&self.path, &e))
    }
}

const SELECT: &str =
    "SELECT id, kind, state, trigger, backup_guid, backup_name, created_at, updated_at,
    size_in_bytes, stored_bytes, duration_in_seconds, reason, deleted_at, backup_task_id, target,
    started_at, finished_at, stored_destinations, failed_destinations
    FROM tasks";

/// A complete backup found in a destination, as [`Store::backup_id_for`] records it.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The backup's name.
    pub name: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Bytes of file content.
    pub size_in_bytes: u64,
    /// Bytes stored.
    pub stored_bytes: u64,
}

fn row_to_task(row: &rusqlite::Row<'_>) -> rusqlite::Result<Task> {
    let text = |i: usize| row.get::<_, String>(i);
    let time = |i: usize| -> rusqlite::Result<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&text(i)?)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    i,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })
    };
    // A list that does not parse reads as not recorded: it only feeds the health status.
    let names = |i: usize| -> rusqlite::Result<Option<Vec<String>>> {
        Ok(row
            .get::<_, Option<String>>(i)?
            .and_then(|t| serde_json::from_str(&t).ok()))
    };
    let kind = match text(1)?.as_str() {
        "restore" => TaskKind::Restore,
        "drill" => TaskKind::Drill,
        _ => TaskKind::Backup,
    };
    let state = text(2)?.parse::<TaskState>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Task {
        id: row.get(0)?,
        kind,
        state,
        trigger: text(3)?,
        backup_guid: row.get(4)?,
        backup_name: row.get(5)?,
        created_at: time(6)?,
        updated_at: time(7)?,
        size_in_bytes: row
            .get::<_, Option<i64>>(8)?
            .map(|v| u64::try_from(v).unwrap_or(0)),
        stored_bytes: row
            .get::<_, Option<i64>>(9)?
            .map(|v| u64::try_from(v).unwrap_or(0)),
        duration_in_seconds: row.get(10)?,
        reason: row.get(11)?,
        deleted_at: row
            .get::<_, Option<String>>(12)?
            .map(|_| time(12))
            .transpose()?,
        backup_task_id: row.get(13)?,
        target: row.get(14)?,
        started_at: row
            .get::<_, Option<String>>(15)?
            .map(|_| time(15))
            .transpose()?,
        finished_at: row
            .get::<_, Option<String>>(16)?
            .map(|_| time(16))
            .transpose()?,
        stored_destinations: names(17)?,
        failed_destinations: names(18)?,
    })
}

pub mod catalog;
#[cfg(test)]
mod tests;
