//! `service-backup`: the backup agent's one binary.
//!
//! Exit codes: 0 success; 1 the operation failed; 2 bad usage or invalid configuration.

mod api;
mod cli;
// Parts of the model (schedule, state_dir, api, the cloud destinations' settings) are read
// by the daemon, the HTTP API and the destination crates, which come later.
#[allow(dead_code)]
mod config;
mod daemon;
mod destinations;
mod executables;
mod lock;
mod logging;
mod owner;
mod progress;
mod prune;
mod restoring;
mod runner;
#[allow(dead_code)]
mod schedule;
mod store;
mod tasks;

use std::process::ExitCode;

use clap::Parser as _;
use service_backup_core::ErrorKind;

use cli::{Cli, CliError, Outcome};
use logging::{LogFormat, LogTarget};

/// Makes the process non-dumpable and its core size limit 0, before any key or token is
/// read: the process holds the raw encryption key and the API's tokens, which a core file
/// (or a same-user process reading `/proc/<pid>/mem` or attaching with ptrace, which a
/// non-dumpable process refuses) would otherwise give away. Failures are logged, not fatal:
/// a sandbox may forbid the calls and the agent still works.
fn keep_secrets_out_of_core_dumps() {
    use nix::sys::resource::{Resource, setrlimit};
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "Could not make the process non-dumpable");
    }
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        tracing::warn!(error = %e, "Could not set the core file size limit to 0");
    }
}

fn main() -> ExitCode {
    // A panic message may carry data; print only where it happened.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: service-backup stopped on an internal error{at}; please report it");
    }));
    let cli = Cli::parse();
    let format = if cli.log_format == "text" {
        LogFormat::Text
    } else {
        LogFormat::Json
    };
    if cli.logs_to_stdout() {
        logging::init(format, LogTarget::Stdout, tracing::Level::INFO);
    } else {
        logging::init(format, LogTarget::Stderr, tracing::Level::WARN);
    }
    keep_secrets_out_of_core_dumps();
    match cli::run(cli) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(CliError::Config(problems)) => {
            for line in problems.problems() {
                eprintln!("{line}");
            }
            ExitCode::from(2)
        }
        Err(CliError::Error(e)) => {
            eprintln!("error: {e}");
            match e.kind() {
                ErrorKind::Config | ErrorKind::Usage => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}
