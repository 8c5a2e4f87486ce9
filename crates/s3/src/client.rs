//! The S3 client of a destination: one HTTP stack (hyper and rustls), static credentials
//! from the settings only, path-style addressing for S3-compatible endpoints, and the
//! private CA of `ca_cert` added to the system's roots.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use service_backup_core::{Error, ErrorKind, Result};

use crate::settings::S3Settings;

/// Builds the client; no request is sent and nothing is read from the environment.
pub(crate) fn build(settings: &S3Settings) -> Result<Client> {
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
    // Static credentials: nothing on the VM (environment, profiles, instance metadata) can
    // change which account the backups go to.
    let credentials = Credentials::new(
        settings.access_key_id.clone(),
        settings.secret_access_key.expose().to_string(),
        None,
        None,
        "service-backup configuration",
    );
    let mut config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http_client)
        .credentials_provider(credentials)
        .region(Region::new(settings.region().to_string()))
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
    Ok(Client::from_conf(config.build()))
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
