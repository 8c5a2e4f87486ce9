//! `service-backup validate CONFIG [--json]`.

use std::path::Path;

use super::output::{self, ValidateResult};
use crate::command::{CliResult, Outcome, load_config};
use crate::config::{ApiConfig, Config};

/// Checks the configuration; every problem is printed by the caller (exit 2).
pub fn run(path: &Path) -> CliResult {
    let config = load_config(path)?;
    let destinations = config.destinations.len();
    let warnings = warnings(&config);
    if output::json() {
        output::print_json(&ValidateResult {
            ok: true,
            config: path.display().to_string(),
            destinations,
            backups_enabled: config.backups_enabled(),
            warnings,
        });
        return Ok(Outcome::Success);
    }
    if destinations == 0 {
        println!(
            "{}: valid; no destinations, so backups are disabled",
            path.display()
        );
    } else {
        println!("{}: valid; {destinations} destination(s)", path.display());
    }
    for warning in warnings {
        println!("warning: {warning}");
    }
    Ok(Outcome::Success)
}

/// What is allowed but risky in `config`, one sentence each.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(warning) = config.api.as_ref().and_then(ApiConfig::plaintext_warning) {
        out.push(warning);
    }
    if config.keyring.is_none() && config.backups_enabled() {
        out.push("no encryption key is configured: backups will be stored unencrypted".to_string());
    }
    out
}
