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
    let mut out = Printer {
        show,
        shown: 0,
        closed: false,
        out: std::io::BufWriter::new(std::io::stdout()),
    };
    let mut others = 0;
    let mut failed = false;
    let mut error = |e: &service_backup_core::Error| {
        progress::print_above(&format!("error: {}", escape_controls(&e.to_string())));
        failed = true;
    };
    let only_instance = (!show.all_instances).then(|| instance.clone());
    match &opened {
        Ok(tasks) => {
            // Each destination's catalog refreshed, then their backups printed from the
            // task database one at a time, newest first across them: a list of a whole
            // fleet is never held.
            let every = catalog::full_every(&config);
            let (mut keys, mut names) = (Vec::new(), Vec::new());
            for target in destinations::select(&config, only)? {
                let refreshed = rt.block_on(async {
                    let target = target?;
                    catalog::refresh_one(
                        tasks,
                        &target,
                        &instance,
                        show.refresh,
                        show.all_instances,
                        every,
                    )
                    .await?;
                    Ok::<_, service_backup_core::Error>(target)
                });
                match refreshed {
                    Ok(target) => {
                        let key = catalog::key_of(&target);
                        // The catalog holds only this instance's backups read; it counts
                        // the others.
                        if !show.all_instances {
                            let (key, me) = (key.clone(), instance.clone());
                            others += rt
                                .block_on(tasks.catalog(move |s| s.catalog_others(&key, &me)))
                                .unwrap_or(0);
                        }
                        keys.push(key);
                        names.push(target.name);
                    }
                    Err(e) => error(&e),
                }
            }
            // A retry note shown while listing gives way to the result.
            progress::clear();
            out = rt.block_on(tasks.catalog(move |s| {
                s.catalog_each(&keys, only_instance.as_deref(), |i, e| {
                    out.row(&names[i], &e)
                })?;
                Ok(out)
            }))?;
        }
        Err(e) => {
            tracing::warn!(error = %e, "the catalog cannot be used: listing the destinations whole");
            let mut listings = destinations::backups(&config, only)?;
            let mut rows: Vec<(String, BackupEntry)> = Vec::new();
            while let Some(listed) = rt.block_on(listings.next()) {
                match listed {
                    Ok((dest, entries)) => {
                        for e in entries {
                            if only_instance.is_none() || e.manifest.instance_id == instance {
                                rows.push((dest.name.clone(), e));
                            } else {
                                others += 1;
                            }
                        }
                    }
                    Err(e) => error(&e),
                }
            }
            progress::clear();
            rows.sort_by(|a, b| {
                (b.1.manifest.started_at, &b.1.manifest.name)
                    .cmp(&(a.1.manifest.started_at, &a.1.manifest.name))
            });
            for (dest, e) in &rows {
                if !out.row(dest, e) {
                    break;
                }
            }
        }
    }
    if as_json {
        for t in &deleted {
            out.item(&json!({
                "name": t.backup_name,
                "state": "deleted",
                "deleted_at": t.deleted_at.map(|d| d.to_rfc3339()),
                "reason": t.reason,
                "size_in_bytes": t.size_in_bytes,
                "stored_bytes": t.stored_bytes,
            }));
        }
        out.line(format_args!(
            "{}",
            if out.shown == 0 { "[]" } else { "\n]" }
        ));
    } else if out.shown == 0 {
        // When a destination failed, its error says so: "none found" would mislead.
        if !failed {
            out.line(format_args!(
                "no complete backups of instance {instance} found"
            ));
        }
        if others > 0 {
            out.line(format_args!(
                "{others} backup(s) of other instances: see `list --all-instances`, restore one with `restore --from-instance ID`"
            ));
        }
    }
    if !as_json && !deleted.is_empty() {
        out.line(format_args!("\ndeleted backups (this agent's records):"));
        out.line(format_args!(
            "{:<48} {:<25} REASON",
            "NAME", "DELETED (UTC)"
        ));
        for t in &deleted {
            out.line(format_args!(
                "{:<48} {:<25} {}",
                escape_controls(t.backup_name.as_deref().unwrap_or("-")),
                t.deleted_at
                    .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default(),
                escape_controls(t.reason.as_deref().unwrap_or(""))
            ));
        }
    }
    out.finish();
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

/// Prints the list as its rows come, newest first: a table (its header before the first
/// row) or the items of a JSON array (opened before the first, closed by the caller).
struct Printer {
    show: Show,
    /// How many rows or items were printed.
    shown: usize,
    /// Whether standard output was closed (a reader such as `head` is done): nothing more
    /// is printed, and the rows left are not read.
    closed: bool,
    /// Standard output, written in blocks rather than a call per line.
    out: std::io::BufWriter<std::io::Stdout>,
}

impl Printer {
    /// Prints one line (`end` after it), unless standard output is closed.
    fn print(&mut self, text: std::fmt::Arguments<'_>, end: &str) {
        use std::io::Write as _;
        if !self.closed && self.out.write_fmt(format_args!("{text}{end}")).is_err() {
            self.closed = true;
        }
    }

    /// Writes out what is still buffered, unless standard output is closed.
    fn finish(&mut self) {
        use std::io::Write as _;
        if !self.closed && self.out.flush().is_err() {
            self.closed = true;
        }
    }

    /// Prints one line, unless standard output is closed.
    fn line(&mut self, text: std::fmt::Arguments<'_>) {
        self.print(text, "\n");
    }

    /// Prints backup `e` of destination `dest`; whether standard output is still open.
    fn row(&mut self, dest: &str, e: &BackupEntry) -> bool {
        let m = &e.manifest;
        if self.show.json {
            self.item(&json!({
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
            }));
            return !self.closed;
        }
        let all = self.show.all_instances;
        let instance_col = |id: &str| {
            if all {
                format!("  {}", escape_controls(id))
            } else {
                String::new()
            }
        };
        if self.shown == 0 {
            self.line(format_args!(
                "{:<48} {:<25} {:>12} {:>12}  DESTINATION{}",
                "NAME",
                "STARTED (UTC)",
                "SIZE",
                "STORED",
                instance_col("INSTANCE")
            ));
        }
        self.shown += 1;
        self.line(format_args!(
            "{:<48} {:<25} {:>12} {:>12}  {}{}",
            escape_controls(&m.name),
            m.started_at.format("%Y-%m-%d %H:%M:%S"),
            units::bytes(m.plain_bytes),
            units::bytes(m.stored_bytes),
            escape_controls(dest),
            instance_col(&m.instance_id)
        ));
        !self.closed
    }

    /// Prints one item of the JSON array, indented as a pretty array's items are.
    fn item(&mut self, value: &serde_json::Value) {
        let pretty = serde_json::to_string_pretty(value).expect("JSON values serialize");
        self.line(format_args!("{}", if self.shown == 0 { "[" } else { "," }));
        self.shown += 1;
        let mut lines = pretty.lines().peekable();
        while let Some(line) = lines.next() {
            if lines.peek().is_some() {
                self.line(format_args!("  {line}"));
            } else {
                self.print(format_args!("  {line}"), "");
            }
        }
    }
}
