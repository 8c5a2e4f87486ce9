//! The backup lock in `state_dir`: one backup at a time across processes, so a manual
//! `service-backup backup` obeys `exit_if_in_progress` while the daemon uploads. Restores
//! take it too: a backup never reads a target being restored, nor a restore's staging
//! folder. So do restore drills: a drill never runs beside a backup.

use std::fs::{File, TryLockError};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::Duration;

use service_backup_core::{Error, ErrorKind, Result};
use tokio_util::sync::CancellationToken;

/// The lock file's name in `state_dir`.
pub const LOCK_FILE: &str = "backup.lock";

/// The original's message when a backup is refused because one runs.
pub const IN_PROGRESS: &str = "Backup currently in progress, exiting. Another backup will not be able to start until this is completed.";

/// Holds the backup lock until dropped.
#[derive(Debug)]
pub struct BackupLock {
    _file: File,
}

/// Takes the lock for a backup: at once or refused when `reject_if_held`, else waiting
/// (until `cancel`).
pub async fn acquire(
    state_dir: &Path,
    reject_if_held: bool,
    cancel: &CancellationToken,
) -> Result<BackupLock> {
    take(state_dir, reject_if_held, cancel, || {
        tracing::info!(
            "Another backup or a restore is in progress; this backup waits for it to finish"
        );
    })
    .await
}

/// Takes the lock for a restore, waiting for a backup or restore in progress (until
/// `cancel`).
pub async fn acquire_for_restore(
    state_dir: &Path,
    cancel: &CancellationToken,
) -> Result<BackupLock> {
    // A warning, so that `service-backup restore` (which shows warnings and errors) says
    // why it does not go on.
    take(state_dir, false, cancel, || {
        tracing::warn!("A backup or restore is in progress; this restore waits for it to finish");
    })
    .await
}

/// Takes the lock for a restore drill, waiting for a backup or restore in progress (until
/// `cancel`): a backup that comes due during a drill waits for it in turn.
pub async fn acquire_for_drill(state_dir: &Path, cancel: &CancellationToken) -> Result<BackupLock> {
    take(state_dir, false, cancel, || {
        tracing::info!(
            "A backup or restore is in progress; this restore drill waits for it to finish"
        );
    })
    .await
}

async fn take(
    state_dir: &Path,
    reject_if_held: bool,
    cancel: &CancellationToken,
    log_wait: fn(),
) -> Result<BackupLock> {
    crate::tasks::store::create_state_dir(state_dir)?;
    let path = state_dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        // Never through a link planted under its name.
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&path)
        .map_err(|e| Error::io("open the backup lock", &path, e))?;
    let mut waited = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(BackupLock { _file: file }),
            Err(TryLockError::WouldBlock) if reject_if_held => {
                return Err(Error::new(ErrorKind::Usage, IN_PROGRESS));
            }
            Err(TryLockError::WouldBlock) => {
                if !waited {
                    log_wait();
                    waited = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                    () = cancel.cancelled() => {
                        return Err(Error::new(ErrorKind::Cancelled, "stopped while waiting for another backup or restore to finish"));
                    }
                }
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
    }
}
