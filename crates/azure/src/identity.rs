//! Tokens of the VM's managed identity, so that no secret of the storage account is on the
//! VM: asked of the instance metadata service (or of the `IDENTITY_ENDPOINT` /
//! `MSI_ENDPOINT` that App Service, Arc and Cloud Shell provide instead), kept until five
//! minutes before they expire, and sent as bearer tokens by the SDK.

use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::error::{Error as SdkError, ErrorKind as SdkKind};
use azure_core::http::Url;
use time::OffsetDateTime;

use crate::settings::ManagedIdentity;

/// The audience of storage tokens.
pub(crate) const STORAGE_RESOURCE: &str = "https://storage.azure.com/";
/// The instance metadata service's token endpoint, on every Azure VM.
pub(crate) const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
/// A token is asked again this long before it expires.
const REFRESH_BEFORE: Duration = Duration::from_mins(5);
/// The metadata service answers within a second; a VM without one must not hang a backup.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The most bytes of a token answer read: a token is a few KiB, and an endpoint that
/// sends more (a hostile stand-in, a proxy's page) must not fill memory.
pub(crate) const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// A token request: its URL and its headers.
pub(crate) type TokenRequest = (Url, Vec<(&'static str, String)>);

/// Where tokens come from, found once from the settings and the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TokenSource {
    /// The instance metadata service (or a stand-in): `Metadata: true`.
    Imds(String),
    /// App Service and Arc: `IDENTITY_ENDPOINT` with the `X-IDENTITY-HEADER` secret.
    IdentityEndpoint { endpoint: String, header: String },
    /// Cloud Shell and older App Service: `MSI_ENDPOINT` with the `Secret` header.
    MsiEndpoint { endpoint: String, secret: String },
}

impl TokenSource {
    /// The configured endpoint, else the environment's, else the metadata service.
    pub fn find(identity: &ManagedIdentity) -> Self {
        if let Some(endpoint) = &identity.endpoint {
            return Self::Imds(endpoint.clone());
        }
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        if let (Some(endpoint), Some(header)) = (var("IDENTITY_ENDPOINT"), var("IDENTITY_HEADER")) {
            return Self::IdentityEndpoint { endpoint, header };
        }
        if let Some(endpoint) = var("MSI_ENDPOINT") {
            return Self::MsiEndpoint {
                endpoint,
                secret: var("MSI_SECRET").unwrap_or_default(),
            };
        }
        Self::Imds(IMDS_ENDPOINT.to_string())
    }

    /// The token request: its URL and headers, for `client_id` (a user-assigned
    /// identity) or the system-assigned identity.
    pub fn request(&self, client_id: Option<&str>) -> Result<TokenRequest, String> {
        let (endpoint, version, id_name, headers) = match self {
            Self::Imds(endpoint) => (
                endpoint,
                "2018-02-01",
                "client_id",
                vec![("metadata", "true".to_string())],
            ),
            Self::IdentityEndpoint { endpoint, header } => (
                endpoint,
                "2019-08-01",
                "client_id",
                vec![("x-identity-header", header.clone())],
            ),
            Self::MsiEndpoint { endpoint, secret } => (
                endpoint,
                "2017-09-01",
                "clientid",
                vec![("secret", secret.clone())],
            ),
        };
        let mut url = Url::parse(endpoint)
            .map_err(|e| format!("the token endpoint {endpoint} is not a URL: {e}"))?;
        // The metadata service and the App Service or Arc agents answer on plain http on the
        // VM itself; plain http anywhere else would carry the token and the identity
        // header across the network unencrypted.
        if url.scheme() == "http" && !url.host_str().is_some_and(on_this_machine) {
            return Err(format!(
                "the token endpoint {endpoint} is plain http on a host that is neither loopback nor link-local: the token and the identity header would cross the network unencrypted (use https, or the metadata service at 169.254.169.254)"
            ));
        }
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("api-version", version)
                .append_pair("resource", STORAGE_RESOURCE);
            if let Some(id) = client_id {
                query.append_pair(id_name, id);
            }
        }
        Ok((url, headers))
    }
}

/// The SDK's token source for a managed identity.
pub(crate) struct ManagedIdentityCredential {
    client: reqwest::Client,
    source: TokenSource,
    client_id: Option<String>,
    cached: tokio::sync::Mutex<Option<AccessToken>>,
}

