//! `service-backup check CONFIG [--timeout SECONDS]`: what `validate` checks, then that each
//! destination takes a probe object (written, listed, read back and deleted, all
//! destinations at once, each within the timeout), that each configured executable exists
//! and this user may execute it, and when the schedule runs next.

mod executable;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, Utc};
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::output;
use crate::command::{CliResult, Outcome, runtime};
use crate::config::{self, Config};
use crate::destinations::{self, probe};
use crate::schedule::{Plan, Spread, go_duration};

/// The arguments of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The configuration file.
    #[arg(env = super::CONFIG_ENV)]
    config: PathBuf,
    /// How long each destination's probe may take, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// Print the result as one JSON document on standard output (README, "JSON output").
    #[arg(long)]
    pub json: bool,
}

/// How many run times of the schedule are shown.
const NEXT_RUNS: usize = 3;

/// One check's result: what was checked, and whether it passed with what was found or
/// failed with what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was checked, as messages name it elsewhere: `destination NAME`, `source_executable`.
    pub subject: String,
    /// What was found, or what failed and what to fix.
    pub text: String,
    /// Whether it passed.
    pub ok: bool,
}

impl Finding {
    /// The line printed for it.
    pub fn line(&self) -> String {
        let mark = if self.ok { "ok    " } else { "FAILED" };
        format!("{mark} {}: {}", self.subject, self.text)
    }
}

/// Every check's result, and the schedule's next runs.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Destinations in configuration order, then executables.
    pub findings: Vec<Finding>,
    /// The line that tells the schedule's next runs.
    pub schedule: String,
    /// The schedule's next runs (empty when backups are disabled).
    pub next_runs: Vec<DateTime<Utc>>,
}

impl Report {
    /// The subjects of the checks that failed, in order.
    pub fn failed(&self) -> Vec<&str> {
        self.findings
            .iter()
            .filter(|f| !f.ok)
            .map(|f| f.subject.as_str())
            .collect()
    }

    /// The finding of `subject`, if it was checked.
    pub fn finding(&self, subject: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.subject == subject)
    }
}

/// Validates `args.config` as `validate` does (same messages; exit 2 when invalid), then
/// runs every check and prints one line each; exit 1 naming each failed check.
pub fn run(args: &CheckArgs) -> CliResult {
    if output::json() {
        // Validated quietly: the one document holds validate's warnings too.
        crate::command::load_config(&args.config)?;
    } else {
        super::validate::run(&args.config)?;
    }
    // Loaded again, quietly: `validate` already logged what there is to log.
    let config = config::load(&args.config)?;
    let rt = runtime()?;
    let report = rt.block_on(report(
        &config,
        Duration::from_secs(args.timeout),
        std::env::var_os("PATH"),
    ));
    // An SSH probe cut short by its timeout may still hold a blocking thread: not waited for.
    rt.shutdown_timeout(Duration::from_secs(1));
    // A retry note shown while probing gives way to the findings.
    crate::progress::clear();
    if output::json() {
        output::print_json(&json_result(&args.config, &config, &report));
        return Ok(if report.failed().is_empty() {
            Outcome::Success
        } else {
            Outcome::Failed
        });
    }
    for finding in &report.findings {
        println!("{}", finding.line());
    }
    println!("{}", report.schedule);
    let failed = report.failed();
    if failed.is_empty() {
        println!("{}: every check passed", args.config.display());
        Ok(Outcome::Success)
    } else {
        eprintln!("error: check failed for {}", failed.join(", "));
        Ok(Outcome::Failed)
    }
}

/// The `check --json` document of `report`.
fn json_result(path: &Path, config: &Config, report: &Report) -> output::CheckResult {
    output::CheckResult {
        ok: report.failed().is_empty(),
        config: path.display().to_string(),
        checks: report
            .findings
            .iter()
            .map(|f| output::CheckItem {
                subject: f.subject.clone(),
                ok: f.ok,
                text: f.text.clone(),
            })
            .collect(),
        failed: report.failed().into_iter().map(str::to_string).collect(),
        schedule: output::CheckSchedule {
            text: report.schedule.clone(),
            next_runs: report.next_runs.iter().map(|t| output::utc(*t)).collect(),
        },
        warnings: super::validate::warnings(config),
    }
}

