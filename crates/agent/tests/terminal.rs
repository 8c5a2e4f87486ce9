//! The commands as a person sees them on a terminal (issue 27, parts 1 and 5; issue 26,
//! part 5): each runs inside tmux, whose screen the test reads (`capture-pane`): one
//! progress line with an honest ETA, no JSON, each error once, a closing summary. Off a
//! terminal the lager JSON lines stay (the other test files assert them), and the text
//! log format escapes what a file name could inject.

mod common;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Env, binary};

/// A tmux server of its own (its own socket), killed when dropped; one session running a
/// shell line in a 200×50 window.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `line` (a shell line, run in `dir`) in a new detached session.
    fn start(dir: &Path, line: &str) -> Self {
        let socket = common::unique("sb-terminal");
        let this = Self { socket };
        let started = this
            .command()
            .args(["new-session", "-d", "-x", "200", "-y", "50", "-c"])
            .arg(dir)
            .arg(format!("{line}; echo EXIT=$?; sleep 600"))
            .status()
            .expect("tmux is needed: run the tests through tests/run.sh, which installs it");
        assert!(started.success(), "tmux new-session failed");
        this
    }

    fn command(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    /// The screen's non-empty lines, trailing spaces removed.
    fn screen(&self) -> Vec<String> {
        let out = self
            .command()
            .args(["capture-pane", "-p"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_end().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Every non-empty line of the pane's history and screen, wrapped lines joined,
    /// trailing spaces removed.
    fn scrollback(&self) -> Vec<String> {
        let out = self
            .command()
            .args(["capture-pane", "-p", "-J", "-S", "-"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_end().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Waits until the command has ended (`EXIT=` shows), returning the screen.
    fn wait_for_exit(&self, limit: Duration) -> Vec<String> {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.iter().any(|l| l.starts_with("EXIT=")) {
                return screen;
            }
            assert!(
                start.elapsed() < limit,
                "no exit after {limit:?}: {screen:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").status();
    }
}

/// The shell line running the binary with `args` (each quoted).
fn line_of(args: &[&str]) -> String {
    let mut line = format!("'{}'", binary().display());
    for a in args {
        let _ = write!(line, " '{a}'");
    }
    line
}

/// Whether a screen line is a lager JSON line (or the start of one, wrapped).
fn is_json(line: &str) -> bool {
    line.trim_start().starts_with('{') || line.contains("\"log_level\"")
}

/// `16` files of 64 MiB of pseudo-random bytes (1 GiB), written a MiB at a time.
fn gibibyte_of_files(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut chunk = vec![0u8; 1 << 20];
    for i in 0..16 {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(dir.join(format!("part-{i:02}.bin"))).unwrap(),
        );
        for _ in 0..64 {
            for word in chunk.chunks_exact_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes());
            }
            f.write_all(&chunk).unwrap();
        }
    }
}

/// Seconds of an ETA as the bar shows it (`4 s`, `1 min 05 s`, `1 h 02 min`).
fn eta_seconds(text: &str) -> Option<f64> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut secs = 0.0;
    for pair in words.chunks(2) {
        let [n, unit] = pair else { return None };
        let n: f64 = n.parse().ok()?;
        secs += n * match *unit {
            "s" => 1.0,
            "min" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
    }
    Some(secs)
}

/// What one look at the bar showed: when, the percentage, the ETA text after `ETA `.
struct Look {
    at: Instant,
    percent: u32,
    eta: Option<String>,
}

/// The bar line's percentage and ETA (`… 48%  142 MiB/s  ETA 4 s  elapsed 3.6 s`).
fn read_bar(line: &str) -> Option<(u32, Option<String>)> {
    let percent = line
        .split_whitespace()
        .find_map(|w| w.strip_suffix('%')?.parse().ok())?;
    let eta = line
        .split_once("ETA ")
        .map(|(_, rest)| rest.split("  ").next().unwrap_or("").to_string());
    Some((percent, eta))
}

/// The issue's terminal test: a 1 GiB backup inside tmux shows one progress line and no
/// JSON, an ETA at the halfway point within a factor of 3 of the time that was really
/// left, and ends with the summary, the bar cleared.
#[test]
fn a_backup_on_a_terminal_shows_one_bar_an_honest_eta_and_a_summary() {
    let env = Env::new();
    std::fs::remove_dir_all(env.path("source")).unwrap();
    gibibyte_of_files(&env.path("source"));
    let tmux = Tmux::start(env.dir.path(), &line_of(&["backup", "config.yml"]));
    let mut looks = Vec::new();
    let limit = Duration::from_mins(5);
    let start = Instant::now();
    let (ended, last) = loop {
        let screen = tmux.screen();
        let now = Instant::now();
        let json: Vec<&String> = screen.iter().filter(|l| is_json(l)).collect();
        assert!(json.is_empty(), "JSON on a terminal: {screen:#?}");
        let bars: Vec<&String> = screen.iter().filter(|l| l.starts_with("backup ")).collect();
        assert!(bars.len() <= 1, "more than one progress line: {screen:#?}");
        if let Some((percent, eta)) = bars.first().and_then(|l| read_bar(l)) {
            looks.push(Look {
                at: now,
                percent,
                eta,
            });
        }
        if screen.iter().any(|l| l.starts_with("backed up ")) {
            break (now, screen);
        }
        assert!(
            start.elapsed() < limit,
            "no summary after {limit:?}: {screen:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let screen = tmux.wait_for_exit(Duration::from_secs(30));
    assert!(screen.iter().any(|l| l == "EXIT=0"), "{screen:#?}");
    // The bar is cleared: nothing of it stays behind the summary.
    assert!(
        !screen.iter().any(|l| l.starts_with("backup [")),
        "a stale bar: {screen:#?}"
    );
    let summary = last.iter().find(|l| l.starts_with("backed up ")).unwrap();
    assert!(
        summary.starts_with("backed up 1.0 GiB (16 files) in ")
            && summary.contains(" MiB/s \u{2192} 1 destination: disk"),
        "{summary}"
    );
    assert!(
        screen
            .iter()
            .any(|l| l.trim_start().starts_with("backup 20")),
        "{screen:#?}"
    );
    // At the halfway point the ETA is known and within a factor of 3 of what was left.
    let half = looks
        .iter()
        .find(|l| l.percent >= 50)
        .unwrap_or_else(|| panic!("no look at the bar past 50 %: {} looks", looks.len()));
    let eta_text = half.eta.as_deref().unwrap_or("");
    let eta = eta_seconds(eta_text)
        .unwrap_or_else(|| panic!("no ETA at {} %: {eta_text:?}", half.percent));
    let real = ended.duration_since(half.at).as_secs_f64();
    eprintln!(
        "at {} %: ETA {eta} s, {real:.1} s really left ({} looks)",
        half.percent,
        looks.len()
    );
    assert!(
        eta <= real * 3.0 + 1.0 && eta >= real / 3.0 - 1.0,
        "ETA {eta} s at {} %, {real:.1} s were really left",
        half.percent
    );
}

/// A failed restore with one destination says its error once: not the log line, then
/// "trying the next destination", then `error: …` with the same sentence.
#[test]
fn a_failed_restore_on_a_terminal_says_its_error_once() {
    let env = Env::new();
    let tmux = Tmux::start(
        env.dir.path(),
        &line_of(&[
            "restore",
            "config.yml",
            "--backup",
            "20260101T000000Z-nope",
            "--target",
            "restored",
        ]),
    );
    let screen = tmux.wait_for_exit(Duration::from_mins(1));
    let text = screen.join("\n");
    assert!(screen.iter().any(|l| l == "EXIT=1"), "{text}");
    assert_eq!(
        text.matches("there is no complete backup named 20260101T000000Z-nope")
            .count(),
        1,
        "{text}"
    );
    assert!(
        screen
            .iter()
            .any(|l| l.starts_with("error: there is no complete backup named")),
        "{text}"
    );
    assert!(!screen.iter().any(|l| is_json(l)), "{text}");
    assert!(!text.contains("trying the next destination"), "{text}");
}

/// `--log-format json` on a terminal keeps the lager lines (and draws no bar); `-v` adds
/// the info lines a person does not see by default.
#[test]
fn json_on_a_terminal_when_asked_and_v_shows_info_lines() {
    let env = Env::new();
    let tmux = Tmux::start(
        env.dir.path(),
        &line_of(&["backup", "config.yml", "--log-format", "json"]),
    );
    let screen = tmux.wait_for_exit(Duration::from_mins(1));
    assert!(screen.iter().any(|l| l == "EXIT=0"), "{screen:#?}");
    assert!(
        screen
            .iter()
            .any(|l| l.contains(r#""message":"ServiceBackup.Upload backup started""#)),
        "{screen:#?}"
    );
    assert!(
        !screen.iter().any(|l| l.starts_with("backed up ")),
        "{screen:#?}"
    );

    let tmux = Tmux::start(env.dir.path(), &line_of(&["-v", "backup", "config.yml"]));
    let screen = tmux.wait_for_exit(Duration::from_mins(1));
    assert!(screen.iter().any(|l| l == "EXIT=0"), "{screen:#?}");
    assert!(
        screen
            .iter()
            .any(|l| l.contains("INFO  Upload backup started ")
                && l.contains(" destination_name=disk")),
        "{screen:#?}"
    );
    assert!(!screen.iter().any(|l| is_json(l)), "{screen:#?}");
}

/// Off a terminal, `--log-format text` lines escape a file name holding a newline and an
/// ANSI escape: no forged line, no raw escape character; times are UTC with the zone.
#[test]
fn text_lines_escape_what_a_file_name_could_inject() {
    let env = Env::new();
    let name = "evil\n2026-01-01T00:00:00.000Z ERROR forged\u{1b}[2J";
    let fifo = env.path("source").join(name);
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let out = env.run(&["backup", "config.yml", "--log-format", "text"]);
    out.expect(0);
    assert!(!out.stdout.contains('\u{1b}'), "{:?}", out.stdout);
    assert!(
        !out.stdout.lines().any(|l| l.starts_with("2026-01-01")),
        "a forged line: {}",
        out.stdout
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("skipping a special file"))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        line.contains(r"evil\n2026-01-01T00:00:00.000Z ERROR forged\u{1b}[2J"),
        "{line}"
    );
    let stamp = line.split(' ').next().unwrap();
    assert!(stamp.ends_with('Z'), "{line}");
    chrono::DateTime::parse_from_rfc3339(stamp).unwrap();
    // Off a terminal without --log-format: lager JSON, as before.
    let out = env.run(&["backup", "config.yml"]);
    out.expect(0);
    assert!(
        out.stdout.lines().all(|l| l.starts_with('{')),
        "{}",
        out.stdout
    );
}

/// The sections of a scrollback written by [`FIRST_STEPS`]: each command line (after
/// `==> `), its lines, and its exit code (from `<== exit N`).
fn sections(lines: &[String]) -> Vec<(String, Vec<String>, Option<i32>)> {
    let mut out: Vec<(String, Vec<String>, Option<i32>)> = Vec::new();
    for line in lines {
        if let Some(command) = line.strip_prefix("==> ") {
            out.push((command.to_string(), Vec::new(), None));
        } else if let Some(code) = line.strip_prefix("<== exit ") {
            if let Some(last) = out.last_mut() {
                last.2 = code.trim().parse().ok();
            }
        } else if let Some(last) = out.last_mut() {
            last.1.push(line.clone());
        }
    }
    out
}

/// The raw byte counts of `line`: a number of 4 to 15 digits standing alone (no letter,
/// digit, `.`, `,`, `:`, `-`, `/`, `_` or `+` touching it, so not part of a time, a name,
/// an id or a human size such as `1.0 KiB`) that is not followed by ` B` (a human size
/// under 1 KiB is `1023 B`). The runs of the first steps make far fewer than 1,000 files
/// and tasks, so such a number on their screen is a size in bytes; a key id (16 hex
/// digits, which may all be decimal ones) and a SHA-256 are longer than 15 digits.
fn raw_byte_counts(line: &str) -> Vec<String> {
    let bytes = line.as_bytes();
    let touches = |b: u8| b.is_ascii_alphanumeric() || b".,:-/_+".contains(&b);
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let alone =
            (start == 0 || !touches(bytes[start - 1])) && (i == bytes.len() || !touches(bytes[i]));
        let human = line[i..].starts_with(" B") && !line[i..].starts_with(" By");
        if alone && (4..=15).contains(&(i - start)) && !human {
            found.push(line[start..i].to_string());
        }
    }
    found
}

#[test]
fn raw_byte_counts_are_found_and_human_sizes_are_not() {
    assert_eq!(
        raw_byte_counts("restored 4 entries (2310 bytes) into /tmp/back"),
        ["2310"]
    );
    assert_eq!(
        raw_byte_counts("(7 files, 2250086 bytes \u{2192} 15566 stored, key id 1234567890123456)"),
        ["2250086", "15566"]
    );
    assert_eq!(
        raw_byte_counts("NAME  2026-11-22 02:59:58      2.1 MiB   1023 B  disk"),
        Vec::<String>::new()
    );
    assert_eq!(
        raw_byte_counts("backup 20261206T101500Z-vm-40356712, task 2, 1.0 GiB in 7.2 s, 142 MiB/s"),
        Vec::<String>::new()
    );
}

/// The first steps of a new operator, as the README's "Two commands" and "Commands" give
/// them: the demo, then with its configuration a backup, list, ls, restore (whole and one
/// file), verify (one and all) and tasks; the later ones take the configuration from
/// `SERVICE_BACKUP_CONFIG`, as a shell profile would set it.
const FIRST_STEPS: &str = r#"
step() { echo "==> $*"; "$BIN" "$@"; echo "<== exit $?"; }
step demo
step backup service-backup-demo/config.yml
step list service-backup-demo/config.yml
step ls service-backup-demo/config.yml
step restore service-backup-demo/config.yml --target first-restore
export SERVICE_BACKUP_CONFIG=service-backup-demo/config.yml
step restore --target one-file --include meta/instance.json
step ls meta
step verify
step verify --all
step tasks
echo FIRST-STEPS-DONE
"#;

/// "Done means: a new operator's first steps, run as a test (the README's demo, then
/// backup, list, ls, restore, verify on a terminal), shows no JSON, no doubled message and
/// no raw byte count." Run in tmux, read from its whole scrollback: every command exits 0;
/// no line is JSON; no line appears twice within one command's output, nor does an error's
/// or a warning's sentence appear again in another line; no raw byte count
/// ([`raw_byte_counts`]); and each command's summary is there.
#[test]
fn a_new_operators_first_steps_show_no_json_no_doubled_message_and_no_raw_byte_count() {
    let env = Env::new();
    std::fs::write(env.path("first-steps.sh"), FIRST_STEPS).unwrap();
    let tmux = Tmux::start(
        env.dir.path(),
        &format!("BIN='{}' bash first-steps.sh", binary().display()),
    );
    let start = Instant::now();
    let lines = loop {
        let lines = tmux.scrollback();
        if lines.iter().any(|l| l == "FIRST-STEPS-DONE") {
            break lines;
        }
        assert!(
            start.elapsed() < Duration::from_mins(3),
            "the first steps did not end: {lines:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = lines.join("\n");
    eprintln!("{text}");
    let sections = sections(&lines);
    assert_eq!(sections.len(), 10, "{text}");
    for (command, output, code) in &sections {
        assert_eq!(*code, Some(0), "{command}:\n{}", output.join("\n"));
        for line in output {
            assert!(!is_json(line), "JSON from {command}: {line}");
            let raw = raw_byte_counts(line);
            assert!(
                raw.is_empty(),
                "raw byte count {raw:?} from {command}: {line}"
            );
        }
        let mut seen = std::collections::HashSet::new();
        for line in output.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
            assert!(seen.insert(line), "{command} says twice: {line}\n{text}");
        }
        for line in output {
            let Some(sentence) = line
                .strip_prefix("error: ")
                .or_else(|| line.strip_prefix("warning: "))
            else {
                continue;
            };
            let again = output.iter().filter(|l| l.contains(sentence)).count();
            assert_eq!(again, 1, "{command} says twice: {sentence}\n{text}");
        }
    }
    // Each command's summary.
    let has = |i: usize, prefix: &str| {
        assert!(
            sections[i]
                .1
                .iter()
                .any(|l| l.trim_start().starts_with(prefix)),
            "{} has no line starting with {prefix:?}:\n{}",
            sections[i].0,
            sections[i].1.join("\n")
        );
    };
    has(
        0,
        "6. compared       restored folder is identical to the source",
    );
    has(1, "backed up ");
    has(2, "NAME ");
    has(2, "20");
    has(3, "-rw");
    has(3, "lrwxrwxrwx");
    has(4, "restored backup ");
    has(5, "restored backup ");
    has(5, "fetched ");
    has(6, "-rw");
    has(7, "backup ");
    has(8, "verified 2 backup(s): 2 valid, 0 failed");
    has(9, "ID ");
    let demo_size = &sections[0].1;
    assert!(
        demo_size
            .iter()
            .any(|l| l.contains(" MiB \u{2192} ") && l.contains(" KiB stored")),
        "{}",
        demo_size.join("\n")
    );
}
