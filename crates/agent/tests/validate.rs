//! `validate` and configuration errors through the real binary.

mod common;

use common::{Env, config_fixtures, run};

#[test]
fn every_valid_fixture_passes() {
    let mut seen = 0;
    for entry in std::fs::read_dir(config_fixtures()).expect("the configuration fixtures") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("valid_") {
            continue;
        }
        seen += 1;
        let out = run(&config_fixtures(), &["validate", path.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{name}: {}", out.all());
    }
    assert!(seen >= 6, "expected the six valid fixtures, found {seen}");
}

#[test]
fn the_invalid_fixture_is_refused_with_exit_2() {
    let path = config_fixtures().join("invalid_destinations_not_a_list.yml");
    let out = run(&config_fixtures(), &["validate", path.to_str().unwrap()]);
    out.expect(2);
    assert!(
        out.stderr.starts_with("Invalid config - "),
        "{}",
        out.stderr
    );
    // Not a missing value: missing_properties_message does not follow.
    assert!(
        !out.stderr
            .contains("Provide these missing fields in your manifest."),
        "{}",
        out.stderr
    );
}

#[test]
fn the_fixture_of_every_key_passes_beside_its_key_files() {
    let env = Env::new();
    std::fs::copy(env.path("backup.key"), env.path("previous.key")).unwrap();
    std::fs::write(
        env.path("every.yml"),
        std::fs::read(config_fixtures().join("every_key_of_ours.yml")).unwrap(),
    )
    .unwrap();
    let out = env.run(&["validate", "every.yml"]);
    out.expect(0);
    assert!(
        out.stdout.contains("every.yml: valid; 7 destination(s)"),
        "{}",
        out.stdout
    );
}

#[test]
fn no_destinations_is_valid_and_backup_logs_backups_disabled() {
    let env = Env::new();
    std::fs::write(env.path("none.yml"), "destinations: []\n").unwrap();
    env.run(&["validate", "none.yml"]).expect(0);
    let out = env.run(&["backup", "none.yml"]);
    out.expect(0);
    assert!(
        out.stdout
            .contains("\"message\":\"ServiceBackup.Backups Disabled\""),
        "{}",
        out.stdout
    );
}

#[test]
fn a_key_of_the_wrong_length_or_not_base64_is_a_config_error() {
    let env = Env::new();
    for (content, words) in [
        ("AAAA\n", "3 bytes long"),
        ("%%% not base64\n", "not valid base64"),
    ] {
        std::fs::write(env.path("backup.key"), content).unwrap();
        let out = env.run(&["validate", "config.yml"]);
        out.expect(2);
        assert!(out.stderr.contains(words), "{}", out.stderr);
    }
    std::fs::remove_file(env.path("backup.key")).unwrap();
    let out = env.run(&["backup", "config.yml"]);
    out.expect(2);
    assert!(out.stderr.contains("backup.key"), "{}", out.stderr);
}

#[test]
fn a_missing_config_file_is_exit_2() {
    let env = Env::new();
    let out = env.run(&["list", "nope.yml"]);
    out.expect(2);
    assert!(out.stderr.contains("nope.yml"), "{}", out.stderr);
}

#[test]
fn an_existing_file_named_like_a_mistyped_command_is_the_daemons_configuration() {
    let env = Env::new();
    let out = env.run(&["lst"]);
    out.expect(2);
    assert_eq!(
        out.stderr.trim(),
        "error: unknown command 'lst'; did you mean 'list'?"
    );
    // The same word naming a file runs the daemon with it (here refused for its content,
    // which shows that it was read).
    std::fs::write(env.path("lst"), "destinations: not-a-list\n").unwrap();
    let out = env.run(&["lst"]);
    out.expect(2);
    assert_eq!(
        out.stderr.trim(),
        "Invalid config - destinations must be a list of destinations, not a string."
    );
}
