//! The container client and what every request shares: names for messages, the retry
//! policy, the authorization (account key, SAS or managed identity), the HTTP transport
//! with its time limits and trust store.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, HttpClient, RetryOptions, Transport, Url};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use service_backup_core::destination::{Immutability, RetryPolicy};
use service_backup_core::{Error, ErrorKind, Result};

use crate::errors::{Auth, Failure, Names, classify};
use crate::settings::{AzureCredentials, AzureSettings, display_endpoint};

/// One container of one storage account.
pub(crate) struct Store {
    /// The SDK's client of the container.
    pub container: BlobContainerClient,
    /// The storage account, for messages.
    pub account: String,
    /// The container's name, for messages.
    pub container_name: String,
    /// The blob service URL without query or user info, for messages.
    pub endpoint: String,
    /// How requests are authorized, for messages.
    pub auth: Auth,
    /// Immutability of the blobs written, if any.
    pub immutability: Option<Immutability>,
    /// Retries of temporary failures: the SDK's own retries are off.
    pub retry: RetryPolicy,
    /// The window of a read's pace (see [`AzureSettings::stall_timeout`]).
    pub stall_timeout: Duration,
}

impl Store {
    /// Checks the settings and builds the client; no request is made.
    pub fn new(settings: AzureSettings) -> Result<Self> {
        Self::build(settings, None)
    }

    /// As [`Store::new`], with `transport` instead of the network (to see the requests).
    pub fn build(settings: AzureSettings, transport: Option<Arc<dyn HttpClient>>) -> Result<Self> {
        let AzureSettings {
            storage_account,
            credentials,
            container,
            endpoint,
            ca_cert,
            immutability,
            retry,
            stall_timeout,
        } = settings;
        let describe = format!("azure {storage_account}/{container}");
        let invalid = |what: String| Error::new(ErrorKind::Config, format!("{describe}: {what}"));
        if storage_account.is_empty() {
            return Err(invalid("storage_account is empty".into()));
        }
        if container.is_empty() {
            return Err(invalid("container is empty".into()));
        }
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let url_hint =
            "set `endpoint` to the blob service URL, such as https://ACCOUNT.blob.core.windows.net";
        let mut url = Url::parse(&endpoint).map_err(|e| {
            invalid(format!(
                "the blob endpoint {} is not a URL: {e}",
                display_endpoint(&endpoint)
            ))
            .with_hint(url_hint)
        })?;
        if !matches!(url.scheme(), "http" | "https")
            || url.host_str().is_none()
            || url.cannot_be_a_base()
        {
            return Err(invalid(format!(
                "the blob endpoint {} is not an http or https URL",
                display_endpoint(&endpoint)
            ))
            .with_hint(url_hint));
        }
        url.set_query(None);
        url.path_segments_mut()
            .expect("an http URL has a path")
            .pop_if_empty()
            .push(&container);
        let http = crate::transport::http_client(ca_cert.as_deref(), &describe)?;
        let transport =
            transport.unwrap_or_else(|| Arc::new(crate::transport::Transport(http.clone())));
        let mut client_options = ClientOptions {
            transport: Some(Transport::new(transport)),
            // Retries are ours (RetryPolicy), with a budget the caller chooses.
            retry: RetryOptions::none(),
            ..ClientOptions::default()
        };
        let mut credential: Option<Arc<dyn TokenCredential>> = None;
        let auth = match &credentials {
            AzureCredentials::AccessKey(key) => {
                let key = base64::engine::general_purpose::STANDARD
                    .decode(key.expose().trim())
                    .ok()
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| {
                        invalid("storage_access_key is not a base64 account key".into())
                            .with_hint("copy one of the storage account's access keys (key1 or key2) into `storage_access_key`")
                    })?;
                client_options
                    .per_try_policies
                    .push(Arc::new(crate::shared_key::SharedKey::new(
                        &storage_account,
                        key,
                    )));
                Auth::AccessKey
            }
            AzureCredentials::SasToken(token) => {
                let query = token.expose().trim().trim_start_matches('?');
                let sas_hint = "set `sas_token` to the token's query string (sv=…&sig=…), as the portal or `az storage container generate-sas` prints it";
                if query.is_empty() || !query.split('&').any(|p| p.starts_with("sig=")) {
                    return Err(invalid(
                        "sas_token is not a shared access signature (it has no sig=)".into(),
                    )
                    .with_hint(sas_hint));
                }
                url.set_query(Some(query));
                Auth::Sas
            }
            AzureCredentials::ManagedIdentity(identity) => {
                if url.scheme() != "https" {
                    return Err(invalid(format!(
                        "a managed identity's tokens are only sent over https, and the blob endpoint {} is http",
                        display_endpoint(&endpoint)
                    ))
                    .with_hint("use the account's https endpoint, or `storage_access_key` or `sas_token` for an emulator over http"));
                }
                credential = Some(Arc::new(crate::identity::ManagedIdentityCredential::new(
                    http, identity,
                )));
                Auth::ManagedIdentity
            }
        };
        let options = BlobContainerClientOptions {
            client_options,
            ..BlobContainerClientOptions::default()
        };
        let client = BlobContainerClient::new(url, credential, Some(options))
            .map_err(|e| invalid(format!("cannot set up the client: {e}")).with_hint(url_hint))?;
        Ok(Self {
            container: client,
            account: storage_account,
            container_name: container,
            endpoint: display_endpoint(&endpoint),
            auth,
            immutability,
            retry,
            stall_timeout,
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
            auth: self.auth,
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
                match self.container.create(None).await {
                    Ok(_) => Ok(()),
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
            .field("auth", &self.auth)
            .field("immutability", &self.immutability)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// A time of the SDK as ours.
pub(crate) fn to_chrono(at: time::OffsetDateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(at.unix_timestamp(), at.nanosecond())
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_backup_core::secret::Secret;

    fn settings(endpoint: &str, key: &str) -> AzureSettings {
        AzureSettings::with_access_key(
            "acct",
            Secret::new(key),
            "backups",
            endpoint,
            RetryPolicy::none(),
        )
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
