//! The `--json` output of the commands: one JSON document on standard output, whatever the
//! outcome, with the exit code unchanged. Errors still go to stderr as lines; with `--json`
//! standard output also gets an error object, so that a script reads one document either
//! way. The shapes are documented in the README ("JSON output").

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use service_backup_core::ErrorKind;
use service_backup_core::ops::restore::ReadStats;
use service_backup_core::prune::{PruneOutcome, PrunePlan};
use service_backup_core::retention::Rule;

use crate::command::CliError;

mod prune;

pub use prune::PruneDestination;

/// Whether the running command was asked for `--json`.
static JSON: AtomicBool = AtomicBool::new(false);

/// Records whether the running command prints JSON.
pub fn set_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

/// Whether the running command prints JSON (then nothing else goes to standard output).
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Prints `value` as one pretty JSON document on standard output.
pub fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("result types serialize")
    );
}

/// A time as the JSON documents write it: RFC 3339 in UTC, whole seconds.
pub fn utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The error object printed instead of a result.
#[derive(Debug, Serialize)]
pub struct ErrorDocument {
    /// Always false.
    pub ok: bool,
    /// What went wrong.
    pub error: ErrorBody,
}

/// The error of an [`ErrorDocument`].
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// `config`, `usage`, `corrupt`, `wrong_key`, `unsafe_entry`, `not_found`, `io`,
    /// `destination`, `cancelled`, `locked`.
    pub kind: &'static str,
    /// The message, as the stderr line says it without `error: `.
    pub message: String,
    /// What to do, if known.
    pub hint: Option<String>,
    /// Every configuration problem (kind `config` from a configuration file).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// The process's exit code.
    pub exit_code: u8,
}

/// The word for an error kind in [`ErrorBody::kind`].
fn kind_word(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Config => "config",
        ErrorKind::Usage => "usage",
        ErrorKind::Corrupt => "corrupt",
        ErrorKind::WrongKey => "wrong_key",
        ErrorKind::UnsafeEntry => "unsafe_entry",
        ErrorKind::NotFound => "not_found",
        ErrorKind::Io => "io",
        ErrorKind::Destination => "destination",
        ErrorKind::Cancelled => "cancelled",
        ErrorKind::Locked { .. } => "locked",
        _ => "error",
    }
}

impl ErrorDocument {
    /// The document of a command's error, with the exit code `main` gives it.
    pub fn of(e: &CliError) -> Self {
        let error = match e {
            CliError::Config(problems) => ErrorBody {
                kind: "config",
                message: "the configuration is invalid".to_string(),
                hint: None,
                problems: problems.problems().to_vec(),
                exit_code: 2,
            },
            CliError::Error(e) => ErrorBody {
                kind: kind_word(&e.kind()),
                message: e.message().to_string(),
                hint: e.hint().map(str::to_string),
                problems: Vec::new(),
                exit_code: if matches!(e.kind(), ErrorKind::Config | ErrorKind::Usage) {
                    2
                } else {
                    1
                },
            },
        };
        Self { ok: false, error }
    }

    /// The document of a usage error found while parsing the command line (exit 2).
    pub fn usage(message: &str) -> Self {
        Self {
            ok: false,
            error: ErrorBody {
                kind: "usage",
                message: message.to_string(),
                hint: None,
                problems: Vec::new(),
                exit_code: 2,
            },
        }
    }
}

