//! The S3 client of a destination: one HTTP stack (hyper and rustls), the credentials the
//! settings name (static, or the SDK's standard chain), path-style addressing for
//! S3-compatible endpoints, and the private CA of `ca_cert` added to the system's roots.
//! With SSE-KMS under a named key, a KMS client on the same stack checks that key.

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::SharedHttpClient;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use service_backup_core::{Error, ErrorKind, Result};

use crate::settings::{S3Credentials, S3Settings, ServerSideEncryption};

/// The clients of one destination.
#[derive(Debug)]
pub(crate) struct Clients {
    /// The S3 client.
    pub s3: Client,
    /// A KMS client when SSE-KMS names a key, to check that key before the first write.
    pub kms: Option<aws_sdk_kms::Client>,
}

/// Builds the clients; no request is sent and nothing is read from the environment (the
/// credential chain reads it at the first request).
pub(crate) fn build(settings: &S3Settings) -> Result<Clients> {
    let mut trust = TrustStore::default();
    if let Some(pem) = &settings.ca_cert {
        check_ca_cert(pem, &settings.bucket_name)?;
        trust = trust.with_pem_certificate(pem.as_bytes());
    }
    let tls_context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("s3 bucket {}: cannot set up TLS: {e}", settings.bucket_name),
            )
        })?;
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(tls_context)
        .build_https();
    let region = Region::new(settings.region().to_string());
    let credentials = match &settings.credentials {
        // Static credentials: nothing on the VM (environment, profiles, instance metadata)
        // can change which account the backups go to.
        S3Credentials::Static {
            access_key_id,
            secret_access_key,
        } => SharedCredentialsProvider::new(Credentials::new(
            access_key_id.clone(),
            secret_access_key.expose().to_string(),
            None,
            None,
            "service-backup configuration",
        )),
        S3Credentials::EnvOrInstanceProfile => SharedCredentialsProvider::new(StandardChain {
            http_client: http_client.clone(),
            region: region.clone(),
            chain: std::sync::Arc::default(),
        }),
    };
    let kms = match &settings.server_side_encryption {
        Some(ServerSideEncryption::Kms { key_id: Some(_) }) => {
            let mut config = aws_sdk_kms::Config::builder()
                .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
                .http_client(http_client.clone())
                .credentials_provider(credentials.clone())
                .region(region.clone())
                .retry_config(RetryConfig::disabled())
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(settings.connect_timeout)
                        .operation_timeout(settings.request_timeout)
                        .build(),
                );
            // S3-compatible stores that have a KMS (moto, LocalStack) serve it on the same
            // endpoint; Amazon S3's is the region's KMS endpoint.
            if let Some(endpoint) = &settings.endpoint_url {
                config = config.endpoint_url(endpoint.trim_end_matches('/'));
            }
            Some(aws_sdk_kms::Client::from_conf(config.build()))
        }
        _ => None,
    };
    let mut config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http_client)
        .credentials_provider(credentials)
        .region(region)
        .interceptor(crate::capped::CapErrorBodies)
        // Retries are ours (RetryPolicy), with a budget the caller chooses.
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.connect_timeout)
                .build(),
        );
    if let Some(endpoint) = &settings.endpoint_url {
        config = config
            .endpoint_url(endpoint.trim_end_matches('/'))
            .force_path_style(true);
    }
    Ok(Clients {
        s3: Client::from_conf(config.build()),
        kms,
    })
}

/// The SDK's default credential chain, built at the first request: building it is async
/// (it reads the shared config files), and a destination is built without a runtime.
#[derive(Debug)]
struct StandardChain {
    http_client: SharedHttpClient,
    region: Region,
    chain: std::sync::Arc<tokio::sync::OnceCell<DefaultCredentialsChain>>,
}

