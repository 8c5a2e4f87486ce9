//! The command line: one file per command.

mod backup;
pub mod check;
mod decrypt;
mod demo;
mod generated;
mod keygen;
mod list;
mod ls;
pub mod output;
mod prune;
mod restore;
mod run;
mod tasks;
mod typo;
mod validate;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::command::CliResult;
pub use typo::mistyped_command;

/// The environment variable that names the configuration file when CONFIG is not given.
pub const CONFIG_ENV: &str = "SERVICE_BACKUP_CONFIG";
/// The environment variable that names a key file when `--key-file` is not given.
pub const KEY_FILE_ENV: &str = "SERVICE_BACKUP_KEY_FILE";

/// service-backup: backs up a service's dump folder as an encrypted, compressed archive to
/// S3, Azure, GCS, SSH servers and local folders, and restores it.
#[derive(Debug, Parser)]
#[command(
    name = "service-backup",
    version,
    about,
    max_term_width = 100,
    // Not `args_conflicts_with_subcommands`: it refuses the global flags before a command
    // (`service-backup -v backup CONFIG`); CONFIG with a command is refused in `run`.
    arg_required_else_help = true
)]
pub struct Cli {
    /// Runs the daemon with this configuration (the original's invocation; same as `run`).
    config: Option<PathBuf>,
    /// Format of log lines: lager JSON, lager's pretty JSON, text lines, or `human` (a
    /// progress bar, warnings, a summary). Default: `human` for a command (not the daemon)
    /// whose stderr is a terminal, else `json`.
    #[arg(long, global = true, value_parser = ["json", "pretty", "text", "human"])]
    pub log_format: Option<String>,
    /// More log lines: info, then debug (repeatable).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Fewer log lines: errors only (repeatable).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the daemon: backups on the cron schedule until SIGTERM.
    Run {
        /// The configuration file.
        #[arg(env = CONFIG_ENV)]
        config: PathBuf,
    },
    /// Makes one backup now (the original release's manual backup).
    Backup {
        /// The configuration file.
        #[arg(env = CONFIG_ENV)]
        config: PathBuf,
        /// Write the one archive (and its manifest) under this folder instead of the
        /// destinations, as BOSH Backup and Restore's artifact folder wants it.
        #[arg(long, value_name = "DIR")]
        to_dir: Option<PathBuf>,
        /// Print the result as one JSON document on standard output (README, "JSON output").
        #[arg(long)]
        json: bool,
    },
    /// Lists the complete backups in the destinations, newest first.
    List {
        /// The configuration file.
        #[arg(env = CONFIG_ENV)]
        config: PathBuf,
        /// Only this destination.
        #[arg(long)]
        destination: Option<String>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Also the backups this agent deleted (from its task records).
        #[arg(long)]
        all: bool,
        /// The backups of every agent writing the same destinations, not only this one's.
        #[arg(long)]
        all_instances: bool,
        /// List every destination whole to refresh the local catalog (deleted backups drop
        /// out), instead of only what is new since the last listing.
        #[arg(long)]
        refresh: bool,
    },
    /// Deletes the backups the retention policy does not keep, and leftovers of
    /// interrupted uploads; prints what it keeps and why.
    Prune {
        /// The configuration file.
        #[arg(env = CONFIG_ENV)]
        config: PathBuf,
        /// Print what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only this destination.
        #[arg(long)]
        destination: Option<String>,
        /// Prune the backups of every agent writing the same destinations.
        #[arg(long)]
        all_instances: bool,
        /// Print the result as one JSON document on standard output (README, "JSON output").
        #[arg(long)]
        json: bool,
    },
    /// Lists a backup's files (type, mode, size, time in UTC, path), reading only its
    /// archive's index.
    Ls(ls::LsArgs),
    /// Fetches, checks and extracts a backup (or a downloaded archive with --file).
    Restore(restore::RestoreArgs),
    /// Downloads a backup and checks it end to end without writing files.
    Verify(restore::VerifyArgs),
    /// Decrypts a downloaded archive to a plain .tar.gz, or extracts it.
    Decrypt(decrypt::DecryptArgs),
    /// Writes a new random 256-bit key (base64), mode 0600; or with --recipient, an X25519
    /// identity file, printing its recipient string.
    Keygen {
        /// The key file to create (refuses to overwrite); standard output if absent.
        #[arg(long, short, conflicts_with = "recipient")]
        output: Option<PathBuf>,
        /// Write a new identity to this file (mode 0600, refuses to overwrite) and print its
        /// recipient (`sbrec1…`), for `encryption.recipients` of write-only agents.
        #[arg(long, value_name = "FILE")]
        recipient: Option<PathBuf>,
        /// Print the result as one JSON document on standard output (README, "JSON output").
        #[arg(long)]
        json: bool,
    },
    /// Lists the backup and restore tasks this agent recorded, oldest first (the newest
    /// last, next to the prompt).
    Tasks {
        /// The configuration file.
        #[arg(env = CONFIG_ENV)]
        config: PathBuf,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Only the N newest tasks (still oldest first).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Checks a configuration and prints every problem at once.
    Validate {
        /// The configuration file.
        #[arg(env = CONFIG_ENV)]
        config: PathBuf,
        /// Print the result as one JSON document on standard output (README, "JSON output").
        #[arg(long)]
        json: bool,
    },
    /// Checks a configuration, then writes, lists, reads back and deletes a probe object in
    /// each destination, checks each executable, and prints the schedule's next runs.
    Check(check::CheckArgs),
    /// Quick start: backs up a sample folder to a local destination and restores it.
    Demo {
        /// The folder to work in (created; default: ./service-backup-demo).
        #[arg(long, default_value = "service-backup-demo")]
        dir: PathBuf,
    },
    /// Prints the shell completion script for bash, zsh or fish.
    #[command(hide = true)]
    Completions {
        /// The shell.
        #[arg(value_parser = ["bash", "zsh", "fish"])]
        shell: String,
    },
    /// Prints the man page (roff).
    #[command(hide = true)]
    Man,
}

impl Cli {
    /// Whether this command's standard output is its result (so logs go to stderr).
    pub fn logs_to_stdout(&self) -> bool {
        matches!(
            self.command,
            None | Some(Command::Backup { json: false, .. } | Command::Run { .. })
        )
    }

