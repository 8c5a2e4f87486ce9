//! The checker that tests/run.sh runs over everything the suite printed catches a secret
//! planted in the output, without printing it, and refuses an empty collection.

use std::path::Path;
use std::process::Command;

fn check(dir: &Path) -> (i32, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/check-secrets.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(dir)
        .output()
        .expect("bash runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const PLANTED: &str = "planted/SECRET+value+0123456789";

#[test]
fn a_planted_secret_is_found_and_not_shown() {
    let dir = tempfile::tempdir().unwrap();
    let ssh_line = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW";
    std::fs::write(
        dir.path().join("secrets-1.log"),
        format!("{PLANTED}\n-----BEGIN OPENSSH PRIVATE KEY-----\n{ssh_line}\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("output-1.log"), "backup stored\nall fine\n").unwrap();
    let (code, stderr) = check(dir.path());
    assert_eq!(code, 0, "a clean output passes: {stderr}");
    assert!(
        stderr.contains("2 secrets, none in 1 output files"),
        "{stderr}"
    );

    std::fs::write(
        dir.path().join("output-2.log"),
        format!("error: cannot connect with key {PLANTED} to host\n"),
    )
    .unwrap();
    let (code, stderr) = check(dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("output-2.log:1"), "{stderr}");
    assert!(
        !stderr.contains(PLANTED),
        "the checker printed the secret: {stderr}"
    );

    // One line of a private key is enough.
    std::fs::remove_file(dir.path().join("output-2.log")).unwrap();
    std::fs::write(
        dir.path().join("cargo-test.log"),
        format!("panicked: {ssh_line}\n"),
    )
    .unwrap();
    let (code, stderr) = check(dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cargo-test.log:1"), "{stderr}");
}

#[test]
fn a_collection_without_secrets_or_output_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("output-1.log"), "text\n").unwrap();
    let (code, stderr) = check(dir.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no secret was declared"), "{stderr}");
    std::fs::remove_file(dir.path().join("output-1.log")).unwrap();
    std::fs::write(dir.path().join("secrets-1.log"), format!("{PLANTED}\n")).unwrap();
    let (code, stderr) = check(dir.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no output was collected"), "{stderr}");
}
