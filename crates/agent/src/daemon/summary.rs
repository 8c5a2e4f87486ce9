//! What the daemon says it will do: one line at start-up after the original's
//! `Service-backup Started` (version, configuration, schedule and next runs, destinations,
//! encryption, compression, retention, API, health sinks), and the next run after each
//! backup. Key ids and recipient ids only: never a key, a token or a password.

use std::path::Path;

use chrono::{DateTime, Local, Utc};

use crate::cli::check::{local_zone, next_runs};
use crate::config::Config;
use crate::schedule::Plan;

/// How many run times the start-up line names.
const NEXT_RUNS: usize = 3;

/// A time in the VM's zone, as `check` prints it.
fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// Logs the start-up summary of `config`, loaded from `path`, scheduled by `plan`.
pub fn log_start(path: &Path, config: &Config, plan: Option<&Plan>) {
    let now = Utc::now();
    let runs = plan.map_or_else(Vec::new, |p| next_runs(p, now, NEXT_RUNS));
    let join = |times: Vec<String>| {
        if times.is_empty() {
            "none".to_string()
        } else {
            times.join(", ")
        }
    };
    let next_runs = join(runs.iter().map(|t| local(*t)).collect());
    let next_runs_utc = join(runs.iter().map(|t| crate::cli::output::utc(*t)).collect());
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %path.display(),
        schedule = config.cron_schedule.as_deref().unwrap_or("none"),
        time_zone = %local_zone(),
        next_runs = %next_runs,
        next_runs_utc = %next_runs_utc,
        destinations = %destinations(config),
        encryption = %encryption(config),
        compression = %format!("{} level {}", config.compression.name(), config.compression_level),
        retention = %config.retention.map_or_else(|| "none".to_string(), |p| p.to_string()),
        api = api(config),
        health_sinks = %health_sinks(config),
        "Service-backup configuration"
    );
}

/// Logs when the next backup runs, after a run.
pub fn log_next(plan: Option<&Plan>) {
    let Some(next) = plan.and_then(|p| p.next_after(Utc::now())) else {
        return;
    };
    tracing::info!(
        next = %crate::cli::output::utc(next),
        next_local = %local(next),
        "Next backup scheduled"
    );
}

/// The API's listen address, or `none`.
fn api(config: &Config) -> &str {
    config.api.as_ref().map_or("none", |a| a.listen.as_str())
}

/// `NAME (TYPE), …`.
fn destinations(config: &Config) -> String {
    if config.destinations.is_empty() {
        return "none".to_string();
    }
    config
        .destinations
        .iter()
        .map(|d| format!("{} ({})", d.display_name(), d.kind.type_word()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `key ID (previous ID, …)`, `recipients ID, …`, or `none`: ids, never keys.
fn encryption(config: &Config) -> String {
    let Some(ring) = &config.keyring else {
        return "none (backups are stored unencrypted)".to_string();
    };
    let mut parts = Vec::new();
    let ids: Vec<String> = ring.ids().iter().map(ToString::to_string).collect();
    if let Some((first, rest)) = ids.split_first() {
        let role = if ring.current().is_some() {
            "key"
        } else {
            "previous key"
        };
        if rest.is_empty() {
            parts.push(format!("{role} {first}"));
        } else {
            parts.push(format!("{role} {first} (previous {})", rest.join(", ")));
        }
    }
    if !ring.recipients().is_empty() {
        let ids: Vec<String> = ring
            .recipients()
            .iter()
            .map(|r| r.id().to_string())
            .collect();
        parts.push(format!("recipients {}", ids.join(", ")));
    }
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join("; ")
    }
}

/// The configured health sinks in words.
fn health_sinks(config: &Config) -> String {
    let Some(health) = &config.health else {
        return "none".to_string();
    };
    let mut out = Vec::new();
    if let Some(kafka) = &health.kafka {
        out.push(format!("kafka ({})", kafka.brokers.join(", ")));
    }
    if let Some(file) = &health.file {
        out.push(format!("file {}", file.display()));
    }
    if health.stdout {
        out.push("stdout".to_string());
    }
    if out.is_empty() {
        "none".to_string()
    } else {
        out.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use service_backup_core::format::Identity;

    use super::*;

    /// A write-only agent's summary names its recipients by id, and an API by its address
    /// (the daemon's test covers keys, `none` and the other fields).
    #[test]
    fn recipients_by_id_and_the_api_by_its_address() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, "tok-Secret-3f9a1c7e5b\n").unwrap();
        let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        std::fs::set_permissions(&tokens, private).unwrap();
        let recipient = Identity::generate().unwrap().recipient();
        let config = crate::config::parse(&format!(
            "cron_schedule: \"0 3 * * *\"\nsource_folder: {d}/source\nstate_dir: {d}/state\n\
             destinations:\n- type: local\n  name: disk\n  config:\n    path: {d}/backups\n\
             encryption:\n  recipients: [{recipient}]\n\
             api:\n  listen: 127.0.0.1:8443\n  bearer_tokens_file: {tokens}\n",
            tokens = tokens.display()
        ))
        .unwrap_or_else(|e| panic!("{:?}", e.problems()));
        assert_eq!(
            encryption(&config),
            format!("recipients {}", recipient.id())
        );
        assert_eq!(api(&config), "127.0.0.1:8443");
        assert_eq!(destinations(&config), "disk (local)");
        assert_eq!(health_sinks(&config), "none");
    }
}
