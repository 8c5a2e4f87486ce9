//! Faults against a real sshd: a server stopped mid-transfer (and one restarted), a host key
//! that does not match, a destination that cannot be written, a wrong private key, a closed
//! port, a server that stops answering.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{is_hidden, key_from, quick_retry, settings, settings_on, unique_dir};
use futures::StreamExt as _;
use service_backup_core::ErrorKind;
use service_backup_core::destination::{Destination, RetryPolicy};
use service_backup_core::layout::Layout;
use service_backup_core::progress::NoProgress;
use service_backup_core::secret::Secret;
use service_backup_scp::{ScpDestination, ScpSettings};
use service_backup_testkit::{Sshd, backup_into, backup_plan, env, files_below, free_port};

/// Asserts that no line of a private key appears in `text`.
fn assert_no_key_material(text: &str, key: &Secret) {
    for line in key.expose().lines().filter(|l| l.len() >= 16) {
        assert!(!text.contains(line), "key material in: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshd_stopped_mid_backup_fails_cleanly_and_leaves_nothing_listed() {
    let mut sshd = Sshd::start();
    let port = sshd.port;
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(
        source.join("big.bin"),
        service_backup_testkit::incompressible(64 * 1024 * 1024, 0x9e37_79b9_7f4a_7c15),
    )
    .unwrap();
    let dir = unique_dir("stopped");
    let dest: Arc<dyn Destination> =
        Arc::new(ScpDestination::new(settings_on(port, &dir)).unwrap());

    // Stop the server (and the connection it serves) once the upload is under way.
    let watched = dir.clone();
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            let growing = files_below(&watched).iter().any(|f| {
                is_hidden(f)
                    && std::fs::metadata(watched.join(f)).is_ok_and(|m| m.len() > 2 * 1024 * 1024)
            });
            if growing || Instant::now() > deadline {
                sshd.kill();
                return (sshd, growing);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });

    let plan = backup_plan(&source, "test-0");
    let layout = Layout::new("svc", None);
    let outcome = backup_into(plan, "ssh", dest.clone(), &layout, Arc::new(NoProgress)).await;
    let (mut sshd, stopped_mid_transfer) = killer.join().unwrap();
    assert!(stopped_mid_transfer, "the upload never got under way");

    let err = outcome.result.as_ref().unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("connection broke"), "{text}");

    // No manifest, no visible archive: at most a hidden temporary file.
    let left = files_below(&dir);
    assert!(left.iter().all(|f| is_hidden(f)), "{left:?}");
    assert!(!left.iter().any(|f| f.ends_with(".json")), "{left:?}");

    // Once the server is back, the same destination lists nothing (its pooled connections
    // are dead and get replaced).
    sshd.start();
    assert!(dest.list(&layout.prefix()).await.unwrap().is_empty());
    assert!(dest.list("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_resumes_on_a_new_connection_when_sshd_restarts() {
    let mut sshd = Sshd::start();
    let dir = unique_dir("resume");
    let mut s = settings_on(sshd.port, &dir);
    s.retry = RetryPolicy {
        max_attempts: 6,
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(1),
        budget: Duration::from_secs(20),
    };
    let dest = ScpDestination::new(s).unwrap();
    let blocks: Vec<Bytes> = (0..6u8)
        .map(|i| Bytes::from(vec![i; 1024 * 1024 + 13]))
        .collect();
    let mut upload = dest.put_multipart("r/archive.bin").await.unwrap();
    for block in &blocks[..3] {
        upload.write(block.clone()).await.unwrap();
    }
    sshd.kill();
    sshd.start();
    for block in &blocks[3..] {
        upload.write(block.clone()).await.unwrap();
    }
    upload.complete().await.unwrap();

    let mut object = dest.get("r/archive.bin").await.unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = object.chunks.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    let expected: Vec<u8> = blocks.iter().flat_map(|b| b.iter().copied()).collect();
    assert!(got == expected, "the resumed object differs");
    assert_eq!(files_below(&dir), vec!["r/archive.bin".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_key_mismatch_refuses_the_server_and_writes_nothing() {
    let port = env("SB_TEST_SCP_PORT");
    for (pinned, shown) in [
        (
            "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
            env("SB_TEST_SCP_FINGERPRINT"),
        ),
        (
            "MD5:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff".to_string(),
            env("SB_TEST_SCP_FINGERPRINT_MD5"),
        ),
    ] {
        let dir = unique_dir("mismatch");
        let mut s = settings(&dir);
        s.fingerprint = Some(pinned.clone());
        let dest = ScpDestination::new(s).unwrap();
        let err = dest
            .put("m/x.json", Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Destination);
        assert!(!err.is_temporary());
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(text.contains("does not match"), "{text}");
        assert!(text.contains(&format!("expected {pinned}")), "{text}");
        assert!(text.contains(&shown), "the seen key is named: {text}");
        assert!(!dir.exists(), "something was written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_cannot_be_written_is_reported() {
    let base = unique_dir("unwritable");
    std::fs::create_dir_all(&base).unwrap();
    // Root ignores directory modes: then a regular file in the path stops it instead.
    let (dir, expected) = if common_is_root() {
        std::fs::write(base.join("file"), b"not a directory").unwrap();
        (base.join("file/backups"), "not a directory")
    } else {
        use std::os::unix::fs::PermissionsExt as _;
        let locked = base.join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        (locked.join("backups"), "permission denied")
    };
    let dest = ScpDestination::new(settings(&dir)).unwrap();
    let started = Instant::now();
    let err = dest
        .put_multipart("2026/11/23/b.tar.gz.enc")
        .await
        .map(|_| ())
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
    assert!(!err.is_temporary(), "{text}");
    assert!(text.to_lowercase().contains(expected), "{text}");
    assert!(text.contains("127.0.0.1:"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "retried a permanent error"
    );
    assert!(!dir.exists());
}

fn common_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_private_key_is_refused_without_showing_it() {
    let dir = unique_dir("wrong-key");
    let mut s = settings(&dir);
    let stranger = key_from("SB_TEST_SCP_KEY_UNAUTHORIZED");
    s.key = stranger.clone();
    let dest = ScpDestination::new(s).unwrap();
    let err = dest.list("").await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert_eq!(err.kind(), ErrorKind::Destination);
    assert!(!err.is_temporary());
    assert!(text.contains("refused the private key"), "{text}");
    assert!(text.contains(&env("SB_TEST_SCP_USER")), "{text}");
    assert!(text.contains("authorized_keys"), "{text}");
    assert_no_key_material(&text, &stranger);

    // Not a key at all: a configuration problem, still without its content.
    let garbage = Secret::new(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWdhcmJhZ2Utbm90LWEta2V5LWF0LWFsbA==\n\
         -----END OPENSSH PRIVATE KEY-----\n",
    );
    let mut s = settings(&dir);
    s.key = garbage.clone();
    let err = ScpDestination::new(s).unwrap().list("").await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert_eq!(err.kind(), ErrorKind::Config, "{text}");
    assert!(text.contains("cannot be used"), "{text}");
    assert_no_key_material(&text, &garbage);
    assert!(!dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_refused_at_once() {
    let port = free_port();
    let dest = ScpDestination::new(settings_on(port, &unique_dir("closed"))).unwrap();
    let started = Instant::now();
    let err = dest.list("").await.unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Destination);
    assert!(
        text.contains(&format!("127.0.0.1:{port}: connection refused")),
        "{text}"
    );
    assert!(text.contains("check `server` and `port`"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(2), "retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_times_out() {
    let sshd = Sshd::start();
    let mut s = settings_on(sshd.port, &unique_dir("frozen"));
    s.timeout = Duration::from_secs(1);
    s.retry = quick_retry();
    let dest = ScpDestination::new(s).unwrap();
    sshd.pause();
    let started = Instant::now();
    let err = dest.list("").await.unwrap_err();
    sshd.resume();
    let text = err.to_string();
    assert!(err.is_temporary(), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{}", sshd.port)), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

// --- issue 20, finding 4: host keys trusted on first use, in a known_hosts file ---------

/// Settings for the shared server with no `fingerprint`, recording host keys in
/// `known_hosts`.
fn first_use_settings(dir: &std::path::Path, known_hosts: &std::path::Path) -> ScpSettings {
    let mut s = settings(dir);
    s.fingerprint = None;
    s.known_hosts = Some(known_hosts.to_path_buf());
    s
}

/// A new ed25519 key in `dir`: its `known_hosts` text (`type base64`) and its fingerprint.
fn other_host_key(dir: &std::path::Path) -> (String, String) {
    let key = dir.join("other_host_key");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs");
    assert!(made.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let text: Vec<&str> = public.split_whitespace().take(2).collect();
    let shown = std::process::Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    let shown = String::from_utf8(shown.stdout).unwrap();
    (
        text.join(" "),
        shown.split_whitespace().nth(1).unwrap().to_string(),
    )
}

/// Hashes the host names of a `known_hosts` file as `ssh-keygen -H` does.
fn hash_names(known_hosts: &std::path::Path) {
    let hashed = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(known_hosts)
        .output()
        .expect("ssh-keygen runs");
    assert!(hashed.status.success(), "{hashed:?}");
    let text = std::fs::read_to_string(known_hosts).unwrap();
    assert!(
        text.starts_with("|1|") && !text.contains("127.0.0.1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_host_key_refuses_another_before_login() {
    let tmp = tempfile::tempdir().unwrap();
    let known_hosts = tmp.path().join("state/known_hosts");
    let port = env("SB_TEST_SCP_PORT");
    let dir = unique_dir("first-use");
    let dest = ScpDestination::new(first_use_settings(&dir, &known_hosts)).unwrap();
    dest.put("a.json", Bytes::from_static(b"{}")).await.unwrap();
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    assert_eq!(recorded, format!("{}\n", env("SB_TEST_SCP_KNOWN_HOSTS")));

    // The file records another key for this server: the server's key "changed".
    let (other, other_fingerprint) = other_host_key(tmp.path());
    let changed = format!("[127.0.0.1]:{port} {other}\n");
    std::fs::write(&known_hosts, &changed).unwrap();
    let dest = ScpDestination::new(first_use_settings(&dir, &known_hosts)).unwrap();
    let started = Instant::now();
    let err = dest
        .put("b.json", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
    assert!(!err.is_temporary(), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5), "retried");
    assert!(text.contains("has changed"), "{text}");
    assert!(
        text.contains(&other_fingerprint),
        "the recorded key: {text}"
    );
    assert!(
        text.contains(&env("SB_TEST_SCP_FINGERPRINT")),
        "the presented key: {text}"
    );
    assert!(
        text.contains(&format!(
            "ssh-keygen -R '[127.0.0.1]:{port}' -f {}",
            known_hosts.display()
        )),
        "{text}"
    );
    assert_eq!(files_below(&dir), vec!["a.json".to_string()]);
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), changed);

    // Hashed names (`ssh-keygen -H`) are matched too: still refused, never recorded anew.
    hash_names(&known_hosts);
    let hashed = std::fs::read_to_string(&known_hosts).unwrap();
    let dest = ScpDestination::new(first_use_settings(&dir, &known_hosts)).unwrap();
    let err = dest.list("").await.unwrap_err();
    assert!(err.to_string().contains(&other_fingerprint), "{err}");
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), hashed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hashed_record_of_the_right_key_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let known_hosts = tmp.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("{}\n", env("SB_TEST_SCP_KNOWN_HOSTS")),
    )
    .unwrap();
    hash_names(&known_hosts);
    let hashed = std::fs::read_to_string(&known_hosts).unwrap();
    let dir = unique_dir("hashed");
    let dest = ScpDestination::new(first_use_settings(&dir, &known_hosts)).unwrap();
    dest.put("a.json", Bytes::from_static(b"{}")).await.unwrap();
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), hashed);
}

/// A host key seen on first use is recorded only once the login succeeded: a server this
/// user could not log into is not trusted for later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_key_is_not_recorded_when_the_login_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let known_hosts = tmp.path().join("state/known_hosts");
    let dir = unique_dir("first-use-refused");
    // A user key the server does not know (made like a host key: any ed25519 key will do).
    other_host_key(tmp.path());
    let mut refused = first_use_settings(&dir, &known_hosts);
    refused.key = Secret::new(std::fs::read_to_string(tmp.path().join("other_host_key")).unwrap());
    let dest = ScpDestination::new(refused).unwrap();
    let err = dest
        .put("a.json", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Destination, "{err}");
    let recorded = std::fs::read_to_string(&known_hosts).unwrap_or_default();
    assert_eq!(recorded, "", "recorded after a failed login");

    // With the right key, the first login records it.
    let dest = ScpDestination::new(first_use_settings(&dir, &known_hosts)).unwrap();
    dest.put("a.json", Bytes::from_static(b"{}")).await.unwrap();
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    assert_eq!(recorded, format!("{}\n", env("SB_TEST_SCP_KNOWN_HOSTS")));
}