impl ProvideCredentials for StandardChain {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let http_client = self.http_client.clone();
        let region = self.region.clone();
        let chain = self.chain.clone();
        provider::future::ProvideCredentials::new(async move {
            check_web_identity_token_file()?;
            // In a task of its own: a hostile answer (instance metadata, STS) can make the
            // SDK panic, which must become a failed backup, not a dead agent.
            let resolved = tokio::spawn(async move {
                let chain = chain
                    .get_or_init(|| async {
                        // Its STS client (web identity) and IMDS client use our HTTP stack.
                        let conf = ProviderConfig::default()
                            .with_http_client(http_client)
                            .with_region(Some(region.clone()));
                        DefaultCredentialsChain::builder()
                            .region(region)
                            .configure(conf)
                            .build()
                            .await
                    })
                    .await;
                chain.provide_credentials().await
            })
            .await;
            match resolved {
                Ok(Ok(credentials)) => check_credentials(credentials),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(CredentialsError::provider_error(NOT_VALID)),
            }
        })
    }
}

/// The largest web identity token file taken; real tokens are a few KiB.
const MAX_TOKEN_FILE: u64 = 64 * 1024;

/// Refuses an `AWS_WEB_IDENTITY_TOKEN_FILE` the SDK would read whole however large (or
/// endless, like a device): it must be a regular file (after symlinks) of at most 64 KiB.
fn check_web_identity_token_file() -> Result<(), CredentialsError> {
    let Some(path) = std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE") else {
        return Ok(());
    };
    let path = std::path::Path::new(&path);
    let refuse = |why: String| {
        Err(CredentialsError::invalid_configuration(format!(
            "AWS_WEB_IDENTITY_TOKEN_FILE {}: {why}",
            path.display()
        )))
    };
    match std::fs::metadata(path) {
        Err(e) => refuse(format!("cannot read it: {e}")),
        Ok(m) if !m.is_file() => refuse("not a regular file".into()),
        Ok(m) if m.len() > MAX_TOKEN_FILE => refuse(format!(
            "{} bytes, more than the {MAX_TOKEN_FILE} a web identity token file may have",
            m.len()
        )),
        Ok(_) => Ok(()),
    }
}

/// The error of credentials the SDK could not take; it never carries their values.
const NOT_VALID: &str = "the instance metadata service answered credentials that are not valid";

/// The longest session token taken; real ones are about 1-2 KiB.
const MAX_TOKEN_LEN: usize = 4096;

/// The longest access key id or secret taken; real ones are 20 and 40 characters.
const MAX_KEY_LEN: usize = 256;

/// Refuses credentials that could not go into a request header (the SDK's signer panics
/// on those) or are unreasonably long, without printing them.
fn check_credentials(credentials: Credentials) -> provider::Result {
    let visible = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
    };
    let ok = visible(credentials.access_key_id(), MAX_KEY_LEN)
        && visible(credentials.secret_access_key(), MAX_KEY_LEN)
        && credentials
            .session_token()
            .is_none_or(|t| visible(t, MAX_TOKEN_LEN));
    if ok {
        Ok(credentials)
    } else {
        Err(CredentialsError::provider_error(NOT_VALID))
    }
}

/// Checks `ca_cert` the way the TLS stack will read it (which cannot report a bad one
/// later): one or more PEM certificates, each usable as a trust anchor.
fn check_ca_cert(pem: &str, bucket: &str) -> Result<()> {
    let invalid = |why: String| {
        Error::new(
            ErrorKind::Config,
            format!("s3 bucket {bucket}: ca_cert is not a usable certificate: {why}"),
        )
        .with_hint("set ca_cert to the PEM text of the CA certificate (-----BEGIN CERTIFICATE----- …) that signed the endpoint's certificate")
    };
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("{e:?}")))?;
    if certs.is_empty() {
        return Err(invalid("no CERTIFICATE block found".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| invalid(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_backup_core::secret::Secret;

    #[test]
    fn a_bad_ca_cert_is_a_config_error_not_a_panic() {
        for pem in [
            "not a certificate",
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            let mut s = S3Settings::new("bucket", "id", Secret::new("secret"));
            s.ca_cert = Some(pem.into());
            let err = build(&s).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config);
            assert!(err.to_string().contains("ca_cert"), "{err}");
            assert!(err.to_string().contains("s3 bucket bucket"), "{err}");
        }
    }
}
