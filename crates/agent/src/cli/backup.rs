//! `service-backup backup CONFIG`: one backup now.

use std::path::Path;

use super::{CliResult, Outcome, load_config, runtime};
use crate::progress::Bar;
use crate::runner;

/// Makes one backup; exit 0 only if every destination got it.
pub fn run(path: &Path) -> CliResult {
    let config = load_config(path)?;
    if !config.backups_enabled() {
        tracing::info!("Backups Disabled");
        return Ok(Outcome::Success);
    }
    let report = runtime()?.block_on(runner::backup(&config, Bar::new("backup")))?;
    if report.succeeded() {
        if let Some(name) = &report.name {
            eprintln!(
                "backup {name} stored in {} destination(s)",
                config.destinations.len()
            );
        }
        Ok(Outcome::Success)
    } else {
        for p in &report.problems {
            eprintln!("error: {p}");
        }
        Ok(Outcome::Failed)
    }
}