impl std::fmt::Debug for ManagedIdentityCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            TokenSource::Imds(endpoint) => format!("metadata service {endpoint}"),
            TokenSource::IdentityEndpoint { endpoint, .. } => {
                format!("IDENTITY_ENDPOINT {endpoint}")
            }
            TokenSource::MsiEndpoint { endpoint, .. } => format!("MSI_ENDPOINT {endpoint}"),
        };
        f.debug_struct("ManagedIdentityCredential")
            .field("source", &source)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl ManagedIdentityCredential {
    /// A token source for `identity`; no request is made yet.
    pub fn new(client: reqwest::Client, identity: &ManagedIdentity) -> Self {
        Self {
            client,
            source: TokenSource::find(identity),
            client_id: identity.client_id.clone(),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// Asks the endpoint for a new token.
    async fn fetch(&self) -> azure_core::Result<AccessToken> {
        let failed = |why: String| SdkError::with_message(SdkKind::Credential, why);
        let (url, headers) = self
            .source
            .request(self.client_id.as_deref())
            .map_err(failed)?;
        let shown = format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.path()
        );
        let mut request = self.client.get(url).timeout(REQUEST_TIMEOUT);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let mut response = request.send().await.map_err(|e| {
            failed(format!(
                "the managed identity endpoint {shown} did not answer: {}",
                innermost(&e)
            ))
        })?;
        let status = response.status();
        let too_large = || {
            failed(format!(
                "the answer of {shown} is larger than {} KiB: it is no token",
                MAX_TOKEN_ANSWER / 1024
            ))
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_TOKEN_ANSWER as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| failed(format!("the answer of {shown} could not be read: {e}")))?
        {
            if body.len() + chunk.len() > MAX_TOKEN_ANSWER {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(failed(format!(
                "the managed identity endpoint {shown} refused the token request ({})",
                status.as_u16()
            )));
        }
        parse_token(&body, OffsetDateTime::now_utc())
            .map_err(|why| failed(format!("the answer of {shown} is not a token: {why}")))
    }
}

#[async_trait]
impl TokenCredential for ManagedIdentityCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref()
            && token.expires_on - REFRESH_BEFORE > OffsetDateTime::now_utc()
        {
            return Ok(token.clone());
        }
        let token = self.fetch().await?;
        *cached = Some(token.clone());
        Ok(token)
    }
}

/// A token answer: `access_token`, and `expires_on` (Unix seconds, as a number or a
/// string) or `expires_in` (seconds from `now`).
pub(crate) fn parse_token(body: &[u8], now: OffsetDateTime) -> Result<AccessToken, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON ({e})"))?;
    let token = value
        .get("access_token")
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("no access_token")?;
    let number = |name: &str| {
        value.get(name).and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        })
    };
    let expires_on = if let Some(at) = number("expires_on") {
        OffsetDateTime::from_unix_timestamp(at).map_err(|e| format!("expires_on: {e}"))?
    } else if let Some(seconds) = number("expires_in") {
        now + time::Duration::seconds(seconds)
    } else {
        return Err("no expires_on or expires_in".into());
    };
    Ok(AccessToken::new(token.to_string(), expires_on))
}

