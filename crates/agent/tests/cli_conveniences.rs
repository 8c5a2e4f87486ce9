//! Conveniences people expect from restic (issue 27, part 4): the configuration and the key
//! file from the environment, `tasks --limit`, a quiet end on a closed pipe, and `keygen`'s
//! refusal naming the file.

mod common;

use std::io::Read as _;
use std::process::{Command, Stdio};

use common::{Env, Run, binary};

/// Runs the binary in the env's folder with `vars` set (and the two variables cleared
/// otherwise, so that the test's own environment cannot leak in).
fn run_with(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let mut command = Command::new(binary());
    command
        .args(args)
        .current_dir(env.dir.path())
        .env_remove("SERVICE_BACKUP_CONFIG")
        .env_remove("SERVICE_BACKUP_KEY_FILE")
        .stdin(Stdio::null());
    for (name, value) in vars {
        command.env(name, value);
    }
    Run::from(command.output().unwrap())
}

#[test]
fn the_configuration_comes_from_the_environment_when_no_argument_names_it() {
    let env = Env::new();
    let from_env = [("SERVICE_BACKUP_CONFIG", "config.yml")];
    run_with(&env, &["validate"], &from_env).expect(0);
    run_with(&env, &["backup"], &from_env).expect(0);
    let listed = run_with(&env, &["list", "--json"], &from_env);
    listed.expect(0);
    let items: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(items.len(), 1, "{}", listed.stdout);
    run_with(&env, &["verify"], &from_env).expect(0);
    run_with(&env, &["tasks"], &from_env).expect(0);

    // The argument wins over the environment.
    let elsewhere = [("SERVICE_BACKUP_CONFIG", "no-such.yml")];
    run_with(&env, &["validate", "config.yml"], &elsewhere).expect(0);
    let wrong = run_with(&env, &["validate"], &elsewhere);
    wrong.expect(2);
    assert!(wrong.stderr.contains("no-such.yml"), "{}", wrong.stderr);

    // Neither: the usage error names both ways.
    let neither = run_with(&env, &["list"], &[]);
    neither.expect(2);
    assert!(
        neither.stderr.contains("<CONFIG>") && neither.stderr.contains("SERVICE_BACKUP_CONFIG"),
        "{}",
        neither.stderr
    );
    assert!(neither.stdout.is_empty(), "{}", neither.stdout);

    // `--help` shows the variable.
    let help = run_with(&env, &["list", "--help"], &[]);
    help.expect(0);
    assert!(
        help.stdout.contains("[env: SERVICE_BACKUP_CONFIG=]"),
        "{}",
        help.stdout
    );
}

#[test]
fn the_key_file_comes_from_the_environment_when_no_key_file_is_given() {
    let env = Env::new();
    let item = env.backup();
    let archive = env.archive_of(&item);
    let archive = archive.to_str().unwrap();
    let key = [("SERVICE_BACKUP_KEY_FILE", "backup.key")];

    run_with(
        &env,
        &["decrypt", "--output", "plain.tar.gz", archive],
        &key,
    )
    .expect(0);
    let plain = std::fs::read(env.path("plain.tar.gz")).unwrap();
    assert_eq!(&plain[..2], &[0x1f, 0x8b], "a gzip stream");

    run_with(
        &env,
        &["restore", "--file", archive, "--target", "restored"],
        &key,
    )
    .expect(0);
    assert!(env.path("restored").read_dir().unwrap().next().is_some());

    // Neither: the usage error names both ways, and nothing is written.
    let neither = run_with(&env, &["decrypt", "--output", "other.tar.gz", archive], &[]);
    neither.expect(2);
    assert!(
        neither.stderr.contains("--key-file") && neither.stderr.contains("SERVICE_BACKUP_KEY_FILE"),
        "{}",
        neither.stderr
    );
    assert!(!env.path("other.tar.gz").exists());

    let help = run_with(&env, &["decrypt", "--help"], &[]);
    assert!(
        help.stdout.contains("[env: SERVICE_BACKUP_KEY_FILE=]"),
        "{}",
        help.stdout
    );
}

#[test]
fn tasks_limit_shows_the_newest_tasks_oldest_first() {
    let env = Env::new();
    for _ in 0..3 {
        env.run(&["backup", "config.yml"]).expect(0);
    }
    let ids = |out: &Run| -> Vec<i64> {
        out.expect(0);
        let items: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
        items.iter().map(|t| t["id"].as_i64().unwrap()).collect()
    };
    let every = ids(&env.run(&["tasks", "config.yml", "--json"]));
    assert_eq!(every.len(), 3, "{every:?}");
    assert!(
        every.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {every:?}"
    );
    let two = ids(&env.run(&["tasks", "config.yml", "--json", "--limit", "2"]));
    assert_eq!(two, every[1..], "the two newest");

    let table = env.run(&["tasks", "config.yml", "--limit", "1"]);
    table.expect(0);
    assert_eq!(
        table.stdout.lines().count(),
        2,
        "a header and one task:\n{}",
        table.stdout
    );
    assert!(
        table
            .stdout
            .lines()
            .nth(1)
            .unwrap()
            .trim_start()
            .starts_with(&every[2].to_string()),
        "{}",
        table.stdout
    );

    let help = env.run(&["tasks", "--help"]);
    assert!(help.stdout.contains("oldest first"), "{}", help.stdout);
}

