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
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, NAME, &mut script);
    if shell == Shell::Bash {
        // clap_complete spells the states of a hyphenated program name two ways (the loop
        // `service__backup__subcmd__backup`, the arms `service__subcmd__backup__subcmd__backup`),
        // so that no command's options complete (clap-rs/clap#6421): one spelling for both.
        let text =
            String::from_utf8_lossy(&script).replace("service__subcmd__backup", "service__backup");
        return write_out(text.as_bytes(), "the completion script");
    }
    write_out(&script, "the completion script")
}

/// Prints the man page in roff, for section 1: the program's page, then each command's
/// synopsis, description and options in a section of its own (one page for everything:
/// the package installs no page per command).
pub fn man() -> CliResult {
    let mut command = Cli::command();
    // Gives each command its full name (`service-backup backup`) for its synopsis.
    command.build();
    let failed =
        |e: std::io::Error| Error::new(ErrorKind::Io, format!("cannot render the man page: {e}"));
    let mut page = Vec::new();
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(&mut page).map_err(failed)?;
    man.render_name_section(&mut page).map_err(failed)?;
    man.render_synopsis_section(&mut page).map_err(failed)?;
    man.render_description_section(&mut page).map_err(failed)?;
    man.render_options_section(&mut page).map_err(failed)?;
    for sub in command.get_subcommands().filter(|c| !c.is_hide_set()) {
        let name = sub.get_bin_name().unwrap_or(sub.get_name()).to_string();
        page.extend_from_slice(format!(".SH \"{}\"\n", name.to_uppercase()).as_bytes());
        let mut part = Vec::new();
        let man = clap_mangen::Man::new(sub.clone());
        man.render_synopsis_section(&mut part).map_err(failed)?;
        man.render_description_section(&mut part).map_err(failed)?;
        man.render_options_section(&mut part).map_err(failed)?;
        // The command's own headings become subsections of its section.
        let part = String::from_utf8_lossy(&part).replace("\n.SH ", "\n.SS ");
        let part = part
            .strip_prefix(".SH ")
            .map_or(part.clone(), |p| format!(".SS {p}"));
        page.extend_from_slice(part.as_bytes());
    }
    man.render_version_section(&mut page).map_err(failed)?;
    write_out(&page, "the man page")
}

/// Writes `bytes` to standard output in one piece; a reader that stops early (`| head`,
/// a shell that sourced what it needed) is no error.
fn write_out(bytes: &[u8], what: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    match std::io::Write::write_all(&mut out, bytes).and_then(|()| std::io::Write::flush(&mut out))
    {
        Ok(()) => Ok(Outcome::Success),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Outcome::Success),
        Err(e) => Err(Error::new(ErrorKind::Io, format!("cannot write {what}: {e}")).into()),
    }
}
