//! `service-backup`: the backup agent's one binary.
//!
//! Exit codes: 0 success; 1 the operation failed; 2 bad usage or invalid configuration.

use std::process::ExitCode;

use clap::Parser as _;
use service_backup::cli::{self, Cli};
use service_backup::command::{CliError, Outcome};
use service_backup::{logging, process};
use service_backup_core::ErrorKind;

fn main() -> ExitCode {
    process::report_panics_without_data();
    // Before clap, which would take `lst` for the daemon's configuration path.
    let args: Vec<_> = std::env::args_os().collect();
    if let Some(message) = cli::mistyped_command(&args) {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse_from(args);
    logging::init_for(&cli.log_format, cli.logs_to_stdout());
    process::keep_secrets_out_of_core_dumps();
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
