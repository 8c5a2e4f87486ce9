//! The shell completions and the man page, generated from the command line's definitions:
//! the bash script loads and completes, the zsh and fish scripts are made, and `man -l`
//! renders the page with every command and its options.

mod common;

use std::process::Command;

use common::binary;

/// Runs `bash -c script` with the binary's path in `$BIN`; returns (code, stdout, stderr).
fn bash(script: &str) -> (i32, String, String) {
    let out = Command::new("bash")
        .args(["-c", script])
        .env("BIN", binary())
        .output()
        .expect("bash runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_bash_completion_loads_and_completes_commands_and_options() {
    let (code, out, err) =
        bash(r#"source <("$BIN" completions bash) && complete -p service-backup"#);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("service-backup"), "{out}");
    assert!(out.contains("-F _service__backup"), "{out}");
    assert!(err.is_empty(), "{err}");
    // What a user's Tab would get after `service-backup ba` and `service-backup backup --`.
    let complete = |line: &str| {
        let script = format!(
            r#"source <("$BIN" completions bash)
COMP_WORDS=({line}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}
_service__backup service-backup "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#
        );
        let (code, out, err) = bash(&script);
        assert_eq!(code, 0, "{err}");
        out
    };
    let commands = complete("service-backup ba");
    assert_eq!(commands.trim(), "backup", "{commands}");
    let options = complete("service-backup backup --");
    for option in ["--json", "--to-dir", "--log-format"] {
        assert!(options.lines().any(|l| l == option), "{option}: {options}");
    }
}

#[test]
fn zsh_and_fish_scripts_and_an_unknown_shell() {
    for (shell, marker) in [
        ("zsh", "#compdef service-backup"),
        ("fish", "complete -c service-backup"),
    ] {
        let out = common::run(std::path::Path::new("."), &["completions", shell]);
        out.expect(0);
        assert!(
            out.stdout.contains(marker),
            "{shell}: {}",
            &out.stdout[..200.min(out.stdout.len())]
        );
    }
    let out = common::run(std::path::Path::new("."), &["completions", "tcsh"]);
    out.expect(2);
    assert!(
        out.stderr.contains("invalid value 'tcsh'"),
        "{}",
        out.stderr
    );
    // Hidden: neither is a command of the help, whose list stays about backups.
    let help = common::run(std::path::Path::new("."), &["--help"]);
    assert!(!help.stdout.contains("completions"), "{}", help.stdout);
}

#[test]
fn man_renders_the_page_with_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("service-backup.1");
    let out = common::run(dir.path(), &["man"]);
    out.expect(0);
    std::fs::write(&page, &out.stdout).unwrap();
    // tests/run.sh installs man-db where it is missing.
    let rendered = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("man (man-db) is installed: tests/run.sh installs it");
    let text = String::from_utf8_lossy(&rendered.stdout);
    let err = String::from_utf8_lossy(&rendered.stderr);
    assert!(rendered.status.success(), "man -l: {err}");
    assert!(!err.contains("warning"), "man -l warns: {err}");
    for heading in [
        "NAME",
        "SYNOPSIS",
        "SERVICE-BACKUP BACKUP",
        "SERVICE-BACKUP RESTORE",
        "SERVICE-BACKUP VERIFY",
        "SERVICE-BACKUP CHECK",
        "SERVICE-BACKUP TASKS",
    ] {
        assert!(text.contains(heading), "{heading} missing:\n{text}");
    }
    assert!(text.contains("--json"), "{text}");
    assert!(text.contains("SERVICE_BACKUP_CONFIG"), "{text}");
    // The hidden commands are for packagers, not in the page.
    assert!(!text.contains("SERVICE-BACKUP MAN"), "{text}");
}
