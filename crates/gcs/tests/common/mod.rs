//! What the tests against fake-gcs-server share: the test service account, and settings on
//! the emulator of `tests/run.sh` or on one of a test's own (`service_backup_testkit::fake_gcs`).
#![allow(dead_code)]

use service_backup_core::secret::Secret;
use service_backup_gcs::{GcsDestination, GcsSettings};
use service_backup_testkit::{env, quick_retry, unique};

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
