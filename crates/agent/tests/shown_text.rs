//! What a person reads (`ls` rows, the `error:` line, the `tasks`, `list` and `prune`
//! tables) stays one line per row with no control, ANSI or bidi character, whatever names,
//! messages and manifests the data service or the store hold; JSON output stays exact.

mod common;

use std::path::{Path, PathBuf};

use common::Env;

/// Fails when `text` holds a character that drives a terminal or reorders what is shown,
/// other than the newlines that end its lines.
fn assert_clean(what: &str, text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    assert!(bad.is_empty(), "{what} shows {bad:?} raw:\n{text}");
}

#[test]
fn ls_rows_escape_names_and_link_targets() {
    let env = Env::new();
    let src = env.path("source");
    let names = [
        "evil\u{1b}]0;PWNED-TITLE\u{7}\u{1b}[2J\u{1b}[31mred",
        "cr\rOVERWRITTEN",
        "nl\n-rw-r--r--     1.0 GiB  2026-12-06 10:00:00  FORGED-shadow",
        "bidi\u{202e}txt.exe",
        "back\\nslash",
    ];
    for name in names {
        std::fs::write(src.join(name), b"x").unwrap();
    }
    std::os::unix::fs::symlink("\u{1b}[2Jlinktarget", src.join("lnk")).unwrap();
    env.backup();

    let json = env.run(&["ls", "config.yml", "--json"]);
    json.expect(0);
    let entries: Vec<serde_json::Value> = serde_json::from_str(&json.stdout).unwrap();
    let paths: Vec<&str> = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    for name in names {
        assert!(
            paths.contains(&name),
            "--json keeps {name:?} exact: {paths:?}"
        );
    }
    let lnk = entries.iter().find(|e| e["path"] == "lnk").unwrap();
    assert_eq!(lnk["link_target"], "\u{1b}[2Jlinktarget");

    let out = env.run(&["ls", "config.yml"]);
    out.expect(0);
    assert_clean("ls", &out.stdout);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        entries.len(),
        "one row per entry:\n{}",
        out.stdout
    );
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with(['-', 'd', 'l', 'h', 'c', 'b', 'p'])),
        "every row starts with a type:\n{}",
        out.stdout
    );
    for shown in [
        r"  evil\u{1b}]0;PWNED-TITLE\u{7}\u{1b}[2J\u{1b}[31mred",
        r"  cr\rOVERWRITTEN",
        r"  nl\n-rw-r--r--     1.0 GiB  2026-12-06 10:00:00  FORGED-shadow",
        r"  bidi\u{202e}txt.exe",
        r"  back\\nslash",
        r"  lnk -> \u{1b}[2Jlinktarget",
    ] {
        assert!(
            lines.iter().any(|l| l.ends_with(shown)),
            "{shown} not a row of:\n{}",
            out.stdout
        );
    }

    // A pattern that picks the newline name shows it as one row.
    let out = env.run(&["ls", "config.yml", "*FORGED*"]);
    out.expect(0);
    assert_clean("ls with a pattern", &out.stdout);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
}

/// A source folder whose name holds ESC, CR, LF (with a forged `error:` line) and U+202E.
const HOSTILE: &str = "\u{1b}[31mX\r\nerror: FORGED\u{202e}";

#[test]
fn an_error_message_is_one_escaped_error_line_and_one_tasks_row() {
    let env = Env::new();
    let d = env.dir.path().display();
    // YAML double quotes carry the characters into the path.
    std::fs::write(
        env.path("config.yml"),
        format!(
            "destinations:\n- type: local\n  name: disk\n  config:\n    path: {d}/backups\n\
             source_folder: \"{d}/gone\\e[31mX\\r\\nerror: FORGED\\u202e\"\n\
             cron_schedule: \"*/5 * * * *\"\nencryption:\n  key_file: {d}/backup.key\n"
        ),
    )
    .unwrap();
    for format in ["human", "text"] {
        let out = env.run(&["backup", "config.yml", "--log-format", format]);
        out.expect(1);
        assert_clean(&format!("backup --log-format {format}"), &out.all());
        let errors: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "one error line:\n{}", out.stderr);
        assert!(
            errors[0].contains(r"gone\u{1b}[31mX\r\nerror: FORGED\u{202e}"),
            "{}",
            errors[0]
        );
    }

    let out = env.run(&["tasks", "config.yml"]);
    out.expect(0);
    assert_clean("tasks", &out.stdout);
    let rows: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(rows.len(), 3, "a header and two rows:\n{}", out.stdout);
    assert!(
        rows[1..]
            .iter()
            .all(|r| r.contains(" failed ") && r.contains(r"gone\u{1b}[31mX\r\nerror: FORGED")),
        "{}",
        out.stdout
    );
    // The JSON keeps the reason exact.
    let json = env.run(&["tasks", "config.yml", "--json"]);
    json.expect(0);
    let tasks: Vec<serde_json::Value> = serde_json::from_str(&json.stdout).unwrap();
    assert!(
        tasks
            .iter()
            .all(|t| t["reason"].as_str().unwrap().contains(HOSTILE)),
        "{tasks:?}"
    );
}

/// Every file below `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn list_and_prune_rows_escape_a_planted_instance_id() {
    let env = Env::new();
    env.write_config("retention: {keep_last: 2}\n");
    env.backup();
    // Someone who can write to the destination plants a manifest of "another instance".
    let manifest = files(&env.path("backups"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    // Its name carries the instance part of the id it claims, as the agent writes names
    // (a manifest whose id is not its name's is not that backup, and is skipped).
    let id = "evil\u{1b}]0;PWNED\u{7}\u{1b}[2J\rFORGED\nline\u{202e}";
    let planted = &format!(
        "20261201T000000Z-{}-11111111",
        service_backup_core::layout::instance_part(id)
    );
    let archive = m["archive"].as_str().unwrap().to_string();
    let ext = &archive[archive.find(".tar").unwrap()..];
    let dir = manifest.parent().unwrap();
    std::fs::copy(dir.join(&archive), dir.join(format!("{planted}{ext}"))).unwrap();
    m["name"] = planted.as_str().into();
    m["archive"] = format!("{planted}{ext}").into();
    m["instance_id"] = id.into();
    std::fs::write(dir.join(format!("{planted}.json")), m.to_string()).unwrap();

    let out = env.run(&["list", "config.yml", "--all-instances", "--refresh"]);
    out.expect(0);
    assert_clean("list --all-instances", &out.stdout);
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with(planted))
        .unwrap_or_else(|| panic!("no row for {planted}:\n{}", out.stdout));
    assert!(
        row.ends_with(r"  evil\u{1b}]0;PWNED\u{7}\u{1b}[2J\rFORGED\nline\u{202e}"),
        "{row}"
    );
    assert_eq!(
        out.stdout.lines().count(),
        3,
        "a header and two rows:\n{}",
        out.stdout
    );

    let out = env.run(&["prune", "config.yml", "--dry-run", "--all-instances"]);
    out.expect(0);
    assert_clean("prune --dry-run --all-instances", &out.stdout);
    // The JSON log lines on stderr are exact JSON; the lines for a person are escaped.
    for line in out.stderr.lines().filter(|l| !l.starts_with('{')) {
        assert_clean("prune's stderr", line);
    }
    assert!(
        out.stdout.contains(r"evil\u{1b}]0;PWNED"),
        "the planted backup is shown:\n{}",
        out.stdout
    );
}