    /// Whether the command was asked for `--json`.
    fn json(&self) -> bool {
        match &self.command {
            Some(
                Command::Backup { json, .. }
                | Command::List { json, .. }
                | Command::Prune { json, .. }
                | Command::Keygen { json, .. }
                | Command::Tasks { json, .. }
                | Command::Validate { json, .. },
            ) => *json,
            Some(Command::Restore(args)) => args.json,
            Some(Command::Verify(args)) => args.json,
            Some(Command::Check(args)) => args.json,
            Some(Command::Ls(args)) => args.json,
            _ => false,
        }
    }
}

impl Cli {
    /// How this command logs: `--log-format`, `-v`/`-q`, and whether a person runs it.
    pub fn log_choice(&self) -> crate::logging::Choice<'_> {
        crate::logging::Choice {
            format: self.log_format.as_deref(),
            logs_to_stdout: self.logs_to_stdout(),
            interactive: !matches!(self.command, None | Some(Command::Run { .. })),
            verbosity: i8::try_from(i16::from(self.verbose) - i16::from(self.quiet)).unwrap_or(0),
        }
    }
}

/// Runs the parsed command; with `--json`, an error is also printed as a JSON document on
/// standard output (`main` prints its line on stderr and chooses the exit code).
pub fn run(cli: Cli) -> CliResult {
    output::set_json(cli.json());
    let result = dispatch(cli);
    if output::json()
        && let Err(e) = &result
    {
        output::print_json(&output::ErrorDocument::of(e));
    }
    result
}

/// Runs the parsed command.
fn dispatch(cli: Cli) -> CliResult {
    if let (Some(config), Some(_)) = (&cli.config, &cli.command) {
        return Err(service_backup_core::Error::new(
            service_backup_core::ErrorKind::Usage,
            format!(
                "{} names the daemon's configuration and cannot come before a command; put it after the command",
                config.display()
            ),
        )
        .into());
    }
    let Some(command) = cli.command else {
        let config = cli.config.expect("clap requires CONFIG or a command");
        return run::run(&config);
    };
    match command {
        Command::Run { config } => run::run(&config),
        Command::Backup { config, to_dir, .. } => backup::run(&config, to_dir.as_deref()),
        Command::List {
            config,
            destination,
            json,
            all,
            all_instances,
            refresh,
            ..
        } => list::run(
            &config,
            destination.as_deref(),
            list::Show {
                json,
                deleted: all,
                all_instances,
                refresh: if refresh {
                    crate::catalog::Mode::Full
                } else {
                    crate::catalog::Mode::Auto
                },
            },
        ),
        Command::Prune {
            config,
            dry_run,
            destination,
            all_instances,
            ..
        } => prune::run(&config, destination.as_deref(), dry_run, all_instances),
        Command::Ls(args) => ls::run(&args),
        Command::Restore(args) => restore::run_restore(&args),
        Command::Verify(args) => restore::run_verify(&args),
        Command::Decrypt(args) => decrypt::run(&args),
        Command::Keygen {
            recipient: Some(path),
            ..
        } => keygen::run_recipient(&path),
        Command::Keygen { output, .. } => keygen::run(output.as_deref()),
        Command::Tasks {
            config,
            json,
            limit,
        } => tasks::run(&config, json, limit),
        Command::Validate { config, .. } => validate::run(&config),
        Command::Check(args) => check::run(&args),
        Command::Demo { dir } => demo::run(&dir),
        Command::Completions { shell } => generated::completions(&shell),
        Command::Man => generated::man(),
    }
}
