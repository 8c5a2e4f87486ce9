//! The backup lock in `state_dir`: one backup at a time across processes, so a manual
//! `service-backup backup` obeys `exit_if_in_progress` while the daemon uploads.

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

/// Takes the lock: at once or refused when `reject_if_held`, else waiting (until `cancel`).
pub async fn acquire(
    state_dir: &Path,
    reject_if_held: bool,
    cancel: &CancellationToken,
) -> Result<BackupLock> {
    crate::store::create_state_dir(state_dir)?;
    let path = state_dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
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
                    tracing::info!(
                        "Another backup is in progress; this one waits for it to finish"
                    );
                    waited = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                    () = cancel.cancelled() => {
                        return Err(Error::new(ErrorKind::Cancelled, "stopped while waiting for another backup to finish"));
                    }
                }
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
    }
}
