//! `service-backup tasks CONFIG [--json] [--limit N]`: the backup and restore tasks of this agent.

use std::path::Path;

use serde_json::json;

use crate::command::{CliResult, Outcome, load_config, runtime};
use crate::context;
use crate::escape::escape_controls;
use crate::progress::units;
use crate::tasks::Tasks;
use crate::tasks::store::{Task, TaskKind};

/// Prints the tasks recorded in `state_dir`, oldest first; with `limit`, only the newest ones.
pub fn run(path: &Path, as_json: bool, limit: Option<usize>) -> CliResult {
    let config = load_config(path)?;
    let state_dir = context::state_dir(&config);
    let all: Vec<Task> = runtime()?.block_on(async {
        let tasks = Tasks::open(&state_dir).await?;
        let mut all = tasks.list(TaskKind::Backup).await?;
        all.extend(tasks.list(TaskKind::Restore).await?);
        all.extend(tasks.list(TaskKind::Drill).await?);
        all.sort_by_key(|t| t.id);
        Ok::<_, service_backup_core::Error>(all)
    })?;
    // Like `tail -n`: the newest last, where the eye lands after the prompt returns.
    let skip = limit.map_or(0, |n| all.len().saturating_sub(n));
    let all = &all[skip..];
    if as_json {
        let items: Vec<_> = all
            .iter()
            .map(|t| {
                json!({
                    "id": t.id,
                    "kind": t.kind.as_str(),
                    "status": t.state.as_str(),
                    "trigger": t.trigger,
                    "backup_guid": t.backup_guid,
                    "backup_name": t.backup_name,
                    "created_at": t.created_at.to_rfc3339(),
                    "updated_at": t.updated_at.to_rfc3339(),
                    "size_in_bytes": t.size_in_bytes,
                    "stored_bytes": t.stored_bytes,
                    "duration_in_seconds": t.duration_in_seconds,
                    "reason": t.reason,
                    "deleted_at": t.deleted_at.map(|d| d.to_rfc3339()),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&items).expect("JSON values serialize")
        );
        return Ok(Outcome::Success);
    }
    println!(
        "{:>5}  {:<8} {:<8} {:<9} {:<25} {:>10} {:>10}  BACKUP / REASON",
        "ID", "KIND", "STATUS", "TRIGGER", "UPDATED (UTC)", "SIZE", "TOOK"
    );
    for t in all {
        let kind = t.kind.as_str();
        let detail = t
            .reason
            .as_deref()
            .or(t.backup_name.as_deref())
            .map_or_else(String::new, escape_controls);
        let size = t.size_in_bytes.map_or_else(|| "-".into(), units::bytes);
        let took = t
            .duration_in_seconds
            .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
            .map_or_else(|| "-".into(), units::duration);
        println!(
            "{:>5}  {kind:<8} {:<8} {:<9} {:<25} {size:>10} {took:>10}  {detail}",
            t.id,
            t.state.as_str(),
            t.trigger,
            t.updated_at.format("%Y-%m-%d %H:%M:%S")
        );
    }
    Ok(Outcome::Success)
}
