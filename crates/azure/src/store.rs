//! The container client and what every request shares: names for messages, the retry
//! policy, the HTTP transport with its time limits.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use azure_core::{ClientOptions, RetryOptions, TransportOptions, Url};
use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_blobs::prelude::{ClientBuilder, ContainerClient};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use service_backup_core::destination::RetryPolicy;
use service_backup_core::{Error, ErrorKind, Result};

use crate::errors::{Failure, Names, classify};
use crate::settings::{AzureSettings, display_endpoint};

/// Time allowed to open a connection: an unreachable endpoint fails within seconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed without any byte moving on a connection before it is given up.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// One container of one storage account.
pub(crate) struct Store {
    /// The SDK's client of the container.
    pub container: ContainerClient,
    /// The storage account, for messages.
    pub account: String,
    /// The container's name, for messages.
    pub container_name: String,
    /// The blob service URL without query or user info, for messages.
    pub endpoint: String,
    /// Retries of temporary failures: the SDK's own retries are off.
    pub retry: RetryPolicy,
}

impl Store {
    /// Checks the settings and builds the client; no request is made.
    pub fn new(settings: AzureSettings) -> Result<Self> {
        let AzureSettings {
            storage_account,
            storage_access_key,
            container,
            endpoint,
            retry,
        } = settings;
        let invalid = |what: String| {
            Error::new(
                ErrorKind::Config,
                format!("azure {storage_account}/{container}: {what}"),
            )
        };
        if storage_account.is_empty() {
            return Err(invalid("storage_account is empty".into()));
        }
        if container.is_empty() {
            return Err(invalid("container is empty".into()));
        }
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let url = Url::parse(&endpoint).map_err(|e| {
            invalid(format!(
                "the blob endpoint {} is not a URL: {e}",
                display_endpoint(&endpoint)
            ))
            .with_hint("set `endpoint` to the blob service URL, such as https://ACCOUNT.blob.core.windows.net")
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(format!(
                "the blob endpoint {} is not an http or https URL",
                display_endpoint(&endpoint)
            ))
            .with_hint("set `endpoint` to the blob service URL, such as https://ACCOUNT.blob.core.windows.net"));
        }
        let key_ok = base64::engine::general_purpose::STANDARD
            .decode(storage_access_key.expose().trim())
            .is_ok_and(|k| !k.is_empty());
        if !key_ok {
            return Err(invalid("storage_access_key is not a base64 account key".into())
                .with_hint("copy one of the storage account's access keys (key1 or key2) into `storage_access_key`"));
        }
        let credentials = StorageCredentials::access_key(
            storage_account.clone(),
            azure_core::auth::Secret::new(storage_access_key.expose().trim().to_string()),
        );
        let location = CloudLocation::Custom {
            account: storage_account.clone(),
            uri: endpoint.clone(),
        };
        let options = ClientOptions::new(TransportOptions::new(Arc::new(
            crate::capped::CappedErrors(http_client()?),
        )))
        .retry(RetryOptions::none());
        let client = ClientBuilder::with_location(location, credentials)
            .client_options(options)
            .container_client(container.clone());
        Ok(Self {
            container: client,
            account: storage_account,
            container_name: container,
            endpoint: display_endpoint(&endpoint),
            retry,
        })
    }

    /// `azure account/container`, for messages.
    pub fn describe(&self) -> String {
        format!("azure {}/{}", self.account, self.container_name)
    }

    /// The names of this container, for messages.
    pub fn names(&self) -> Names<'_> {
        Names {
            account: &self.account,
            container: &self.container_name,
            endpoint: &self.endpoint,
        }
    }

    /// Our error for a failed request: what was done, why it failed, what to do.
    pub fn error(&self, action: &str, err: azure_core::Error) -> Error {
        let Failure {
            kind,
            reason,
            hint,
            temporary,
        } = classify(&err, self.names());
        let mut out = Error::new(
            kind,
            format!("{}: cannot {action}: {reason}", self.describe()),
        );
        if let Some(hint) = hint {
            out = out.with_hint(hint);
        }
        if temporary {
            out = out.temporary();
        }
        out.with_source(err)
    }

    /// Creates the container, which may exist already.
    pub async fn create_container(&self) -> Result<()> {
        self.retry
            .run("create container", || async {
                match self.container.create().await {
                    Ok(()) => Ok(()),
                    Err(e) if crate::errors::error_code(&e) == Some("ContainerAlreadyExists") => {
                        Ok(())
                    }
                    Err(e) => Err(self.error("create the container", e)),
                }
            })
            .await
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("account", &self.account)
            .field("container", &self.container_name)
            .field("endpoint", &self.endpoint)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// The HTTP client: rustls, time limits on connecting and on silent connections.
fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        // As the SDK's own client: idle pooled connections can make hyper hang.
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::Destination,
                format!("azure: cannot set up the HTTP client: {e}"),
            )
        })
}

/// A time given as Unix seconds and nanoseconds (as the SDK's times give it), as ours.
pub(crate) fn to_chrono(seconds: i64, nanos: u32) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(seconds, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_backup_core::secret::Secret;

    fn settings(endpoint: &str, key: &str) -> AzureSettings {
        AzureSettings {
            storage_account: "acct".into(),
            storage_access_key: Secret::new(key),
            container: "backups".into(),
            endpoint: endpoint.into(),
            retry: RetryPolicy::none(),
        }
    }

    #[test]
    fn endpoints_are_shown_without_credentials_or_query() {
        assert_eq!(
            display_endpoint("https://user:pw@acct.blob.example/?sv=1&sig=SECRET"),
            "https://acct.blob.example"
        );
        assert_eq!(
            display_endpoint("http://127.0.0.1:10000/devstoreaccount1/"),
            "http://127.0.0.1:10000/devstoreaccount1"
        );
    }

    #[test]
    fn bad_settings_are_config_errors_without_the_key() {
        let err = Store::new(settings("not a url", "a2V5")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("azure acct/backups"), "{err}");
        let err = Store::new(settings("ftp://host/x", "a2V5")).unwrap_err();
        assert!(err.to_string().contains("not an http"), "{err}");
        let err =
            Store::new(settings("https://acct.blob.example", "not-base64-SECRET!")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("storage_access_key"), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(Store::new(settings("https://acct.blob.example/", "a2V5")).is_ok());
    }
}