/// With `--json` among `args`, prints the error document of a command line that did not
/// parse (help and version are no errors).
pub fn usage_error_json(e: &clap::Error, args: &[std::ffi::OsString]) {
    use clap::error::ErrorKind as Clap;
    if matches!(e.kind(), Clap::DisplayHelp | Clap::DisplayVersion)
        || !args.iter().any(|a| a == "--json")
    {
        return;
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    print_json(&ErrorDocument::usage(
        first.strip_prefix("error: ").unwrap_or(first),
    ));
}

/// `backup --json`.
#[derive(Debug, Serialize)]
pub struct BackupResult {
    /// Whether every destination got the backup (exit 0).
    pub ok: bool,
    /// The backup's name, once its upload started.
    pub name: Option<String>,
    /// The task recording it.
    pub task_id: Option<i64>,
    /// The instance id it was made under.
    pub instance_id: Option<String>,
    /// The destinations that got it, by name.
    pub destinations: Vec<String>,
    /// Bytes of file content archived.
    pub size_in_bytes: u64,
    /// Bytes stored in each destination.
    pub stored_bytes: u64,
    /// How long the command took.
    pub duration_in_seconds: f64,
    /// `done`; `failed` (a destination did not get it); `rejected` (another backup was in
    /// progress); `cancelled` (SIGTERM or SIGINT); `disabled` (no destination is
    /// configured: nothing was done, exit 0, as the original).
    pub status: &'static str,
    /// What failed, one entry per problem.
    pub problems: Vec<String>,
}

/// `restore --json` and `verify --json` of one backup or file.
#[derive(Debug, Serialize)]
pub struct ReadResult {
    /// Always true (a failure is an error document).
    pub ok: bool,
    /// The backup's name (`null` with `--file`).
    pub backup: Option<String>,
    /// The archive file read (`null` without `--file`).
    pub file: Option<String>,
    /// Where it was restored (`null` for `verify`).
    pub target: Option<String>,
    /// Entries extracted or checked.
    pub entries: u64,
    /// Bytes of file content extracted or checked.
    pub size_in_bytes: u64,
    /// Bytes of the stored archive.
    pub stored_bytes: u64,
    /// SHA-256 of the stored archive, hex.
    pub sha256: String,
    /// The id of the key that opened it (`null`: not encrypted).
    pub key_id: Option<String>,
}

impl ReadResult {
    /// The result of reading `backup` or `file` into `target`.
    pub fn new(
        stats: &ReadStats,
        backup: Option<&str>,
        file: Option<&Path>,
        target: Option<&Path>,
    ) -> Self {
        Self {
            ok: true,
            backup: backup.map(str::to_string),
            file: file.map(|f| f.display().to_string()),
            target: target.map(|t| t.display().to_string()),
            entries: stats.extracted.entries,
            size_in_bytes: stats.extracted.bytes,
            stored_bytes: stats.stored_bytes,
            sha256: stats.sha256.clone(),
            key_id: stats.key_id.map(|k| k.to_string()),
        }
    }
}

/// `verify --all --json`.
#[derive(Debug, Default, Serialize)]
pub struct VerifyAllResult {
    /// Whether every backup was valid and every destination listed (exit 0).
    pub ok: bool,
    /// Every backup checked, newest first within each destination.
    pub backups: Vec<VerifiedBackup>,
    /// Per destination: how many were valid and how many failed.
    pub destinations: Vec<VerifiedDestination>,
    /// Valid backups in all.
    pub valid: usize,
    /// Failed backups in all.
    pub failed: usize,
    /// The errors of the destinations that could not be listed.
    pub unlisted: Vec<String>,
}

/// One backup of [`VerifyAllResult`].
#[derive(Debug, Serialize)]
pub struct VerifiedBackup {
    /// The backup's name.
    pub name: String,
    /// The destination its copy was read from.
    pub destination: String,
    /// Whether it is valid.
    pub ok: bool,
    /// Entries checked (`null` when it failed).
    pub entries: Option<u64>,
    /// Bytes of file content checked (`null` when it failed).
    pub size_in_bytes: Option<u64>,
    /// SHA-256 of the stored archive (`null` when it failed).
    pub sha256: Option<String>,
    /// Why it failed (`null` when valid).
    pub error: Option<String>,
}

/// One destination of [`VerifyAllResult`].
#[derive(Debug, Serialize)]
pub struct VerifiedDestination {
    /// The destination's name.
    pub name: String,
    /// Valid backups.
    pub valid: usize,
    /// Failed backups.
    pub failed: usize,
}

/// `prune --json`.
#[derive(Debug, Default, Serialize)]
pub struct PruneResult {
    /// Whether every destination was pruned without a problem (exit 0).
    pub ok: bool,
    /// Nothing was deleted (`--dry-run`).
    pub dry_run: bool,
    /// This agent's instance id, `null` with `--all-instances`.
    pub instance_id: Option<String>,
    /// Each destination, in configuration order.
    pub destinations: Vec<PruneDestination>,
}

impl PruneResult {
    /// Adds a destination's plan and outcome (`outcome` is `None` on a dry run).
    pub fn add(
        &mut self,
        name: &str,
        retention: Option<String>,
        plan: &PrunePlan,
        outcome: Option<&PruneOutcome>,
    ) {
        self.destinations
            .push(PruneDestination::new(name, retention, plan, outcome));
    }

    /// Adds a destination that failed before its plan: `error` says why.
    pub fn add_failed(&mut self, name: &str, retention: Option<String>, error: String) {
        self.destinations.push(PruneDestination {
            name: name.to_string(),
            retention,
            problems: vec![error],
            ..PruneDestination::default()
        });
    }
}

/// The reasons a kept backup is kept, in the words of the human output.
fn reasons(rules: &[Rule], locked_until: Option<DateTime<Utc>>) -> Vec<String> {
    rules
        .iter()
        .map(|r| match r {
            Rule::Locked => locked_until.map_or_else(
                || "locked".to_string(),
                |t| format!("locked until {}", utc(t)),
            ),
            other => other.to_string(),
        })
        .collect()
}

/// `validate --json`.
#[derive(Debug, Serialize)]
pub struct ValidateResult {
    /// Always true (an invalid configuration is an error document, exit 2).
    pub ok: bool,
    /// The configuration file.
    pub config: String,
    /// How many destinations it has.
    pub destinations: usize,
    /// Whether backups run (there is a destination).
    pub backups_enabled: bool,
    /// What is allowed but risky, one sentence each.
    pub warnings: Vec<String>,
}

/// `check --json`.
#[derive(Debug, Serialize)]
pub struct CheckResult {
    /// Whether every check passed (exit 0).
    pub ok: bool,
    /// The configuration file.
    pub config: String,
    /// Destinations in configuration order, then executables.
    pub checks: Vec<CheckItem>,
    /// The subjects of the failed checks.
    pub failed: Vec<String>,
    /// The schedule and its next runs.
    pub schedule: CheckSchedule,
    /// What `validate` warns about.
    pub warnings: Vec<String>,
}

/// One check of [`CheckResult`].
#[derive(Debug, Serialize)]
pub struct CheckItem {
    /// What was checked: `destination NAME`, `source_executable`…
    pub subject: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found, or what failed and what to fix.
    pub text: String,
}

/// The schedule of [`CheckResult`].
#[derive(Debug, Serialize)]
pub struct CheckSchedule {
    /// The line the human output prints.
    pub text: String,
    /// The next three runs, RFC 3339 in UTC (empty: backups are disabled).
    pub next_runs: Vec<String>,
}

/// `keygen --json`.
#[derive(Debug, Serialize)]
pub struct KeygenResult {
    /// Always true.
    pub ok: bool,
    /// The new key's id (`null` with `--recipient`).
    pub key_id: Option<String>,
    /// The new key in base64, only when no `--output` file was named (as without `--json`,
    /// where it goes to standard output).
    pub key: Option<String>,
    /// The file written (`--output` or `--recipient`), `null` for standard output.
    pub file: Option<String>,
    /// The recipient string (`sbrec1…`) of a new identity.
    pub recipient: Option<String>,
    /// The recipient's id.
    pub recipient_id: Option<String>,
}
