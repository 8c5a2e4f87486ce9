//! `service-backup list CONFIG [--destination NAME] [--json] [--all] [--all-instances]`.

use std::path::Path;

use futures::StreamExt as _;
use serde_json::json;
use service_backup_core::catalog::BackupEntry;

use crate::catalog;
use crate::command::{CliResult, Outcome, load_config, runtime};
use crate::context;
use crate::destinations;
use crate::escape::escape_controls;
use crate::identity;
use crate::progress::{self, units};
use crate::tasks::Tasks;
use crate::tasks::store::{Task, TaskKind};

/// What to show.
#[derive(Debug, Clone, Copy)]
pub struct Show {
    /// A JSON array instead of a table.
    pub json: bool,
    /// Also the backups this agent deleted, from its task records.
    pub deleted: bool,
    /// Every instance's backups, not only this agent's.
    pub all_instances: bool,
    /// How much of the destinations to list to refresh the catalog first.
    pub refresh: catalog::Mode,
}

/// Lists the complete backups of every (or one) destination, newest first.
pub fn run(path: &Path, only: Option<&str>, show: Show) -> CliResult {
    let config = load_config(path)?;
    let rt = runtime()?;
    let as_json = show.json;
    let instance = rt.block_on(identity::this_instance(&config));
    // From the local catalog, refreshed with what is new; should the task database not
    // open (a state_dir this user cannot write), from the destinations as they are.
    let opened = rt.block_on(Tasks::open(&context::state_dir(&config)));
    let mut listings = match &opened {
        Ok(tasks) => catalog::backups(
            &config,
            tasks.clone(),
            only,
            instance.clone(),
            show.refresh,
            show.all_instances,
        )?,
        Err(e) => {
            tracing::warn!(error = %e, "the catalog cannot be used: listing the destinations whole");
            destinations::backups(&config, only)?
        }
    };
    let deleted: Vec<Task> = if show.deleted {
        rt.block_on(async {
            let tasks = Tasks::open(&context::state_dir(&config)).await?;
            tasks.list(TaskKind::Backup).await
        })?
        .into_iter()
        .filter(|t| t.state == service_backup_core::task::TaskState::Deleted)
        .rev()
        .collect()
    } else {
        Vec::new()
    };
    let mut others = 0;
    let mut rows: Vec<(String, BackupEntry)> = Vec::new();
    let mut failed = false;
    while let Some(listed) = rt.block_on(listings.next()) {
        match listed {
            Ok((dest, entries)) => {
                // The catalog holds only this instance's backups read; it counts the others.
                if let Ok(tasks) = &opened
                    && !show.all_instances
                {
                    let (key, me) = (catalog::key_of(&dest), instance.clone());
                    others += rt
                        .block_on(tasks.catalog(move |s| s.catalog_others(&key, &me)))
                        .unwrap_or(0);
                }
                let name = dest.name;
                for e in entries {
                    if show.all_instances || e.manifest.instance_id == instance {
                        rows.push((name.clone(), e));
                    } else {
                        others += 1;
                    }
                }
            }
            Err(e) => {
                progress::print_above(&format!("error: {}", escape_controls(&e.to_string())));
                failed = true;
            }
        }
    }
    // A retry note shown while listing gives way to the result.
    progress::clear();
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
                    "state": "complete",
                })
            })
            .chain(deleted.iter().map(|t| {
                json!({
                    "name": t.backup_name,
                    "state": "deleted",
                    "deleted_at": t.deleted_at.map(|d| d.to_rfc3339()),
                    "reason": t.reason,
                    "size_in_bytes": t.size_in_bytes,
                    "stored_bytes": t.stored_bytes,
                })
            }))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&items).expect("JSON values serialize")
        );
    } else if rows.is_empty() {
        // When a destination failed, its error says so: "none found" would mislead.
        if !failed {
            println!("no complete backups of instance {instance} found");
        }
        if others > 0 {
            println!(
                "{others} backup(s) of other instances: see `list --all-instances`, restore one with `restore --from-instance ID`"
            );
        }
    } else {
        let instance_col = |id: &str| {
            if show.all_instances {
                format!("  {}", escape_controls(id))
            } else {
                String::new()
            }
        };
        println!(
            "{:<48} {:<25} {:>12} {:>12}  DESTINATION{}",
            "NAME",
            "STARTED (UTC)",
            "SIZE",
            "STORED",
            instance_col("INSTANCE")
        );
        for (dest, e) in &rows {
            let m = &e.manifest;
            println!(
                "{:<48} {:<25} {:>12} {:>12}  {}{}",
                escape_controls(&m.name),
                m.started_at.format("%Y-%m-%d %H:%M:%S"),
                units::bytes(m.plain_bytes),
                units::bytes(m.stored_bytes),
                escape_controls(dest),
                instance_col(&m.instance_id)
            );
        }
    }
    if !as_json && !deleted.is_empty() {
        println!("\ndeleted backups (this agent's records):");
        println!("{:<48} {:<25} REASON", "NAME", "DELETED (UTC)");
        for t in &deleted {
            println!(
                "{:<48} {:<25} {}",
                escape_controls(t.backup_name.as_deref().unwrap_or("-")),
                t.deleted_at
                    .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default(),
                escape_controls(t.reason.as_deref().unwrap_or(""))
            );
        }
    }
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}
