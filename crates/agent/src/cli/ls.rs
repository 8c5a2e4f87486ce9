//! `service-backup ls CONFIG [PATH…] [--backup NAME|latest] [--destination NAME] [--json]`:
//! a backup's entries, read from its archive's index (the header, the footer and the index:
//! a few ranged reads), or for a backup made before archives carried an index, from the
//! whole archive, saying so.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Datelike as _};
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
    pub json: bool,
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
            let item = json_item(e);
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
                time(e.mtime).map_or_else(
                    || format!("{:>19}", "-"),
                    |t| t.replace('T', " ").trim_end_matches('Z').to_string()
                ),
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

/// The JSON object of an entry: `mtime` is an RFC 3339 string, or `null` for a time that
/// RFC 3339 cannot show.
fn json_item(e: &IndexEntry) -> serde_json::Value {
    json!({
        "path": e.path,
        "type": e.kind.name(),
        "mode": format!("{:04o}", e.mode),
        "size": e.size,
        "mtime": time(e.mtime),
        "link_target": e.link,
    })
}

/// A modification time in UTC, RFC 3339 to the second; `None` outside the years 0000 to
/// 9999, which RFC 3339 cannot write (an archive may record any number).
fn time(secs: i64) -> Option<String> {
    DateTime::from_timestamp(secs, 0)
        .filter(|t| (0..=9999).contains(&t.year()))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// A size in B, KiB, MiB, GiB or TiB, as every command shows sizes to a person.
fn human(bytes: u64) -> String {
    crate::progress::units::bytes(bytes)
}

/// The configuration file and the PATHs of `ls CONFIG PATH…`. With `SERVICE_BACKUP_CONFIG`
/// set (`from_env`), a first argument that is not a file is the first PATH, not CONFIG:
/// `ls etc/` lists `etc/` of the configured agent's backup.
fn config_and_paths(
    first: &Path,
    rest: &[String],
    from_env: Option<PathBuf>,
) -> (PathBuf, Vec<String>) {
    match from_env {
        Some(config) if config != first && !first.is_file() => {
            let mut paths = vec![first.to_string_lossy().into_owned()];
            paths.extend_from_slice(rest);
            (config, paths)
        }
        _ => (first.to_path_buf(), rest.to_vec()),
    }
}

/// Lists a backup's entries.
pub fn run(args: &LsArgs) -> CliResult {
    let (config_path, paths) = config_and_paths(
        &args.config,
        &args.paths,
        std::env::var_os(super::CONFIG_ENV).map(PathBuf::from),
    );
    let config = load_config(&config_path)?;
    let plan = args.which.plan(&config, RestoreInto::CheckOnly)?;
    let selection = Selection::new(&paths);
    let printer = Arc::new(Mutex::new(Printer {
        json: args.json,
        count: 0,
        matched: vec![false; paths.len()],
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
            let size = if crate::progress::for_a_person() {
                crate::progress::units::bytes(entry.manifest.stored_bytes)
            } else {
                format!("{} bytes", entry.manifest.stored_bytes)
            };
            eprintln!(
                "note: backup {} has no index (it was made before archives carried one): reading its whole archive ({size})",
                entry.manifest.name
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
        // The array of what matched is out already: no second document after it.
        super::output::set_json(false);
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{:?} matches nothing in backup {name}", paths[i]),
        )
        .into());
    }
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_the_variable_a_first_argument_that_is_no_file_is_a_path() {
        let none: &[String] = &[];
        let env = Some(PathBuf::from("/etc/service-backup/config.yml"));
        // `ls etc/ '*.conf'` with the variable set: both are paths.
        assert_eq!(
            config_and_paths(Path::new("etc/"), &["*.conf".to_string()], env.clone()),
            (
                PathBuf::from("/etc/service-backup/config.yml"),
                vec!["etc/".to_string(), "*.conf".to_string()]
            )
        );
        // An existing file is the configuration, as the variable's own value is.
        let file = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(
            config_and_paths(file.path(), none, env.clone()),
            (file.path().to_path_buf(), Vec::new())
        );
        assert_eq!(
            config_and_paths(Path::new("/etc/service-backup/config.yml"), none, env),
            (PathBuf::from("/etc/service-backup/config.yml"), Vec::new())
        );
        // Without the variable, the first argument is CONFIG, as clap parsed it.
        assert_eq!(
            config_and_paths(Path::new("etc/"), none, None),
            (PathBuf::from("etc/"), Vec::new())
        );
    }

    #[test]
    fn modes_sizes_and_times_read_as_ls_shows_them() {
        assert_eq!(permissions(0o755), "rwxr-xr-x");
        assert_eq!(permissions(0o640), "rw-r-----");
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
        assert_eq!(time(0).as_deref(), Some("1970-01-01T00:00:00Z"));
    }

    #[test]
    fn an_mtime_that_rfc_3339_cannot_show_is_null_in_json_never_digits() {
        let entry = |mtime| IndexEntry {
            path: "a".into(),
            kind: EntryKind::File,
            mode: 0o644,
            size: 1,
            mtime,
            link: None,
            tar_start: 0,
            header_blocks: 1,
        };
        assert_eq!(
            json_item(&entry(253_402_300_799))["mtime"],
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(
            json_item(&entry(-62_167_219_200))["mtime"],
            "0000-01-01T00:00:00Z"
        );
        // Year 10000, year -1, and times chrono cannot hold at all.
        for mtime in [253_402_300_800, -62_167_219_201, i64::MAX, i64::MIN] {
            let item = json_item(&entry(mtime));
            assert!(item["mtime"].is_null(), "{mtime}: {item}");
            assert!(item.get("mtime").is_some(), "the field is always there");
        }
    }
}
