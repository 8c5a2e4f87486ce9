//! `service-backup ls CONFIG [PATH…] [--backup NAME|latest] [--destination NAME] [--json]`:
//! a backup's entries, read from its archive's index (the header, the footer and the index:
//! a few ranged reads), or for a backup made before archives carried an index, from the
//! whole archive, saying so.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::DateTime;
use clap::Args;
use serde_json::json;
use service_backup_core::format::index::{EntryKind, IndexEntry};
use service_backup_core::ops::browse::{self, Selection};
use service_backup_core::ops::restore::RestoreInto;
use service_backup_core::{Error, ErrorKind};

use crate::command::{CliResult, Outcome, load_config, runtime};
use crate::escape::escape_controls;
use crate::jobs::restore::locate;

/// Arguments of `ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// The configuration file.
    #[arg(env = super::CONFIG_ENV)]
    config: PathBuf,
    /// Only these paths: files, folders (with everything below them) or globs (`*` and `?`
    /// within a name, `**` across folders), relative to the backed-up folder.
    paths: Vec<String>,
    #[command(flatten)]
    which: super::restore::Which,
    /// Print one JSON object per entry, in a JSON array.
    #[arg(long)]
    json: bool,
}

/// Prints entries as they come, as a table or a JSON array.
struct Printer {
    json: bool,
    count: u64,
    selection: Selection,
    matched: Vec<bool>,
    out: std::io::BufWriter<std::io::Stdout>,
}

impl Printer {
    fn print(&mut self, e: &IndexEntry) {
        for i in self.selection.hits(&e.path) {
            self.matched[i] = true;
        }
        if !self.selection.shows(&e.path) {
            return;
        }
        // A closed pipe (`ls … | head`) ends the listing quietly: nothing to report.
        let _ = if self.json {
            let item = json!({
                "path": e.path,
                "type": e.kind.name(),
                "mode": format!("{:04o}", e.mode),
                "size": e.size,
                "mtime": time(e.mtime),
                "link_target": e.link,
            });
            let sep = if self.count == 0 { "[\n  " } else { ",\n  " };
            write!(self.out, "{sep}{item}")
        } else {
            let link = e
                .link
                .as_ref()
                .map_or(String::new(), |l| format!(" -> {}", escape_controls(l)));
            writeln!(
                self.out,
                "{}{} {:>10}  {}  {}{link}",
                e.kind.letter(),
                permissions(e.mode),
                if e.kind == EntryKind::File {
                    human(e.size)
                } else {
                    "-".into()
                },
                time(e.mtime).replace('T', " ").trim_end_matches('Z'),
                escape_controls(&e.path)
            )
        };
        self.count += 1;
    }

    fn finish(&mut self) {
        let _ = if !self.json {
            Ok(())
        } else if self.count == 0 {
            writeln!(self.out, "[]")
        } else {
            writeln!(self.out, "\n]")
        };
        let _ = self.out.flush();
    }
}

/// `rwxr-xr-x` of a mode.
fn permissions(mode: u32) -> String {
    (0..9)
        .map(|i| {
            if mode & (0o400 >> i) == 0 {
                '-'
            } else {
                ['r', 'w', 'x'][i % 3]
            }
        })
        .collect()
}

/// A modification time in UTC, RFC 3339 to the second.
fn time(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0).map_or_else(
        || secs.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// A size in B, KiB, MiB, GiB or TiB, as `ls -lh` shows it.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut whole = bytes;
    while whole >= 1024 && unit + 1 < UNITS.len() {
        whole /= 1024;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    #[allow(clippy::cast_precision_loss)] // a display of three digits
    let value = bytes as f64 / (1u64 << (10 * unit)) as f64;
    format!("{value:.1} {}", UNITS[unit])
}

/// Lists a backup's entries.
pub fn run(args: &LsArgs) -> CliResult {
    let config = load_config(&args.config)?;
    let plan = args.which.plan(&config, RestoreInto::CheckOnly)?;
    let selection = Selection::new(&args.paths);
    let printer = Arc::new(Mutex::new(Printer {
        json: args.json,
        count: 0,
        matched: vec![false; args.paths.len()],
        selection: selection.clone(),
        out: std::io::BufWriter::new(std::io::stdout()),
    }));
    let name = runtime()?.block_on(async {
        let (target, entry) = locate(&config, &plan).await?;
        let backup =
            browse::open_backup(target.destination.clone(), &entry, &plan.decryption).await?;
        if let Some(index) = backup.index() {
            let mut p = printer.lock().unwrap_or_else(PoisonError::into_inner);
            for e in index.entries() {
                p.print(&e?);
            }
        } else {
            eprintln!(
                "note: backup {} has no index (it was made before archives carried one): reading its whole archive ({} bytes)",
                entry.manifest.name, entry.manifest.stored_bytes
            );
            let p = printer.clone();
            browse::list_whole(target.destination, &entry, &plan.decryption, move |e| {
                p.lock().unwrap_or_else(PoisonError::into_inner).print(&e);
            })
            .await?;
        }
        Ok::<_, Error>(entry.manifest.name)
    })?;
    let mut p = printer.lock().unwrap_or_else(PoisonError::into_inner);
    p.finish();
    if let Some(i) = p.matched.iter().position(|m| !m) {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{:?} matches nothing in backup {name}", args.paths[i]),
        )
        .into());
    }
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_sizes_and_times_read_as_ls_shows_them() {
        assert_eq!(permissions(0o755), "rwxr-xr-x");
        assert_eq!(permissions(0o640), "rw-r-----");
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
    }
}
