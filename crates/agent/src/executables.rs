//! The service's executables (dump, cleanup, identifier, restore): command lines split on
//! spaces as the original did, run with the agent's environment.

use std::process::{Command, Stdio};

use service_backup_core::{Error, ErrorKind, Result};

/// Splits a command line on spaces, as the original release did.
pub fn tokens(command_line: &str) -> Vec<String> {
    command_line
        .split(' ')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn command(command_line: &str) -> Result<Command> {
    let tokens = tokens(command_line);
    let Some((program, args)) = tokens.split_first() else {
        return Err(Error::new(
            ErrorKind::Config,
            "the executable's command line is empty",
        ));
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
    Ok(cmd)
}

/// Runs `command_line` to completion; its output goes to the agent's standard error.
pub fn run(what: &str, command_line: &str) -> Result<()> {
    let program = tokens(command_line).first().cloned().unwrap_or_default();
    let status = command(command_line)?
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cannot run the {what} {program}: {e}"),
            )
            .with_hint("check the path in the configuration and that the file is executable")
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Io,
            format!("the {what} {program} failed ({status})"),
        ))
    }
}

/// Runs `command_line` and returns its standard output, trimmed.
pub fn output(what: &str, command_line: &str) -> Result<String> {
    let program = tokens(command_line).first().cloned().unwrap_or_default();
    let out = command(command_line)?
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cannot run the {what} {program}: {e}"),
            )
        })?;
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::Io,
            format!("the {what} {program} failed ({})", out.status),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_on_spaces() {
        assert_eq!(
            tokens("/bin/dump  --fast x"),
            vec!["/bin/dump", "--fast", "x"]
        );
        assert!(tokens("   ").is_empty());
    }

    #[test]
    fn failures_name_the_program() {
        let err = run("source executable", "/nonexistent/dump --fast").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/dump"), "{err}");
        let err = run("source executable", "false").unwrap_err();
        assert!(err.to_string().contains("failed"), "{err}");
        assert_eq!(output("identifier", "echo  id-1 ").unwrap(), "id-1");
    }
}
