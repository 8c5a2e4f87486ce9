//! What a test needs to run a backup through the pipeline itself: a plan, one destination
//! to run it into, a progress that stops a server once the archive passed a given size,
//! and the check that a failed backup left nothing visible.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{Local, Utc};
use service_backup_core::ErrorKind;
use service_backup_core::catalog::list_backups;
use service_backup_core::compression::Algorithm;
use service_backup_core::destination::Destination;
use service_backup_core::layout::{Layout, backup_name};
use service_backup_core::ops::backup::{BackupPlan, DestinationOutcome, Target, run_backup};
use service_backup_core::pipeline::archive::ArchiveSpec;
use service_backup_core::progress::Progress;
use tokio_util::sync::CancellationToken;

use crate::server::ServerProcess;

/// A plan to back up `source` now as instance `instance`: gzip at level 1 (fast), no key,
/// no deployment name. Its fields are public for a test to change.
pub fn backup_plan(source: &Path, instance: &str) -> BackupPlan {
    let started = Utc::now();
    BackupPlan {
        name: backup_name(started, instance).unwrap(),
        started_at: started,
        date: started.with_timezone(&Local).date_naive(),
        instance_id: instance.into(),
        deployment: None,
        archive: ArchiveSpec {
            source: source.to_path_buf(),
            compression: Algorithm::Gzip,
            compression_level: 1,
            key: None,
            recipients: Vec::new(),
            passphrase: None,
        },
    }
}

/// Runs `plan` into `destination` alone (named `name`, under `layout`), reporting to
/// `progress`; returns its outcome.
pub async fn backup_into(
    plan: BackupPlan,
    name: &str,
    destination: Arc<dyn Destination>,
    layout: &Layout,
    progress: Arc<dyn Progress>,
) -> DestinationOutcome {
    let target = Target {
        name: name.into(),
        destination,
        layout: layout.clone(),
    };
    let mut outcomes = run_backup(plan, vec![target], progress, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1, "one destination, one outcome");
    outcomes.remove(0)
}

/// Asserts that a failed backup left nothing that a list or a get shows: no object under
/// `prefix`, no archive at `archive_key`, no backup under `layout`.
pub async fn assert_nothing_left(
    destination: &dyn Destination,
    prefix: &str,
    layout: &Layout,
    archive_key: &str,
) {
    let listed = destination.list(prefix).await.unwrap();
    assert!(listed.is_empty(), "left behind: {listed:?}");
    assert_eq!(
        destination.get(archive_key).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(list_backups(destination, layout).await.unwrap().is_empty());
}

/// A progress that stops a server (SIGTERM) once the archive passed `at` bytes.
pub struct StopAt {
    at: u64,
    done: AtomicU64,
    stopped: AtomicBool,
    server: Mutex<ServerProcess>,
}

impl StopAt {
    /// Stops `server` once the archive passed `at` bytes.
    pub fn new(at: u64, server: ServerProcess) -> Self {
        Self {
            at,
            done: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            server: Mutex::new(server),
        }
    }

    /// Whether it stopped the server.
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The server, to start it again.
    pub fn server(&self) -> MutexGuard<'_, ServerProcess> {
        self.server.lock().unwrap()
    }
}

impl Progress for StopAt {
    fn advance(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::SeqCst) + bytes;
        if done >= self.at && !self.stopped.swap(true, Ordering::SeqCst) {
            self.server().stop();
        }
    }
}
