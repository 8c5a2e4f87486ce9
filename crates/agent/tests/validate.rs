//! `validate` and configuration errors through the real binary.

mod common;

use common::{Env, fixtures, run};

#[test]
fn every_valid_fixture_of_the_original_release_passes() {
    let mut seen = 0;
    for entry in
        std::fs::read_dir(fixtures()).expect("the fixtures folder is beside the repository")
    {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("valid_") {
            continue;
        }
        seen += 1;
        let out = run(&fixtures(), &["validate", path.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{name}: {}", out.all());
    }
    assert!(seen >= 4, "expected the four valid fixtures, found {seen}");
}

#[test]
fn the_invalid_fixture_is_refused_with_exit_2() {
    let path = fixtures().join("invalid_config.yml");
    let out = run(&fixtures(), &["validate", path.to_str().unwrap()]);
    out.expect(2);
    assert!(
        out.stderr.starts_with("Invalid config - "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("Provide these missing fields in your manifest."),
        "{}",
        out.stderr
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
