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
