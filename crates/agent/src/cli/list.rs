//! `service-backup list CONFIG [--destination NAME] [--json]`.

use std::path::Path;

use serde_json::json;
use service_backup_core::catalog::{BackupEntry, list_backups};

use super::{CliResult, Outcome, load_config, runtime};
use crate::destinations;

/// Lists the complete backups of every (or one) destination, newest first.
pub fn run(path: &Path, only: Option<&str>, as_json: bool) -> CliResult {
    let config = load_config(path)?;
    let chosen = destinations::select(&config, only)?;
    let rt = runtime()?;
    let mut rows: Vec<(String, BackupEntry)> = Vec::new();
    let mut failed = false;
    for dest in chosen {
        let listed = match dest {
            Ok(d) => rt
                .block_on(list_backups(&*d.destination, &d.layout))
                .map(|entries| (d.name.clone(), entries))
                .map_err(|e| e.context(format!("destination {}", d.name))),
            Err(e) => Err(e),
        };
        match listed {
            Ok((name, entries)) => rows.extend(entries.into_iter().map(|e| (name.clone(), e))),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    rows.sort_by(|a, b| {
        (b.1.manifest.started_at, &b.1.manifest.name)
            .cmp(&(a.1.manifest.started_at, &a.1.manifest.name))
    });
    if as_json {
        let items: Vec<_> = rows
            .iter()
            .map(|(dest, e)| {
                let m = &e.manifest;
                json!({
                    "name": m.name,
                    "instance_id": m.instance_id,
                    "deployment": m.deployment,
                    "destination": dest,
                    "started_at": m.started_at.to_rfc3339(),
                    "finished_at": m.finished_at.to_rfc3339(),
                    "size_in_bytes": m.plain_bytes,
                    "stored_bytes": m.stored_bytes,
                    "file_count": m.file_count,
                    "encrypted": m.is_encrypted(),
                    "key_id": m.encryption.as_ref().map(|e| e.key_id.clone()),
                    "sha256": m.sha256,
                    "key": e.archive_key,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&items).expect("JSON values serialize")
        );
    } else if rows.is_empty() {
        // When a destination failed, its error says so: "none found" would mislead.
        if !failed {
            println!("no complete backups found");
        }
    } else {
        println!(
            "{:<48} {:<25} {:>12} {:>12}  DESTINATION",
            "NAME", "STARTED (UTC)", "SIZE", "STORED"
        );
        for (dest, e) in &rows {
            let m = &e.manifest;
            println!(
                "{:<48} {:<25} {:>12} {:>12}  {dest}",
                m.name,
                m.started_at.format("%Y-%m-%d %H:%M:%S"),
                m.plain_bytes,
                m.stored_bytes
            );
        }
    }
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}
