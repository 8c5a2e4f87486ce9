//! Every command's output as a person sees it, pinned by snapshots (`tests/snapshots/`):
//! "Snapshot tests of every command's human and JSON output" (the JSON half is
//! `json_output.rs`). Each command runs with `--log-format human`, the format a terminal
//! gets by default (README, "On a terminal, and elsewhere"); off a terminal no progress bar
//! is drawn, so what remains is exactly the lines a person reads: warnings, errors, tables
//! and closing summaries. Values that change from run to run are replaced before the
//! comparison: the working folder (`[dir]`), backup names (`[name]`), times (`[time]`),
//! durations (`[duration]`), rates (`[rate]`), the time zone (`[zone]`), key and recipient
//! ids (`[id]`), SHA-256 digests (`[sha256]`), keys and recipients, and the sizes of the
//! stored (compressed, encrypted) archives (`[stored]`); the words, the counts and the sizes
//! of the backed-up content are compared as they are.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Env, Run, backup_names_out, binary, fixed_modes};

/// The instance id of every snapshot's configuration (the host name otherwise).
const INSTANCE: &str = "instance_id: vm-1\n";

/// Runs the binary with `--log-format human` and `args` in `env`'s folder, without the
/// environment variables that would stand in for missing arguments.
fn run_human(env: &Env, args: &[&str]) -> Run {
    let out = Command::new(binary())
        .args(["--log-format", "human"])
        .args(args)
        .current_dir(env.dir.path())
        .env_remove("SERVICE_BACKUP_CONFIG")
        .env_remove("SERVICE_BACKUP_KEY_FILE")
        .stdin(Stdio::null())
        .output()
        .expect("the binary starts");
    Run::from(out)
}

/// What a person sees of `args` (which must exit with `code`): the command line, the exit
/// code, standard output and standard error, redacted.
fn seen(env: &Env, args: &[&str], code: i32) -> String {
    let run = run_human(env, args);
    run.expect(code);
    let block = |text: &str| {
        if text.trim().is_empty() {
            "(nothing)\n".to_string()
        } else {
            format!("{}\n", text.trim_end())
        }
    };
    let text = format!(
        "$ service-backup {}\nexit {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        run.code,
        block(&run.stdout),
        block(&run.stderr)
    );
    redact(&text, env.dir.path())
}

/// `text` with what varies from run to run replaced (see the module's comment).
fn redact(text: &str, dir: &Path) -> String {
    let mut text = text.replace(&dir.display().to_string(), "[dir]");
    if let Ok(real) = dir.canonicalize() {
        text = text.replace(&real.display().to_string(), "[dir]");
    }
    let text = backup_names_out(&text);
    let text = zone_out(&text);
    let text = stored_out(&text);
    let text = replace_words(&text, &[time, rate, duration, hex, recipient]);
    columns_out(&text)
}

/// Runs of two or more spaces inside a line (the padding of table columns, which changes
/// with the width of what was replaced) made two spaces; indentation stays.
fn columns_out(text: &str) -> String {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let indent = line.len() - line.trim_start_matches(' ').len();
        out.push_str(&line[..indent]);
        let mut spaces = 0;
        for c in line[indent..].chars() {
            if c == ' ' {
                spaces += 1;
                continue;
            }
            out.push_str(match spaces {
                0 => "",
                1 => " ",
                _ => "  ",
            });
            spaces = 0;
            out.push(c);
        }
    }
    out
}

