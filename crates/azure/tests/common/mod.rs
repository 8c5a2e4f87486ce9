//! What the tests against Azurite share: settings on the server of `tests/run.sh` or on
//! an Azurite of a test's own (`service_backup_testkit::azurite`), and the SDK's client.
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
    AzureSettings {
        storage_account: env("SB_TEST_AZURE_ACCOUNT"),
        storage_access_key: Secret::new(key()),
        container: container.to_string(),
        endpoint: endpoint.to_string(),
        retry: quick_retry(),
    }
}

/// A destination in a new container of the shared server.
pub fn destination() -> AzureDestination {
    AzureDestination::new(settings(&unique("conf"))).unwrap()
}

/// The SDK's client of a container, to do what the destination never does (delete it).
pub fn sdk_container(settings: &AzureSettings) -> azure_storage_blobs::prelude::ContainerClient {
    let credentials = azure_storage::StorageCredentials::access_key(
        settings.storage_account.clone(),
        azure_core::auth::Secret::new(settings.storage_access_key.expose().to_string()),
    );
    let location = azure_storage::CloudLocation::Custom {
        account: settings.storage_account.clone(),
        uri: settings.endpoint.clone(),
    };
    azure_storage_blobs::prelude::ClientBuilder::with_location(location, credentials)
        .container_client(settings.container.clone())
}
