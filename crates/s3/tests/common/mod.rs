//! Helpers for the tests against moto: the test credentials, settings, blocks of data, and a
//! port that never answers. A moto of a test's own is `service_backup_testkit::moto`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::time::Duration;

use service_backup_core::destination::RetryPolicy;
use service_backup_core::secret::Secret;
use service_backup_s3::S3Settings;
use service_backup_testkit::quick_retry_within;

/// The secret access key of every test: it must never show in an error or debug output.
pub const SECRET: &str = "tEsT/sEcReT+aCcEsS+kEy/never-to-be-printed";
/// The access key id of every test (moto accepts any).
pub const KEY_ID: &str = "AKIATESTKEYID0000001";

/// A retry policy short enough for tests that expect failures.
pub fn quick_retry() -> RetryPolicy {
    quick_retry_within(Duration::from_millis(50), Duration::from_secs(3))
}

/// Settings for `bucket` at `endpoint`, with the test credentials and a quick retry.
pub fn settings(endpoint: &str, bucket: &str) -> S3Settings {
    let mut s = S3Settings::new(bucket, KEY_ID, Secret::new(SECRET));
    s.endpoint_url = Some(endpoint.to_string());
    s.retry = quick_retry();
    s.connect_timeout = Duration::from_secs(3);
    s
}

/// Blocks of 1 MiB, as the backup pipeline hands them to destinations.
pub fn block(seed: u8) -> bytes::Bytes {
    bytes::Bytes::from(
        (0..1024 * 1024)
            .map(|i: u32| (i % 251) as u8 ^ seed)
            .collect::<Vec<u8>>(),
    )
}

/// A loopback port that accepts connections and never answers (a hung store); its
/// connections stay open until the test process ends.
pub fn silent_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    port
}
