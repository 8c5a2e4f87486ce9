//! What the tests against fake-gcs-server share: the servers' addresses and the test
//! service account from the environment, settings, unique names, and emulator instances
//! of a test's own.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use service_backup_core::destination::RetryPolicy;
use service_backup_core::secret::Secret;
use service_backup_gcs::{GcsDestination, GcsSettings};

/// An environment variable that `tests/run.sh` sets; a test fails without it.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through tests/run.sh, which starts fake-gcs-server (tests/servers/gcs.sh)")
    })
}

/// The test service account's JSON key, whose token endpoint is the test one.
pub fn key_json() -> String {
    std::fs::read_to_string(env("SB_TEST_GCS_KEY_FILE")).unwrap()
}

/// The private key inside the JSON key, for leak checks: its first base64 line.
pub fn key_material(json: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let pem = value["private_key"].as_str().unwrap();
    pem.lines().nth(1).unwrap().to_string()
}

/// A bucket name no other test run uses (lowercase letters, digits and dashes).
pub fn unique(what: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{what}-{}-{nanos:09}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Retries that give up within a second or two.
pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        budget: Duration::from_secs(5),
    }
}

/// Settings for `bucket` on the emulator at `endpoint`.
pub fn settings_at(endpoint: &str, bucket: &str) -> GcsSettings {
    let mut s = GcsSettings::new(
        Secret::new(key_json()),
        &env("SB_TEST_GCS_PROJECT"),
        bucket,
        Some(endpoint.to_string()),
    );
    s.retry = quick_retry();
    s
}

/// Settings for `bucket` on the shared emulator.
pub fn settings(bucket: &str) -> GcsSettings {
    settings_at(&env("SB_TEST_GCS_ENDPOINT"), bucket)
}

/// A destination in a new bucket of the shared emulator.
pub fn destination() -> GcsDestination {
    GcsDestination::new(settings(&unique("conf"))).unwrap()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fake-gcs-server of a test's own, which the test may stop and start again.
pub struct Emulator {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl Emulator {
    /// Starts the emulator on a free port, its objects under `dir`.
    pub fn start(dir: &Path) -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
            dir: dir.to_path_buf(),
        };
        server.restart();
        server
    }

    /// The JSON API's base URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the emulator again on the same port and objects.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let root = self.dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        let log = std::fs::File::create(self.dir.join("fake-gcs-server.log")).unwrap();
        let child = Command::new(env("SB_TEST_GCS_BIN"))
            .args(["-scheme", "http", "-host", "127.0.0.1", "-port"])
            .arg(self.port.to_string())
            .arg("-external-url")
            .arg(self.endpoint())
            .args(["-backend", "filesystem", "-filesystem-root"])
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("fake-gcs-server starts");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "fake-gcs-server did not open port {} within 60 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the emulator as an operator would (SIGTERM), and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let start = Instant::now();
            while child.try_wait().unwrap().is_none() {
                if start.elapsed() > Duration::from_secs(15) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
