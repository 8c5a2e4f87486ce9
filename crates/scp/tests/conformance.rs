//! The destination conformance suite, and the ways to authenticate and to pin the host key,
//! against the real sshd that tests/run.sh starts.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{key_from, settings, unique_dir};
use service_backup_core::destination::{Destination, conformance, get_small};
use service_backup_scp::ScpDestination;
use service_backup_testkit::{env, files_below};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_against_sshd() {
    let dir = unique_dir("conformance");
    let dest = ScpDestination::new(settings(&dir)).unwrap();
    assert_eq!(
        dest.describe(),
        format!(
            "scp {}@127.0.0.1:{}",
            env("SB_TEST_SCP_USER"),
            dir.display()
        )
    );
    conformance::run_all(&dest, "suite/run-1").await;
    // Nothing but complete objects is left: no temporary file from any upload or abort.
    let left = files_below(&dir);
    assert!(left.iter().all(|f| !common::is_hidden(f)), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_by_page_against_sshd() {
    let dir = unique_dir("paged");
    let dest = ScpDestination::new(settings(&dir)).unwrap();
    conformance::lists_page_by_page(&dest, "paged", 3, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_pem_ecdsa_and_ed25519_keys_authenticate() {
    for var in [
        "SB_TEST_SCP_KEY",
        "SB_TEST_SCP_KEY_RSA_PEM",
        "SB_TEST_SCP_KEY_ECDSA",
    ] {
        let dir = unique_dir("keys");
        let mut s = settings(&dir);
        s.key = key_from(var);
        let dest = ScpDestination::new(s).unwrap();
        dest.put("k/x.json", Bytes::from_static(b"1"))
            .await
            .unwrap_or_else(|e| panic!("{var}: {e}"));
        assert_eq!(std::fs::read(dir.join("k/x.json")).unwrap(), b"1", "{var}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fingerprint_form_is_accepted() {
    let forms = [
        ("sha256", env("SB_TEST_SCP_FINGERPRINT")),
        ("md5", env("SB_TEST_SCP_FINGERPRINT_MD5")),
        // The server's second host key: found by asking for each key type in turn.
        ("rsa", env("SB_TEST_SCP_FINGERPRINT_RSA")),
        // The original release's form: known_hosts content.
        ("known_hosts", env("SB_TEST_SCP_KNOWN_HOSTS")),
        (
            "md5 without prefix",
            env("SB_TEST_SCP_FINGERPRINT_MD5").replace("MD5:", ""),
        ),
    ];
    for (what, fingerprint) in forms {
        let dir = unique_dir("fingerprints");
        let mut s = settings(&dir);
        s.fingerprint = Some(fingerprint);
        let dest = ScpDestination::new(s).unwrap();
        dest.put("a.json", Bytes::from_static(b"{}"))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        // Later connections reuse what the first one found.
        assert_eq!(dest.list("").await.unwrap().len(), 1, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_fingerprint_any_host_key_is_accepted() {
    let dir = unique_dir("unpinned");
    let mut s = settings(&dir);
    s.fingerprint = None;
    let dest = ScpDestination::new(s).unwrap();
    dest.put("a/b.json", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(get_small(&dest, "a/b.json", 10).await.unwrap(), b"x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_upload_removes_its_temporary_file() {
    let dir = unique_dir("dropped");
    let dest = ScpDestination::new(settings(&dir)).unwrap();
    let mut upload = dest.put_multipart("d/archive.bin").await.unwrap();
    upload
        .write(Bytes::from(vec![7u8; 1024 * 1024]))
        .await
        .unwrap();
    assert_eq!(files_below(&dir).len(), 1, "the temporary file exists");
    assert!(dest.list("").await.unwrap().is_empty());
    drop(upload);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !files_below(&dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left behind: {:?}",
            files_below(&dir)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_relative_to_the_home_directory() {
    // Relative paths (and `~/`) start at the user's home directory, as with scp.
    let home = std::env::var("HOME").unwrap();
    let name = format!(
        ".service-backup-test-{}",
        unique_dir("home").file_name().unwrap().to_string_lossy()
    );
    let mut s = settings(std::path::Path::new(&format!("~/{name}")));
    s.destination = format!("~/{name}");
    let dest = ScpDestination::new(s).unwrap();
    let put = dest.put("x/y.json", Bytes::from_static(b"y")).await;
    let listed = dest.list("x/").await;
    // Clean up the home directory before any assertion can fail.
    let on_disk = std::path::Path::new(&home).join(&name);
    let content = std::fs::read(on_disk.join("x/y.json"));
    let _ = std::fs::remove_dir_all(&on_disk);
    put.unwrap();
    assert_eq!(content.unwrap(), b"y");
    assert_eq!(listed.unwrap()[0].key, "x/y.json");
}

#[test]
fn debug_output_holds_no_secret() {
    let key = key_from("SB_TEST_SCP_KEY");
    let dest = ScpDestination::new(settings(&unique_dir("debug"))).unwrap();
    let shown = format!("{dest:?}");
    assert!(shown.contains("<redacted>"), "{shown}");
    for line in key.expose().lines().filter(|l| l.len() > 20) {
        assert!(!shown.contains(line), "key material in {shown}");
    }
}