/// Runs every check of `config`: each destination's probe (all at once, each within
/// `timeout`), each executable (looked up in `path_var` when it names no folder), and the
/// schedule's next runs from now.
pub async fn report(
    config: &Config,
    timeout: Duration,
    path_var: Option<std::ffi::OsString>,
) -> Report {
    let now = Utc::now();
    let probes = config
        .destinations
        .iter()
        .map(|dest| check_destination(config, dest, timeout, now));
    let mut findings = futures::future::join_all(probes).await;
    findings.extend(
        executables(config).into_iter().map(|(subject, line)| {
            match executable::find(line, path_var.clone()) {
                Ok(path) => {
                    // A bare name was found in this shell's PATH; the agent searches its own.
                    let searched = if crate::executables::tokens(line)
                        .first()
                        .is_some_and(|p| p.contains('/'))
                    {
                        ""
                    } else {
                        " (found in this shell's PATH: the agent searches its own; a full path does not depend on it)"
                    };
                    Finding {
                        subject: subject.to_string(),
                        text: format!(
                            "{} exists and this user may execute it{searched}",
                            path.display()
                        ),
                        ok: true,
                    }
                }
                Err(e) => Finding {
                    subject: subject.to_string(),
                    text: format!("{} ({})", e.problem, e.fix),
                    ok: false,
                },
            }
        }),
    );
    // With a spread, the run times are this instance's: its offset comes from its id.
    let mut instance = None;
    let plan = crate::catch_up::plan(config, &mut instance, &CancellationToken::new()).await;
    let plan = plan.filter(|_| config.backups_enabled());
    Report {
        findings,
        schedule: schedule_line(config, plan.as_ref(), now),
        next_runs: plan.map_or_else(Vec::new, |p| next_runs(&p, now, NEXT_RUNS)),
    }
}

/// The configured executables, by the key that names each.
fn executables(config: &Config) -> Vec<(&'static str, &str)> {
    [
        ("source_executable", config.source_executable.as_deref()),
        ("cleanup_executable", config.cleanup_executable.as_deref()),
        (
            "service_identifier_executable",
            config.service_identifier_executable.as_deref(),
        ),
        (
            "restore.restore_executable",
            config.restore.restore_executable.as_deref(),
        ),
        (
            "restore_check_executable",
            config.drill.check_executable.as_deref(),
        ),
    ]
    .into_iter()
    .filter_map(|(key, line)| Some((key, line?)))
    .collect()
}

/// Probes one destination within `timeout`.
async fn check_destination(
    config: &Config,
    dest: &config::DestinationConfig,
    timeout: Duration,
    now: DateTime<Utc>,
) -> Finding {
    let subject = format!("destination {}", dest.display_name());
    let failed = |text: String| Finding {
        subject: subject.clone(),
        text,
        ok: false,
    };
    let target = match destinations::build(config, dest) {
        Ok(target) => target,
        // The error names the destination already; the line's subject does.
        Err(e) => return failed(e.to_string().replacen(&format!("{subject}: "), "", 1)),
    };
    let started = Instant::now();
    let described = target.destination.describe();
    // In a task of its own, aborted at the timeout: a probe that keeps a worker busy
    // (a store streaming a huge answer) cannot hold back this timer or the other probes.
    let task = tokio::spawn(async move { probe::probe(&target, now).await });
    let abort = task.abort_handle();
    let outcome = match tokio::time::timeout(timeout, task).await {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(join)) => Ok(Err(service_backup_core::Error::new(
            service_backup_core::ErrorKind::Destination,
            format!("the probe stopped unexpectedly: {join}"),
        ))),
        Err(elapsed) => {
            abort.abort();
            Err(elapsed)
        }
    };
    match outcome {
        Ok(Ok(probed)) => {
            let mut text = format!(
                "wrote, listed, read back and deleted {} in {} ({:.1} s)",
                probed.key,
                described,
                started.elapsed().as_secs_f64()
            );
            if probed.leftovers_removed > 0 {
                let removed = probed.leftovers_removed;
                text = format!("{text}; removed {removed} probe(s) left by interrupted checks");
            }
            Finding {
                subject,
                text,
                ok: true,
            }
        }
        Ok(Err(e)) => failed(e.to_string()),
        Err(_) => failed(format!(
            "{} did not complete a probe within {} s (check the endpoint or server, the network and firewalls; `--timeout` allows longer)",
            described,
            timeout.as_secs()
        )),
    }
}

