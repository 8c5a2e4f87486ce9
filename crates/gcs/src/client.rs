//! What every request shares: the HTTP client with its time limits, the API's URLs, the
//! access token, the retry policy, and the translation of failures into our errors.

use std::fmt::{self, Write as _};
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use rustls_pki_types::pem::PemObject as _;
use serde::Deserialize;
use service_backup_core::destination::RetryPolicy;
use service_backup_core::{Error, ErrorKind, Result};

use crate::auth::{DEFAULT_METADATA_HOST, ServiceAccount, Source, TokenSource};
use crate::http::{read_limited, transport_reason};
use crate::settings::GcsSettings;

/// Google Cloud Storage's endpoint, when the settings name none.
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";
/// Time allowed to open a connection: an unreachable endpoint fails within seconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed without any byte moving on a connection before it is given up.
const READ_TIMEOUT: Duration = Duration::from_mins(2);
/// The longest error answer read.
const MAX_ERROR_ANSWER: usize = 64 * 1024;

/// One bucket on one endpoint, with the credentials to reach it.
pub(crate) struct Client {
    pub http: reqwest::Client,
    /// The endpoint without user info or query, for messages and URLs.
    pub endpoint: String,
    pub bucket: String,
    pub project_id: String,
    pub retry: RetryPolicy,
    /// The window of a read's pace (see [`GcsSettings::stall_timeout`]).
    pub stall_timeout: Duration,
    tokens: TokenSource,
}

/// What a request did, for messages: `list "a/"`, `upload x.json`.
pub(crate) type Action<'a> = &'a str;

