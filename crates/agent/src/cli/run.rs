//! `service-backup CONFIG` and `service-backup run CONFIG`: the daemon until SIGTERM.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::command::{CliResult, Outcome, load_config, runtime};
use crate::daemon;
use crate::queue::Queue;

/// Loads the configuration, makes the runtime and serves until SIGTERM or SIGINT.
pub fn run(path: &Path) -> CliResult {
    let config = load_config(path)?;
    let rt = runtime()?;
    // Only the signals stop the daemon of the command line: nothing cancels this token.
    let result = rt.block_on(daemon::serve(
        path.to_path_buf(),
        config,
        Arc::new(Queue::default()),
        CancellationToken::new(),
    ));
    // Aborts of uploads in flight are awaited inside `serve`; this only bounds stragglers.
    rt.shutdown_timeout(Duration::from_secs(1));
    result?;
    Ok(Outcome::Success)
}