/// `schedule "EXPR": next runs in ZONE: T1, T2, T3`, in the VM's local zone, with this
/// instance's offset when a spread is set.
fn schedule_line(config: &Config, plan: Option<&Plan>, now: DateTime<Utc>) -> String {
    let Some(schedule) = plan.filter(|_| config.backups_enabled()) else {
        return "schedule: none (no destinations: backups are disabled)".to_string();
    };
    let times: Vec<String> = next_runs(schedule, now, NEXT_RUNS)
        .into_iter()
        .map(|next| {
            next.with_timezone(&Local)
                .format("%Y-%m-%d %H:%M:%S %:z")
                .to_string()
        })
        .collect();
    let runs = if times.is_empty() {
        "never".to_string()
    } else {
        times.join(", ")
    };
    let spread = match (config.spread, schedule.offset()) {
        (Some(Spread::Jitter(span)), Some(offset)) => format!(
            " with cron_jitter {} (this instance's offset {})",
            go_duration(span),
            go_duration(offset)
        ),
        (Some(Spread::Window(window)), Some(offset)) => format!(
            " with backup_window {window} (this instance's offset {})",
            go_duration(offset)
        ),
        _ => String::new(),
    };
    format!(
        "schedule \"{}\"{spread}: next runs in the VM's time zone {}: {runs}",
        schedule.expression(),
        local_zone()
    )
}

/// The next `n` run times of `plan` after `now` (fewer if it stops firing).
pub fn next_runs(plan: &Plan, now: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    let mut times = Vec::with_capacity(n);
    let mut after = now;
    while times.len() < n {
        let Some(next) = plan.next_after(after) else {
            break;
        };
        times.push(next);
        after = next;
    }
    times
}

/// The name of the local time zone, as chrono's `Local` finds it: `TZ`, else the system's.
pub fn local_zone() -> String {
    if let Some(tz) = std::env::var("TZ").ok().filter(|t| !t.is_empty()) {
        let name = tz.trim_start_matches(':');
        // A path to a zone file names the zone by its place under zoneinfo.
        return Path::new(name)
            .strip_prefix("/usr/share/zoneinfo")
            .map_or_else(|_| name.to_string(), |p| p.display().to_string());
    }
    iana_time_zone::get_timezone().unwrap_or_else(|_| "(unnamed; see /etc/localtime)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_mark_each_finding() {
        let ok = Finding {
            subject: "destination disk".into(),
            text: "fine".into(),
            ok: true,
        };
        let bad = Finding {
            subject: "source_executable".into(),
            text: "x does not exist (fix the path)".into(),
            ok: false,
        };
        assert_eq!(ok.line(), "ok     destination disk: fine");
        assert_eq!(
            bad.line(),
            "FAILED source_executable: x does not exist (fix the path)"
        );
        let report = Report {
            findings: vec![ok, bad],
            ..Report::default()
        };
        assert_eq!(report.failed(), ["source_executable"]);
        assert!(report.finding("destination disk").unwrap().ok);
    }
}
