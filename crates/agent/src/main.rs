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
