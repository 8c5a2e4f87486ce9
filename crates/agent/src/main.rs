//! `service-backup`: the backup agent's one binary.
//!
//! Exit codes: 0 success; 1 the operation failed; 2 bad usage or invalid configuration.

use std::process::ExitCode;

use clap::Parser as _;
use service_backup::cli::{self, Cli};
use service_backup::command::{CliError, Outcome};
use service_backup::escape::escape_controls;
use service_backup::{logging, process, progress};
use service_backup_core::ErrorKind;

fn main() -> ExitCode {
    process::report_panics_without_data();
    // Before clap, which would take `lst` for the daemon's configuration path.
    let args: Vec<_> = std::env::args_os().collect();
    if let Some(message) = cli::mistyped_command(&args) {
        eprintln!("error: {}", escape_controls(&message));
        return ExitCode::from(2);
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e, &args),
    };
    let format = logging::init_for(&cli.log_choice());
    progress::set_shown(format == logging::LogFormat::Human);
    process::keep_secrets_out_of_core_dumps();
    // `list --json | head`: print! panics on the closed pipe; that is the reader's choice.
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cli::run(cli)));
    let result = match ran {
        Ok(result) => result,
        Err(payload) if process::unwound_on_closed_stdout(&*payload) => return ExitCode::SUCCESS,
        Err(payload) => std::panic::resume_unwind(payload),
    };
    // A status line left on the screen (a retry note) goes before the final word.
    progress::clear();
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(CliError::Config(problems)) => {
            for line in problems.problems() {
                eprintln!("{line}");
            }
            ExitCode::from(2)
        }
        Err(CliError::Error(e)) => {
            eprintln!("error: {}", escape_controls(&e.to_string()));
            match e.kind() {
                ErrorKind::Config | ErrorKind::Usage => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}

/// Prints clap's message (help and version included); a missing CONFIG or key file also
/// names the environment variable that can give it.
fn usage_error(e: &clap::Error, args: &[std::ffi::OsString]) -> ExitCode {
    let _ = e.print();
    cli::output::usage_error_json(e, args);
    if e.kind() == clap::error::ErrorKind::MissingRequiredArgument {
        let text = e.to_string();
        if text.contains("<CONFIG>") {
            eprintln!("tip: or set {} to the configuration file", cli::CONFIG_ENV);
        }
        if text.contains("--key-file") {
            eprintln!("tip: or set {} to the key file", cli::KEY_FILE_ENV);
        }
    }
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
}
