//! A mistyped command, told apart from the configuration path of the original's invocation
//! (`service-backup CONFIG`): `service-backup lst` would otherwise be read as a missing
//! configuration file, and `service-backup bakup config.yml` as two configuration paths.

use std::ffi::OsString;
use std::path::Path;

use clap::CommandFactory as _;

use super::Cli;

/// The message for a first argument that is no command, no existing file, and close to a
/// command's name: `unknown command 'lst'; did you mean 'list'?`.
pub fn mistyped_command(args: &[OsString]) -> Option<String> {
    let word = first_word(args)?;
    let cli = Cli::command();
    let mut names: Vec<&str> = cli.get_subcommands().map(clap::Command::get_name).collect();
    names.push("help");
    // A path is never a typo of a command name, and an existing file is the daemon's
    // configuration, whatever its name.
    if names.contains(&word) || word.contains('/') || Path::new(word).exists() {
        return None;
    }
    let lower = word.to_ascii_lowercase();
    let (edits, name) = names
        .iter()
        .map(|name| (strsim::damerau_levenshtein(&lower, name), *name))
        .min_by_key(|(edits, _)| *edits)?;
    // Two edits at most, and fewer than half the name: `ls` is `list`, `x` is nothing.
    (edits <= 2 && edits * 2 <= name.len())
        .then(|| format!("unknown command '{word}'; did you mean '{name}'?"))
}

/// The first argument that is not an option (nor the value of `--log-format`).
fn first_word(args: &[OsString]) -> Option<&str> {
    let mut rest = args.iter().skip(1).map(|a| a.to_str());
    while let Some(arg) = rest.next() {
        let arg = arg?;
        if arg == "--" {
            return rest.next().flatten();
        }
        if arg == "--log-format" {
            rest.next();
            continue;
        }
        if !arg.starts_with('-') || arg == "-" {
            return Some(arg);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(args: &[&str]) -> Option<String> {
        let args: Vec<OsString> = std::iter::once("service-backup")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        mistyped_command(&args)
    }

    #[test]
    fn words_close_to_a_command_are_typos() {
        assert_eq!(
            message(&["lst"]).as_deref(),
            Some("unknown command 'lst'; did you mean 'list'?")
        );
        assert_eq!(
            message(&["bakup", "config.yml"]).as_deref(),
            Some("unknown command 'bakup'; did you mean 'backup'?")
        );
        assert_eq!(
            message(&["--log-format", "text", "Validte", "c.yml"]).as_deref(),
            Some("unknown command 'Validte'; did you mean 'validate'?")
        );
        // `ls` is a command of its own now (a backup's files); one edit away from it is
        // still `list` when that is nearer in name order.
        assert_eq!(message(&["ls"]), None);
        assert_eq!(
            message(&["lis"]).as_deref(),
            Some("unknown command 'lis'; did you mean 'list'?")
        );
    }

    #[test]
    fn commands_paths_options_and_other_words_are_left_to_clap() {
        for args in [
            &["list", "c.yml"][..],
            &["backup.yml"],
            &["./lst"],
            &["/etc/service-backup/lst"],
            &["x"],
            &["my-config"],
            &["--version"],
            &["--log-format", "text"],
            &[],
        ] {
            assert_eq!(message(args), None, "{args:?}");
        }
    }
}
