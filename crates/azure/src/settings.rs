//! What an `azure` destination is configured with, and its endpoint as messages show it.

use std::fmt;

use azure_core::Url;

use service_backup_core::destination::RetryPolicy;
use service_backup_core::secret::Secret;

/// Azure Blob storage's public cloud domain, the default of `blob_store_base_url`.
pub const PUBLIC_CLOUD_DOMAIN: &str = "core.windows.net";

/// Settings of an `azure` destination.
#[derive(Clone)]
pub struct AzureSettings {
    /// The storage account.
    pub storage_account: String,
    /// One of the storage account's access keys (base64), for shared-key authentication.
    pub storage_access_key: Secret,
    /// The container; created by the first write if it is missing.
    pub container: String,
    /// The blob service's full URL, such as `https://acct.blob.core.windows.net` or
    /// Azurite's `http://127.0.0.1:10000/devstoreaccount1` (the agent builds it from the
    /// original's base-domain `endpoint`, see [`AzureSettings::endpoint_on`]).
    pub endpoint: String,
    /// How requests that fail temporarily are retried.
    pub retry: RetryPolicy,
}

impl AzureSettings {
    /// The blob service URL of `account` in Azure's public cloud.
    pub fn public_endpoint(account: &str) -> String {
        Self::endpoint_on(account, PUBLIC_CLOUD_DOMAIN)
    }

    /// The blob service URL of `account` under a base domain such as `core.windows.net`
    /// or `core.chinacloudapi.cn`, as the original release's Azure client built it.
    pub fn endpoint_on(account: &str, domain: &str) -> String {
        format!("https://{account}.blob.{}", domain.trim_matches('/'))
    }
}

impl fmt::Debug for AzureSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureSettings")
            .field("storage_account", &self.storage_account)
            .field("storage_access_key", &self.storage_access_key)
            .field("container", &self.container)
            .field("endpoint", &display_endpoint(&self.endpoint))
            .field("retry", &self.retry)
            .finish()
    }
}

/// An endpoint as shown in messages: no user info, no query (where a SAS would be).
pub(crate) fn display_endpoint(endpoint: &str) -> String {
    match Url::parse(endpoint) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.as_str().trim_end_matches('/').to_string()
        }
        Err(_) => endpoint
            .split(['?', '#', '@'])
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}