#[test]
fn decrypt_into_a_pipe_closed_early_ends_quietly() {
    let env = Env::new();
    // Incompressible, so that the plain archive is far larger than a pipe's buffer.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..4_000_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[3]
        })
        .collect();
    std::fs::write(env.path("source/noise.bin"), noise).unwrap();
    let item = env.backup();
    let mut child = common::piped(env.dir.path())
        .args(["decrypt", "--key-file", "backup.key"])
        .arg(env.archive_of(&item))
        .spawn()
        .unwrap();
    // What `head -c 10` does: read a little, then close the pipe.
    let mut first = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = Run::from(child.wait_with_output().unwrap());
    out.expect(0);
    assert_eq!(&first[..2], &[0x1f, 0x8b]);
    assert!(!out.stderr.contains("error"), "{}", out.stderr);
}

#[test]
fn keygen_onto_an_existing_file_names_it_and_leaves_it_alone() {
    let env = Env::new();
    let before = std::fs::read(env.path("backup.key")).unwrap();
    for args in [
        ["keygen", "--output", "backup.key"],
        ["keygen", "--recipient", "backup.key"],
    ] {
        let out = env.run(&args);
        out.expect(2);
        assert!(
            out.stderr.contains("error: backup.key already exists"),
            "{}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{}", out.stdout);
        assert_eq!(std::fs::read(env.path("backup.key")).unwrap(), before);
    }
}

#[test]
fn verify_all_checks_every_backup_on_every_destination_and_sums_up() {
    let env = Env::new();
    let d = env.dir.path().display();
    std::fs::write(
        env.path("config.yml"),
        format!(
            "destinations:\n\
             - {{type: local, name: disk, config: {{path: {d}/backups}}}}\n\
             - {{type: local, name: spare, config: {{path: {d}/spare}}}}\n\
             source_folder: {d}/source\ncron_schedule: \"*/5 * * * *\"\n\
             encryption:\n  key_file: {d}/backup.key\n"
        ),
    )
    .unwrap();
    env.run(&["backup", "config.yml"]).expect(0);
    let newest = env.backup();

    let good = env.run(&["verify", "config.yml", "--all"]);
    good.expect(0);
    assert_eq!(
        good.stdout.matches(" is valid: ").count(),
        4,
        "{}",
        good.stdout
    );
    assert!(
        good.stdout.contains(&format!(
            "backup {} in spare is valid",
            newest["name"].as_str().unwrap()
        )),
        "{}",
        good.stdout
    );
    assert!(
        good.stdout.contains(
            "verified 4 backup(s): 4 valid, 0 failed (disk: 2 valid, 0 failed; spare: 2 valid, 0 failed)"
        ),
        "{}",
        good.stdout
    );

    // One damaged copy: named with its destination, counted, exit 1; the others still checked.
    let damaged = env.path("spare").join(newest["key"].as_str().unwrap());
    let mut bytes = std::fs::read(&damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&damaged, bytes).unwrap();
    let bad = env.run(&["verify", "config.yml", "--all"]);
    bad.expect(1);
    let name = newest["name"].as_str().unwrap();
    assert!(
        bad.stderr
            .contains(&format!("error: backup {name} in spare: ")),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stdout.contains(
            "verified 4 backup(s): 3 valid, 1 failed (disk: 2 valid, 0 failed; spare: 1 valid, 1 failed)"
        ),
        "{}",
        bad.stdout
    );

    // Only one destination.
    let one = env.run(&["verify", "config.yml", "--all", "--destination", "disk"]);
    one.expect(0);
    assert!(
        one.stdout
            .contains("verified 2 backup(s): 2 valid, 0 failed (disk: 2 valid, 0 failed)"),
        "{}",
        one.stdout
    );

    // --all names no one backup.
    let both = env.run(&["verify", "config.yml", "--all", "--backup", name]);
    both.expect(2);
    assert!(both.stderr.contains("--all"), "{}", both.stderr);
}

#[test]
fn commands_printing_into_a_closed_pipe_end_quietly() {
    let env = Env::new();
    env.run(&["backup", "config.yml"]).expect(0);
    for args in [
        &["keygen"][..],
        &["list", "config.yml", "--json"],
        &["tasks", "config.yml"],
    ] {
        let mut child = common::piped(env.dir.path()).args(args).spawn().unwrap();
        // The reader is gone before the first line is printed.
        drop(child.stdout.take());
        let out = Run::from(child.wait_with_output().unwrap());
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("error"), "{args:?}: {}", out.stderr);
    }
}
