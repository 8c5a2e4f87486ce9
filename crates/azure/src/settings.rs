//! What an `azure` destination is configured with, and its endpoint as messages show it.

use std::fmt;
use std::time::Duration;

use azure_core::http::Url;

use service_backup_core::destination::{Immutability, RetryPolicy};
use service_backup_core::secret::Secret;

/// Azure Blob storage's public cloud domain, the default of `blob_store_base_url`.
pub const PUBLIC_CLOUD_DOMAIN: &str = "core.windows.net";

/// Settings of an `azure` destination.
#[derive(Clone)]
pub struct AzureSettings {
    /// The storage account.
    pub storage_account: String,
    /// How requests are authorized.
    pub credentials: AzureCredentials,
    /// The container; created by the first write if it is missing.
    pub container: String,
    /// The blob service's full URL, such as `https://acct.blob.core.windows.net` or
    /// Azurite's `http://127.0.0.1:10000/devstoreaccount1` (the agent builds it from the
    /// original's base-domain `endpoint`, see [`AzureSettings::endpoint_on`]).
    pub endpoint: String,
    /// PEM of a private certificate authority trusted beside the system's roots.
    pub ca_cert: Option<String>,
    /// Version-level immutability given to every blob written, if any: governance writes
    /// unlocked policies (an account administrator may shorten them), compliance locked ones.
    pub immutability: Option<Immutability>,
    /// How requests that fail temporarily are retried.
    pub retry: RetryPolicy,
    /// A read whose answer brings less than 64 KiB within this time fails temporarily
    /// (and is retried), so a silent or trickling connection cannot hang a restore.
    pub stall_timeout: Duration,
}

/// The default of [`AzureSettings::stall_timeout`].
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_mins(1);

/// How the requests of an `azure` destination are authorized.
#[derive(Clone, Debug)]
pub enum AzureCredentials {
    /// One of the storage account's access keys (base64): shared-key signatures.
    AccessKey(Secret),
    /// A shared access signature: its query string (`sv=…&sig=…`), with or without `?`.
    SasToken(Secret),
    /// Tokens of the VM's managed identity from the instance metadata service.
    ManagedIdentity(ManagedIdentity),
}

/// Which managed identity to ask tokens for, and where.
#[derive(Clone, Debug, Default)]
pub struct ManagedIdentity {
    /// The client id of a user-assigned identity; the system-assigned one when `None`.
    pub client_id: Option<String>,
    /// The token endpoint; when `None`, `IDENTITY_ENDPOINT`, `MSI_ENDPOINT` or the
    /// instance metadata service, in that order.
    pub endpoint: Option<String>,
}

impl AzureSettings {
    /// Settings with an account key, no private CA, no immutability.
    pub fn with_access_key(
        storage_account: &str,
        storage_access_key: Secret,
        container: &str,
        endpoint: &str,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            storage_account: storage_account.to_string(),
            credentials: AzureCredentials::AccessKey(storage_access_key),
            container: container.to_string(),
            endpoint: endpoint.to_string(),
            ca_cert: None,
            immutability: None,
            retry,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        }
    }

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
            .field("credentials", &self.credentials)
            .field("container", &self.container)
            .field("endpoint", &display_endpoint(&self.endpoint))
            .field("ca_cert", &self.ca_cert.as_ref().map(|_| "<PEM>"))
            .field("immutability", &self.immutability)
            .field("retry", &self.retry)
            .field("stall_timeout", &self.stall_timeout)
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
