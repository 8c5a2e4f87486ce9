//! Settings on the test server of `tests/run.sh` (or on an sshd of a test's own,
//! `service_backup_testkit::Sshd`), folders on it, and what a test finds in them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use service_backup_core::destination::RetryPolicy;
use service_backup_core::secret::Secret;
use service_backup_scp::ScpSettings;
use service_backup_testkit::{env, quick_retry_within, unique};

/// The content of the key file named by the variable `name`.
pub fn key_from(name: &str) -> Secret {
    Secret::new(std::fs::read_to_string(env(name)).unwrap())
}

/// A directory on the test server (the server is local), unique to this test.
pub fn unique_dir(test: &str) -> PathBuf {
    PathBuf::from(env("SB_TEST_SCP_DIR")).join(unique(test))
}

/// Quick retries, so that fault tests end fast (SSH handshakes take longer than HTTP).
pub fn quick_retry() -> RetryPolicy {
    quick_retry_within(Duration::from_millis(100), Duration::from_secs(10))
}

/// Settings for the test server at `port`, writing under `dir`, with the host key pinned.
pub fn settings_on(port: u16, dir: &Path) -> ScpSettings {
    let mut s = ScpSettings::new(
        "127.0.0.1",
        env("SB_TEST_SCP_USER"),
        dir.display().to_string(),
        key_from("SB_TEST_SCP_KEY"),
    );
    s.port = port;
    s.fingerprint = Some(env("SB_TEST_SCP_FINGERPRINT"));
    s.timeout = Duration::from_secs(10);
    s.retry = quick_retry();
    s
}

/// Settings for the shared test server, writing under `dir`.
pub fn settings(dir: &Path) -> ScpSettings {
    settings_on(env("SB_TEST_SCP_PORT").parse().unwrap(), dir)
}

/// Whether a relative path's file name is hidden (a temporary file).
pub fn is_hidden(rel: &str) -> bool {
    rel.rsplit('/').next().unwrap().starts_with('.')
}