/// The innermost cause of a transport error (`Connection refused`…).
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Whether `host` is loopback or link-local (the metadata service's 169.254.169.254).
fn on_this_machine(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback() || ip.is_link_local(),
        Ok(std::net::IpAddr::V6(ip)) => ip.is_loopback() || (ip.segments()[0] & 0xffc0) == 0xfe80,
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token endpoint on loopback whose answer holds a token of `len` bytes, announced by
    /// `Content-Length` or not (then ended by closing); returns its URL.
    fn token_endpoint(len: usize, announced: bool) -> String {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let body = format!(
                    r#"{{"access_token":"{}","expires_in":"3600"}}"#,
                    "A".repeat(len)
                );
                let length = if announced {
                    format!("Content-Length: {}\r\n", body.len())
                } else {
                    String::new()
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}Connection: close\r\n\r\n{body}"
                );
            }
        });
        format!("http://127.0.0.1:{port}/token")
    }

    #[tokio::test]
    async fn a_token_answer_larger_than_64_kib_is_refused() {
        let ask = |endpoint: String| async move {
            let identity = ManagedIdentity {
                client_id: None,
                endpoint: Some(endpoint),
            };
            ManagedIdentityCredential::new(reqwest::Client::new(), &identity)
                .fetch()
                .await
        };
        let token = ask(token_endpoint(2000, true)).await.unwrap();
        assert_eq!(token.token.secret().len(), 2000);
        for announced in [true, false] {
            let err = ask(token_endpoint(10 * 1024 * 1024, announced))
                .await
                .unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("is larger than 64 KiB: it is no token"),
                "{announced}: {text}"
            );
        }
    }

    #[test]
    fn the_metadata_service_is_asked_for_a_storage_token() {
        let source = TokenSource::Imds(IMDS_ENDPOINT.into());
        let (url, headers) = source.request(None).unwrap();
        assert_eq!(
            url.as_str(),
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fstorage.azure.com%2F"
        );
        assert_eq!(headers, vec![("metadata", "true".to_string())]);
        let (url, _) = source.request(Some("0000-11")).unwrap();
        assert!(url.as_str().ends_with("&client_id=0000-11"), "{url}");
    }

    #[test]
    fn app_service_and_cloud_shell_endpoints_carry_their_secret_header() {
        let source = TokenSource::IdentityEndpoint {
            endpoint: "http://127.0.0.1:41741/msi/token".into(),
            header: "H".into(),
        };
        let (url, headers) = source.request(Some("id")).unwrap();
        assert!(url.as_str().contains("api-version=2019-08-01"), "{url}");
        assert!(url.as_str().ends_with("client_id=id"), "{url}");
        assert_eq!(headers, vec![("x-identity-header", "H".to_string())]);
        let source = TokenSource::MsiEndpoint {
            endpoint: "http://localhost:50342/oauth2/token".into(),
            secret: "S".into(),
        };
        let (url, headers) = source.request(Some("id")).unwrap();
        assert!(url.as_str().ends_with("clientid=id"), "{url}");
        assert_eq!(headers, vec![("secret", "S".to_string())]);
    }

    #[test]
    fn plain_http_is_refused_off_this_machine() {
        for endpoint in [
            "http://169.254.169.254/metadata/identity/oauth2/token",
            "http://127.0.0.1:41741/msi/token",
            "http://localhost:50342/oauth2/token",
            "http://[::1]:9/token",
            "http://[fe80::1]:9/token",
            "https://identity.example.net/token",
        ] {
            let source = TokenSource::Imds(endpoint.into());
            assert!(source.request(None).is_ok(), "{endpoint}");
        }
        for endpoint in [
            "http://identity.example.net/token",
            "http://10.0.0.5:8080/token",
            "http://[2001:db8::1]/token",
        ] {
            let source = TokenSource::IdentityEndpoint {
                endpoint: endpoint.into(),
                header: "H".into(),
            };
            let refused = source.request(Some("id")).unwrap_err();
            assert!(
                refused.contains("is plain http on a host that is neither loopback nor link-local"),
                "{endpoint}: {refused}"
            );
        }
    }

    #[test]
    fn a_configured_endpoint_wins() {
        let identity = ManagedIdentity {
            client_id: None,
            endpoint: Some("http://127.0.0.1:9/token".into()),
        };
        assert_eq!(
            TokenSource::find(&identity),
            TokenSource::Imds("http://127.0.0.1:9/token".into())
        );
    }

    #[test]
    fn token_answers_are_read_in_each_form() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let t = parse_token(br#"{"access_token":"abc","expires_on":"1700003600"}"#, now).unwrap();
        assert_eq!(t.token.secret(), "abc");
        assert_eq!(t.expires_on.unix_timestamp(), 1_700_003_600);
        let t = parse_token(br#"{"access_token":"abc","expires_on":1700000100}"#, now).unwrap();
        assert_eq!(t.expires_on.unix_timestamp(), 1_700_000_100);
        let t = parse_token(br#"{"access_token":"abc","expires_in":"60"}"#, now).unwrap();
        assert_eq!(t.expires_on.unix_timestamp(), 1_700_000_060);
        for bad in [
            &b"<html>"[..],
            br#"{"expires_in":60}"#,
            br#"{"access_token":"x"}"#,
        ] {
            assert!(parse_token(bad, now).is_err());
        }
    }
}
