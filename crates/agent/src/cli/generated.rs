//! `service-backup completions SHELL` and `service-backup man`: the shell completion scripts
//! and the man page, generated from the command line's own definitions so that they never
//! fall behind it (the Debian package installs both).

use clap::CommandFactory as _;
use clap_complete::Shell;
use service_backup_core::{Error, ErrorKind};

use super::Cli;
use crate::command::{CliResult, Outcome};

/// The program's name, as the completions and the man page call it.
const NAME: &str = "service-backup";

/// Prints the completion script of `shell` (`bash`, `zsh` or `fish`).
pub fn completions(shell: &str) -> CliResult {
    let shell = match shell {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        other => {
            return Err(Error::new(ErrorKind::Usage, format!("no completions for {other}")).into());
        }
    };
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, NAME, &mut std::io::stdout());
    Ok(Outcome::Success)
}

/// Prints the man page in roff, for section 1.
pub fn man() -> CliResult {
    let command = Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut page)
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot render the man page: {e}")))?;
    let mut out = std::io::stdout().lock();
    std::io::Write::write_all(&mut out, &page)
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot write the man page: {e}")))?;
    Ok(Outcome::Success)
}
