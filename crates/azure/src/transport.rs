//! The HTTP transport under the SDK: our reqwest client (time limits, the system's roots
//! plus the destination's `ca_cert`), and a bound on what is read of an error answer: the
//! SDK collects such a body whole to parse the error, so a hostile or broken endpoint
//! announcing gigabytes would otherwise be held in memory. Only the first
//! [`ERROR_BODY_CAP`] bytes of an answer that is not a success are passed on.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::error::{Error as SdkError, ErrorKind as SdkKind};
use azure_core::http::headers::{HeaderName, HeaderValue, Headers};
use azure_core::http::{AsyncRawResponse, Body, HttpClient, Method, Request};
use futures::{StreamExt as _, TryStreamExt as _};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use service_backup_core::{Error, ErrorKind, Result};

/// The most bytes read of an answer that is not a success.
pub(crate) const ERROR_BODY_CAP: usize = 8 * 1024;
/// Time allowed to open a connection: an unreachable endpoint fails within seconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed without any byte moving on a connection before it is given up.
const READ_TIMEOUT: Duration = Duration::from_mins(2);

/// The HTTP client of a destination: rustls with the system's roots and `ca_cert`, time
/// limits on connecting and on silent connections, no redirects.
pub(crate) fn http_client(ca_cert: Option<&str>, describe: &str) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        // The service never redirects; a redirect would carry the signed request elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        // One trust store with the other destinations: the system's roots (where an
        // operator installs a private CA on the VM), not a list compiled in.
        .tls_built_in_root_certs(false);
    let system = rustls_native_certs::load_native_certs();
    for cert in system.certs {
        // A system root that rustls cannot use is skipped, as the system's own tools do.
        if let Ok(cert) = reqwest::Certificate::from_der(&cert) {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some(pem) = ca_cert {
        let invalid = |why: String| {
            Error::new(
                ErrorKind::Config,
                format!("{describe}: ca_cert is not a usable certificate: {why}"),
            )
            .with_hint("set ca_cert to the PEM text of the CA certificate (-----BEGIN CERTIFICATE----- …) that signed the endpoint's certificate")
        };
        // Checked with the parser of the TLS stack, which would only fail at the first
        // connection (or when the client is built, without saying why).
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("{e:?}")))?;
        if certs.is_empty() {
            return Err(invalid("no CERTIFICATE block found".into()));
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs {
            roots
                .add(cert.clone())
                .map_err(|e| invalid(e.to_string()))?;
            let cert = reqwest::Certificate::from_der(&cert).map_err(|e| invalid(e.to_string()))?;
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| {
        Error::new(
            ErrorKind::Destination,
            format!("{describe}: cannot set up the HTTP client: {e}"),
        )
    })
}

/// The SDK's transport over our client, with error answers cut to [`ERROR_BODY_CAP`].
#[derive(Debug)]
pub(crate) struct Transport(pub(crate) reqwest::Client);

#[async_trait]
impl HttpClient for Transport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let method = method(request.method()).ok_or_else(|| {
            SdkError::with_message(SdkKind::Other, "an HTTP method the service does not use")
        })?;
        let mut out = self.0.request(method, request.url().clone());
        for (name, value) in request.headers().iter() {
            out = out.header(name.as_str(), value.as_str());
        }
        out = match request.body() {
            Body::Bytes(bytes) => out.body(bytes.clone()),
            // Every request of ours has its body in memory (blocks, manifests, lists).
            Body::SeekableStream(_) => {
                return Err(SdkError::with_message(
                    SdkKind::Other,
                    "streamed request bodies are not used",
                ));
            }
        };
        let response = match out.send().await {
            Ok(response) => response,
            Err(e) => {
                let kind = if e.is_connect() {
                    SdkKind::Connection
                } else {
                    SdkKind::Io
                };
                return Err(SdkError::new(kind, e));
            }
        };
        let status = response.status();
        let headers = headers(response.headers());
        let body = response
            .bytes_stream()
            .map_err(|e| SdkError::new(SdkKind::Io, e));
        let body = if status.is_success() {
            body.boxed()
        } else {
            body.scan(ERROR_BODY_CAP, |left, item| {
                let item = match item {
                    Ok(_) if *left == 0 => return futures::future::ready(None),
                    Ok(mut bytes) => {
                        bytes.truncate(*left);
                        *left -= bytes.len();
                        Ok(bytes)
                    }
                    Err(e) => Err(e),
                };
                futures::future::ready(Some(item))
            })
            .boxed()
        };
        Ok(AsyncRawResponse::new(status.as_u16().into(), headers, body))
    }
}

fn method(method: Method) -> Option<reqwest::Method> {
    Some(match method {
        Method::Delete => reqwest::Method::DELETE,
        Method::Get => reqwest::Method::GET,
        Method::Head => reqwest::Method::HEAD,
        Method::Patch => reqwest::Method::PATCH,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        _ => return None,
    })
}

/// The answer's headers in the SDK's form; values that are not text are left out (the
/// service sends none).
fn headers(map: &reqwest::header::HeaderMap) -> Headers {
    let map: HashMap<HeaderName, HeaderValue> = map
        .iter()
        .filter_map(|(name, value)| {
            let value = value.to_str().ok()?;
            Some((
                HeaderName::from(name.as_str().to_owned()),
                HeaderValue::from(value.to_owned()),
            ))
        })
        .collect();
    Headers::from(map)
}
