//! What the tests against Azurite share: settings on the server of `tests/run.sh` or on
//! an Azurite of a test's own (`service_backup_testkit::azurite`).
#![allow(dead_code)]

use service_backup_azure::{AzureDestination, AzureSettings};
use service_backup_core::secret::Secret;
use service_backup_testkit::{env, quick_retry, unique};

/// Azurite's account key (public, but handled as the secret it stands for).
pub fn key() -> String {
    env("SB_TEST_AZURE_KEY")
}

/// Settings for `container` on the shared server.
pub fn settings(container: &str) -> AzureSettings {
    settings_at(&env("SB_TEST_AZURE_ENDPOINT"), container)
}

/// Settings for `container` on the blob endpoint `endpoint`.
pub fn settings_at(endpoint: &str, container: &str) -> AzureSettings {
    AzureSettings::with_access_key(
        &env("SB_TEST_AZURE_ACCOUNT"),
        Secret::new(key()),
        container,
        endpoint,
        quick_retry(),
    )
}

/// A destination in a new container of the shared server.
pub fn destination() -> AzureDestination {
    AzureDestination::new(settings(&unique("conf"))).unwrap()
}
