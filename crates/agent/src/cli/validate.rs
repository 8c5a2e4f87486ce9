//! `service-backup validate CONFIG`.

use std::path::Path;

use crate::command::{CliResult, Outcome, load_config};
use crate::config::ApiConfig;

/// Checks the configuration; every problem is printed by the caller (exit 2).
pub fn run(path: &Path) -> CliResult {
    let config = load_config(path)?;
    let destinations = config.destinations.len();
    if destinations == 0 {
        println!(
            "{}: valid; no destinations, so backups are disabled",
            path.display()
        );
    } else {
        println!("{}: valid; {destinations} destination(s)", path.display());
    }
    if let Some(warning) = config.api.as_ref().and_then(ApiConfig::plaintext_warning) {
        println!("warning: {warning}");
    }
    if config.keyring.is_none() && destinations > 0 {
        println!("warning: no encryption key is configured: backups will be stored unencrypted");
    }
    Ok(Outcome::Success)
}