/// The zone name of `time zone NAME:` (the machine's) replaced by `[zone]`.
fn zone_out(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("time zone ") {
        let (head, tail) = rest.split_at(at + "time zone ".len());
        out.push_str(head);
        match tail.find(':') {
            Some(end) if !tail[..end].contains(char::is_whitespace) => {
                out.push_str("[zone]");
                rest = &tail[end..];
            }
            _ => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// The width of `list`'s STORED column.
const STORED_WIDTH: usize = 12;

/// The stored size in `list`'s table (its second size) replaced by `[stored]`: compressed
/// and encrypted, it may differ by a few bytes from run to run.
fn stored_out(text: &str) -> String {
    text.lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            // A list row: NAME DATE TIME SIZE UNIT STORED UNIT DESTINATION.
            if words.len() >= 8
                && words[0] == "[name]"
                && is_unit(words[4])
                && is_unit(words[6])
                && words[5].parse::<f64>().is_ok()
            {
                // The column is 12 wide, right-aligned: replaced whole, padding included.
                let stored = format!("{} {}", words[5], words[6]);
                let at = line.rfind(&stored).expect("the stored size is in its line");
                let start = at - STORED_WIDTH.saturating_sub(stored.len());
                return format!(
                    "{}{:>STORED_WIDTH$}{}",
                    &line[..start],
                    "[stored]",
                    &line[at + stored.len()..]
                );
            }
            line.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn is_unit(word: &str) -> bool {
    matches!(word, "B" | "KiB" | "MiB" | "GiB" | "TiB")
}

/// A matcher: the length of what it recognises at the start of a text, and its placeholder.
type Matcher = fn(&[u8]) -> Option<(usize, &'static str)>;

/// `text` with every match of `matchers` that starts a word (no letter or digit before it)
/// and ends one (none after it) replaced by its placeholder.
fn replace_words(text: &str, matchers: &[Matcher]) -> String {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let found = starts_word
            .then(|| {
                matchers.iter().find_map(|m| {
                    m(&bytes[i..]).filter(|(len, _)| {
                        bytes
                            .get(i + len)
                            .is_none_or(|b| !b.is_ascii_alphanumeric())
                    })
                })
            })
            .flatten();
        if let Some((len, placeholder)) = found {
            out.push_str(placeholder);
            i += len;
        } else {
            let c = text[i..].chars().next().expect("inside the text");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// How many ASCII digits `s` starts with.
fn digits(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// A number with an optional fraction (`7`, `7.2`).
fn number(s: &[u8]) -> Option<usize> {
    let whole = digits(s);
    if whole == 0 {
        return None;
    }
    if s.get(whole) == Some(&b'.') && digits(&s[whole + 1..]) > 0 {
        return Some(whole + 1 + digits(&s[whole + 1..]));
    }
    Some(whole)
}

/// `s` starts with `pattern`, where `9` stands for any digit.
fn shaped(s: &[u8], pattern: &str) -> bool {
    s.len() >= pattern.len()
        && pattern.bytes().zip(s).all(|(p, b)| {
            if p == b'9' {
                b.is_ascii_digit()
            } else {
                p == *b
            }
        })
}

/// `2026-12-06 10:15:00`, `2026-12-06T10:15:00Z`, with fractions or a `+01:00` offset.
fn time(s: &[u8]) -> Option<(usize, &'static str)> {
    if !(shaped(s, "9999-99-99 99:99:99") || shaped(s, "9999-99-99T99:99:99")) {
        return None;
    }
    let mut len = 19;
    if s.get(len) == Some(&b'.') {
        len += 1 + digits(&s[len + 1..]);
    }
    if s.get(len) == Some(&b'Z') {
        len += 1;
    } else if shaped(&s[len..], " +99:99") || shaped(&s[len..], " -99:99") {
        len += 7;
    }
    Some((len, "[time]"))
}

/// `142 MiB/s`, `512 B/s`.
fn rate(s: &[u8]) -> Option<(usize, &'static str)> {
    let n = number(s)?;
    let rest = s.get(n..)?.strip_prefix(b" ")?;
    let unit = ["B/s", "KiB/s", "MiB/s", "GiB/s", "TiB/s"]
        .iter()
        .find(|u| rest.starts_with(u.as_bytes()))?;
    Some((n + 1 + unit.len(), "[rate]"))
}

/// `850 ms`, `7.2 s`, `2 min 05 s`, `1 h 02 min`.
fn duration(s: &[u8]) -> Option<(usize, &'static str)> {
    let n = number(s)?;
    let rest = &s[n..];
    for unit in [" ms", " s"] {
        if rest.starts_with(unit.as_bytes())
            && rest
                .get(unit.len())
                .is_none_or(|b| !b.is_ascii_alphanumeric())
        {
            return Some((n + unit.len(), "[duration]"));
        }
    }
    if shaped(rest, " min 99 s") {
        return Some((n + 9, "[duration]"));
    }
    if shaped(rest, " h 99 min") {
        return Some((n + 9, "[duration]"));
    }
    None
}

/// A lowercase hex word of 16 digits (a key or recipient id) or 64 (a SHA-256).
fn hex(s: &[u8]) -> Option<(usize, &'static str)> {
    let len = s
        .iter()
        .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(*b))
        .count();
    match len {
        16 => Some((16, "[id]")),
        64 => Some((64, "[sha256]")),
        _ => None,
    }
}

/// A recipient string (`sbrec1…`).
fn recipient(s: &[u8]) -> Option<(usize, &'static str)> {
    s.starts_with(b"sbrec1").then(|| {
        let len = s.iter().take_while(|b| b.is_ascii_alphanumeric()).count();
        (len, "[recipient]")
    })
}

/// A working folder as `Env` makes it, with a fixed instance id and fixed modes (the
/// folder, which is the default `state_dir`, the agent's alone).
fn env() -> Env {
    use std::os::unix::fs::PermissionsExt as _;
    let env = Env::new();
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    env.write_config(INSTANCE);
    fixed_modes(&env.path("source"));
    env
}

#[test]
fn the_redactions_replace_what_varies_and_keep_the_rest() {
    let dir = Path::new("/tmp/.tmpAbC");
    let text = "backed up 459 KiB (3 files) in 7.2 s, 142 MiB/s \u{2192} 1 destination: disk\n\
                \x20 backup 20261206T101500Z-vm-1-3f9a1c7e, task 2\n\
                next runs in the VM's time zone Europe/Berlin: 2026-12-06 03:00:00 +01:00\n\
                sha256 6fe0000000000000000000000000000000000000000000000000000000000001 \
                key id f9c92a01ac0a3fda took 2 min 05 s or 850 ms into /tmp/.tmpAbC/t";
    assert_eq!(
        redact(text, dir),
        "backed up 459 KiB (3 files) in [duration], [rate] \u{2192} 1 destination: disk\n\
         \x20 backup [name], task 2\n\
         next runs in the VM's time zone [zone]: [time]\n\
         sha256 [sha256] key id [id] took [duration] or [duration] into [dir]/t\n"
    );
    assert_eq!(
        columns_out("  NAME      SIZE\n  [name]    [duration]  x\n"),
        "  NAME  SIZE\n  [name]  [duration]  x\n"
    );
}

/// A backup, then every command that reads it: list, ls, tasks, restore (whole and
/// `--include`), verify (one and `--all`), decrypt (to a file and into a folder), and a
/// restore that fails.
#[test]
fn backup_then_every_command_that_reads_it() {
    let env = env();
    insta::assert_snapshot!("backup", seen(&env, &["backup", "config.yml"], 0));
    insta::assert_snapshot!("list", seen(&env, &["list", "config.yml"], 0));
    insta::assert_snapshot!("ls", seen(&env, &["ls", "config.yml"], 0));
    insta::assert_snapshot!("ls_path", seen(&env, &["ls", "config.yml", "sub/"], 0));
    insta::assert_snapshot!(
        "restore",
        seen(&env, &["restore", "config.yml", "--target", "restored"], 0)
    );
    insta::assert_snapshot!(
        "restore_include",
        seen(
            &env,
            &[
                "restore",
                "config.yml",
                "--target",
                "part",
                "--include",
                "dump.sql"
            ],
            0
        )
    );
    insta::assert_snapshot!("verify", seen(&env, &["verify", "config.yml"], 0));
    insta::assert_snapshot!(
        "verify_all",
        seen(&env, &["verify", "config.yml", "--all"], 0)
    );
    insta::assert_snapshot!("tasks", seen(&env, &["tasks", "config.yml"], 0));
    let archive = env.archive_of(&env.backup_list()[0]);
    let a = archive.to_str().unwrap();
    insta::assert_snapshot!(
        "verify_file",
        seen(
            &env,
            &["verify", "--file", a, "--key-file", "backup.key"],
            0
        )
    );
    insta::assert_snapshot!(
        "decrypt_output",
        seen(
            &env,
            &[
                "decrypt",
                "--key-file",
                "backup.key",
                "--output",
                "plain.tar.gz",
                a
            ],
            0
        )
    );
    insta::assert_snapshot!(
        "decrypt_extract",
        seen(
            &env,
            &[
                "decrypt",
                "--key-file",
                "backup.key",
                "--extract",
                "unpacked",
                a
            ],
            0
        )
    );
    // Decrypt's refusals: a key that does not open the archive, an output that exists.
    env.run(&["keygen", "--output", "other.key"]).expect(0);
    insta::assert_snapshot!(
        "decrypt_wrong_key",
        seen(
            &env,
            &[
                "decrypt",
                "--key-file",
                "other.key",
                "--output",
                "other.tar.gz",
                a
            ],
            1
        )
    );
    insta::assert_snapshot!(
        "decrypt_output_exists",
        seen(
            &env,
            &[
                "decrypt",
                "--key-file",
                "backup.key",
                "--output",
                "plain.tar.gz",
                a
            ],
            2
        )
    );
    insta::assert_snapshot!(
        "restore_missing_backup",
        seen(
            &env,
            &[
                "restore",
                "config.yml",
                "--backup",
                "20260101T000000Z-nope",
                "--target",
                "nowhere",
            ],
            1
        )
    );
    insta::assert_snapshot!(
        "restore_include_nothing",
        seen(
            &env,
            &[
                "restore",
                "config.yml",
                "--target",
                "nowhere",
                "--include",
                "no/such/file"
            ],
            1
        )
    );
    assert!(
        !env.path("nowhere").exists(),
        "a failed restore wrote its target"
    );
}

/// A restore reads the catalog, then records its task: two openings of the task database,
/// one warning about a `state_dir` that others may read.
#[test]
fn a_warning_is_said_once() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = env();
    env.run(&["backup", "config.yml"]).expect(0);
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let restore = seen(&env, &["restore", "config.yml", "--target", "restored"], 0);
    assert_eq!(
        restore
            .matches("state_dir may be read by other users")
            .count(),
        1,
        "{restore}"
    );
    insta::assert_snapshot!("restore_state_dir_warning", restore);
}

#[test]
fn prune_and_its_dry_run() {
    let env = env();
    // Names hold the second they were made in: one second apart, the newest is known.
    env.run(&["backup", "config.yml"]).expect(0);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.run(&["backup", "config.yml"]).expect(0);
    // Set afterwards: a backup applies the retention itself once it is stored.
    env.write_config(&format!("{INSTANCE}retention:\n  keep_last: 1\n"));
    insta::assert_snapshot!(
        "prune_dry_run",
        seen(&env, &["prune", "config.yml", "--dry-run"], 0)
    );
    insta::assert_snapshot!("prune", seen(&env, &["prune", "config.yml"], 0));
    assert_eq!(env.backup_list().len(), 1);
}

#[test]
fn a_failed_and_a_disabled_backup() {
    let env = env();
    env.write_config(&format!("{INSTANCE}source_executable: /bin/false\n"));
    insta::assert_snapshot!("backup_failed", seen(&env, &["backup", "config.yml"], 1));
    insta::assert_snapshot!("list_empty", seen(&env, &["list", "config.yml"], 0));
    std::fs::write(env.path("config.yml"), "destinations: []\n").unwrap();
    insta::assert_snapshot!("backup_disabled", seen(&env, &["backup", "config.yml"], 0));
}

#[test]
fn validate_check_and_usage_errors() {
    let env = env();
    insta::assert_snapshot!("validate", seen(&env, &["validate", "config.yml"], 0));
    insta::assert_snapshot!("check", seen(&env, &["check", "config.yml"], 0));
    std::fs::write(
        env.path("config.yml"),
        "destinations:\n- type: local\n  config: {}\ncron_schedule: nope\n",
    )
    .unwrap();
    insta::assert_snapshot!(
        "validate_invalid",
        seen(&env, &["validate", "config.yml"], 2)
    );
    insta::assert_snapshot!("check_invalid", seen(&env, &["check", "config.yml"], 2));
    insta::assert_snapshot!("usage_missing_config", seen(&env, &["backup"], 2));
    insta::assert_snapshot!(
        "usage_unknown_option",
        seen(&env, &["validate", "config.yml", "--bogus"], 2)
    );
    insta::assert_snapshot!("usage_typo", seen(&env, &["lst", "config.yml"], 2));
}

#[test]
fn keygen_its_key_its_file_and_its_refusal() {
    let env = env();
    let out = run_human(&env, &["keygen"]);
    out.expect(0);
    let key = out.stdout.trim();
    assert_eq!(key.len(), 44, "{}", out.stdout);
    insta::assert_snapshot!(
        "keygen",
        redact(
            &format!(
                "stdout: {}\nstderr: {}",
                out.stdout.replace(key, "[key]"),
                out.stderr
            ),
            env.dir.path()
        )
    );
    insta::assert_snapshot!(
        "keygen_output",
        seen(&env, &["keygen", "--output", "new.key"], 0)
    );
    insta::assert_snapshot!(
        "keygen_recipient",
        seen(&env, &["keygen", "--recipient", "id.txt"], 0)
    );
    insta::assert_snapshot!(
        "keygen_exists",
        seen(&env, &["keygen", "--output", "new.key"], 2)
    );
}

/// The `list --json` items of `env`.
trait Listed {
    fn backup_list(&self) -> Vec<serde_json::Value>;
}

impl Listed for Env {
    fn backup_list(&self) -> Vec<serde_json::Value> {
        let list = self.run(&["list", "config.yml", "--json"]);
        list.expect(0);
        serde_json::from_str(&list.stdout).unwrap()
    }
}
