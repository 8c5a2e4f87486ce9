//! What a backup or restore run needs besides the configuration: the task database, the
//! state folder and the cancellation token; and how long a run gets to stop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use service_backup_core::Result;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::tasks::Tasks;

/// How long the daemon waits for a run to stop after SIGTERM before it exits anyway.
pub const STOP_BUDGET: Duration = Duration::from_secs(12);

/// What a run needs besides the configuration.
#[derive(Clone)]
pub struct RunContext {
    /// The task database.
    pub tasks: Tasks,
    /// Where the database and the backup lock live.
    pub state_dir: PathBuf,
    /// Fires on SIGTERM or SIGINT.
    pub cancel: CancellationToken,
    /// When it was opened: the daemon's start, for the health status of a fresh agent.
    pub opened_at: chrono::DateTime<chrono::Utc>,
}

impl RunContext {
    /// Opens the task database of `config`'s `state_dir`, with a fresh cancellation token.
    pub async fn open(config: &Config) -> Result<Self> {
        let state_dir = state_dir(config);
        Ok(Self {
            tasks: Tasks::open(&state_dir).await?,
            state_dir,
            cancel: CancellationToken::new(),
            opened_at: chrono::Utc::now(),
        })
    }
}

/// The folder of the task database and the lock: configured, else beside the config file.
pub fn state_dir(config: &Config) -> PathBuf {
    config.state_dir.clone().unwrap_or_else(|| {
        config
            .source_path
            .as_deref()
            .and_then(Path::parent)
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    })
}