impl Client {
    /// Checks the settings and builds the client; no request is made.
    pub fn new(settings: GcsSettings) -> Result<Self> {
        let GcsSettings {
            service_account_json,
            metadata_host,
            ca_cert,
            project_id,
            bucket_name,
            endpoint,
            retry,
            stall_timeout,
            ..
        } = settings;
        let what = format!("gcs bucket {bucket_name}");
        let invalid = |why: &str| Error::new(ErrorKind::Config, format!("{what}: {why}"));
        if bucket_name.is_empty() {
            return Err(invalid("bucket_name is empty"));
        }
        if project_id.is_empty() {
            return Err(invalid("project_id is empty"));
        }
        let endpoint = endpoint
            .as_deref()
            .unwrap_or(DEFAULT_ENDPOINT)
            .trim_end_matches('/')
            .to_string();
        let url = Url::parse(&endpoint).ok().filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.query().is_none()
                && u.username().is_empty()
                && u.password().is_none()
        });
        if url.is_none() {
            return Err(invalid("endpoint is not an http or https URL")
                .with_hint("set `endpoint` to the JSON API's base URL, such as http://127.0.0.1:4443 for an emulator, or leave it out for Google Cloud Storage"));
        }
        let tokens = match &service_account_json {
            Some(key) => {
                TokenSource::new(Source::Key(Box::new(ServiceAccount::parse(key, &what)?)))
            }
            None => TokenSource::metadata(
                &metadata_host
                    .or_else(|| std::env::var("GCE_METADATA_HOST").ok())
                    .filter(|h| !h.trim().is_empty())
                    .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_string()),
            ),
        };
        let mut http = reqwest::Client::builder()
            // The system's roots (as the s3 destination), not a list compiled in: a CA the
            // VM's operators installed is trusted, and so is `ca_cert`.
            .tls_built_in_webpki_certs(false)
            .tls_built_in_native_certs(true);
        if let Some(pem) = &ca_cert {
            for cert in ca_certificates(pem, &what)? {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            // Session URIs are absolute; nothing else redirects.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Destination,
                    format!("{what}: cannot set up the HTTP client: {e}"),
                )
            })?;
        Ok(Self {
            http,
            endpoint,
            bucket: bucket_name,
            project_id,
            retry,
            stall_timeout,
            tokens,
        })
    }

    /// `gcs bucket NAME`, for messages.
    pub fn describe(&self) -> String {
        format!("gcs bucket {}", self.bucket)
    }

    /// Who the tokens are for: `the service account a@b`, or the VM's.
    pub fn principal(&self) -> String {
        self.tokens.principal()
    }

    /// The URL of the JSON API path `path` (which starts with `/`).
    pub fn api(&self, path: &str) -> String {
        format!("{}/storage/v1{path}", self.endpoint)
    }

    /// The URL of the upload path `path` (which starts with `/`).
    pub fn upload_api(&self, path: &str) -> String {
        format!("{}/upload/storage/v1{path}", self.endpoint)
    }

    /// The URL of object `key` in the bucket.
    pub fn object_url(&self, key: &str) -> String {
        self.api(&format!("/b/{}/o/{}", encode(&self.bucket), encode(key)))
    }

    /// Sends a request with a current access token; any HTTP status is returned as is.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        action: Action<'_>,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        let token = self.tokens.token(&self.http, &self.describe()).await?;
        let request = build(self.http.request(method, url).bearer_auth(token.expose()));
        let response = request
            .send()
            .await
            .map_err(|e| self.transport(action, &e))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            // The token expired early or was revoked: the next attempt fetches a new one.
            self.tokens.forget().await;
        }
        Ok(response)
    }

    /// `response` if it succeeded, else our error for it.
    pub async fn check(&self, action: Action<'_>, response: Response) -> Result<Response> {
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.refused(action, response).await)
    }

    /// Our error for an answer that is not a success.
    pub async fn refused(&self, action: Action<'_>, response: Response) -> Error {
        let status = response.status();
        let message = read_limited(response, MAX_ERROR_ANSWER)
            .await
            .ok()
            .and_then(|body| service_message(&body));
        self.status_error(action, status, message.as_deref())
    }

    /// Our error for HTTP status `status`, with the service's own message if it gave one.
    pub fn status_error(
        &self,
        action: Action<'_>,
        status: StatusCode,
        message: Option<&str>,
    ) -> Error {
        let said = message.map_or_else(String::new, |m| format!(": {m}"));
        let base = format!("{}: cannot {action}", self.describe());
        let code = status.as_u16();
        match code {
            401 => Error::new(
                ErrorKind::Destination,
                format!("{base}: the service refused the access token (401){said}"),
            )
            .with_hint(self.tokens.what_to_check()),
            403 => Error::new(
                ErrorKind::Destination,
                format!(
                    "{base}: {} is not allowed to (403){said}",
                    self.principal()
                ),
            )
            .with_hint(format!(
                "grant the service account roles/storage.objectAdmin on bucket {} (and storage.buckets.create in project {} for the first backup to create it)",
                self.bucket, self.project_id
            )),
            404 => Error::new(ErrorKind::NotFound, format!("{base}: not found (404){said}")),
            408 | 429 | 500..=599 => Error::new(
                ErrorKind::Destination,
                format!("{base}: the service answered {code}{said}"),
            )
            .temporary(),
            _ => Error::new(
                ErrorKind::Destination,
                format!("{base}: the service refused it ({code}){said}"),
            ),
        }
    }

    /// Our error for a request that got no answer.
    pub fn transport(&self, action: Action<'_>, err: &reqwest::Error) -> Error {
        let reason = transport_reason(err);
        if reason.contains("certificate") {
            // Not temporary: the same certificate is refused on every attempt.
            return Error::new(
                ErrorKind::Destination,
                format!(
                    "{}: cannot {action}: the TLS certificate of {} is not trusted: {reason}",
                    self.describe(),
                    self.endpoint
                ),
            )
            .with_hint("set ca_cert to the PEM of the certificate authority that signed the endpoint's certificate (or install it in the VM's trust store), and check that endpoint names the host in that certificate");
        }
        Error::new(
            ErrorKind::Destination,
            format!(
                "{}: cannot {action}: cannot connect to {}: {}",
                self.describe(),
                self.endpoint,
                reason
            ),
        )
        .with_hint("check the endpoint and the network between this VM and the storage service")
        .temporary()
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("project_id", &self.project_id)
            .field("principal", &self.tokens.principal())
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// The certificates of a `ca_cert`, checked: one or more PEM certificates that the TLS
/// stack accepts as trust anchors.
fn ca_certificates(pem: &str, what: &str) -> Result<Vec<reqwest::Certificate>> {
    let invalid = |why: String| {
        Error::new(
            ErrorKind::Config,
            format!("{what}: ca_cert is not a usable certificate: {why}"),
        )
        .with_hint("set ca_cert to the PEM text of the CA certificate (-----BEGIN CERTIFICATE----- …) that signed the endpoint's certificate")
    };
    let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
        .map_err(|e| invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid("no CERTIFICATE block found".into()));
    }
    // reqwest takes any DER here and drops the bad ones when it builds the client; parse
    // them now, as the TLS stack will, so that a bad one is an error and not ignored.
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let der = der.map_err(|e| invalid(format!("{e:?}")))?;
        roots.add(der).map_err(|e| invalid(e.to_string()))?;
    }
    Ok(certs)
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

/// The message of a JSON API error answer, shortened to one line.
fn service_message(body: &[u8]) -> Option<String> {
    let message = serde_json::from_slice::<ErrorAnswer>(body)
        .ok()?
        .error
        .message?;
    let line: String = message
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    (!line.is_empty()).then_some(line)
}

/// Percent-encodes a path segment or query value: everything but unreserved characters.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_as_one_path_segment() {
        assert_eq!(encode("a/b c+d.json"), "a%2Fb%20c%2Bd.json");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn service_messages_are_one_short_line() {
        let body = br#"{"error":{"code":404,"message":"No such object: b/x\nmore"}}"#;
        assert_eq!(service_message(body).unwrap(), "No such object: b/x");
        assert!(service_message(b"Not Found").is_none());
    }
}
