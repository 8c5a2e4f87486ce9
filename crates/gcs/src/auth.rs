//! Access tokens, from one of two sources: a service account's JSON key (the signed JWT
//! grant of RFC 7523, RS256, sent to the key's `token_uri`), or the VM's metadata server
//! (the service account attached to the VM; no key on the VM). Either token is cached
//! until shortly before it expires.
//!
//! Neither the key, the signed grant nor the access token ever reaches a message: errors
//! name the service account's e-mail (or the metadata server) and the endpoint only.

use std::fmt;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde::Deserialize;
use service_backup_core::secret::Secret;
use service_backup_core::{Error, ErrorKind, Result};
use zeroize::Zeroizing;

/// Google's token endpoint, for keys that do not name one.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Read and write access to objects and buckets, nothing else.
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
/// Lifetime asked for a grant (Google's maximum).
const GRANT_LIFETIME: u64 = 3600;
/// A token is renewed when less than this is left of it.
const RENEW_MARGIN: Duration = Duration::from_mins(5);
/// The longest token endpoint answer read.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// The metadata server of Google Compute Engine (and GKE, Cloud Run), when
/// `GCE_METADATA_HOST` names none.
pub const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";
/// Where the metadata server hands out tokens of the VM's service account.
const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// Hint for a key that cannot be used.
const KEY_HINT: &str = "set `service_account_json` to the JSON key of a service account, as `gcloud iam service-accounts keys create` writes it";

/// A service account's key, parsed and ready to sign grants.
pub(crate) struct ServiceAccount {
    /// The account's e-mail, the issuer of the grants; not a secret.
    pub client_email: String,
    /// Where grants are exchanged for access tokens.
    pub token_uri: String,
    private_key_id: Option<String>,
    key: RsaKeyPair,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

impl ServiceAccount {
    /// Parses the JSON key; `what` (such as `gcs bucket b`) starts every message.
    pub fn parse(json: &Secret, what: &str) -> Result<Self> {
        let invalid = |why: String| {
            Error::new(
                ErrorKind::Config,
                format!("{what}: service_account_json {why}"),
            )
            .with_hint(KEY_HINT)
        };
        // serde_json's message quotes no input, only where it stopped.
        let file: KeyFile = serde_json::from_str(json.expose()).map_err(|e| {
            invalid(format!(
                "is not a JSON key (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if let Some(kind) = file.kind.as_deref()
            && kind != "service_account"
        {
            return Err(invalid(format!(
                "is a {kind:?} credential, not a service account key"
            )));
        }
        let client_email = file
            .client_email
            .filter(|e| !e.is_empty())
            .ok_or_else(|| invalid("has no client_email".into()))?;
        let pem = Zeroizing::new(
            file.private_key
                .ok_or_else(|| invalid("has no private_key".into()))?,
        );
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| invalid("has a private_key that is not a PEM PKCS#8 key".into()))?;
        let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|_| invalid("has a private_key that is not a usable RSA key".into()))?;
        let token_uri = file
            .token_uri
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_string());
        if !(token_uri.starts_with("https://") || token_uri.starts_with("http://")) {
            return Err(invalid(
                "has a token_uri that is not an http or https URL".into(),
            ));
        }
        Ok(Self {
            client_email,
            token_uri,
            private_key_id: file.private_key_id,
            key,
        })
    }

    /// A signed grant, valid for an hour from `now` (Unix seconds).
    pub fn grant(&self, now: u64) -> Result<Zeroizing<String>> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = serde_json::Value::String(kid.clone());
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + GRANT_LIFETIME,
        });
        let mut jwt = Zeroizing::new(format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        ));
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                jwt.as_bytes(),
                &mut signature,
            )
            .map_err(|_| {
                Error::new(
                    ErrorKind::Destination,
                    format!("cannot sign a token grant for {}", self.client_email),
                )
            })?;
        jwt.push('.');
        jwt.push_str(&b64.encode(signature));
        Ok(jwt)
    }
}

/// An access token and when to renew it.
struct Token {
    value: Secret,
    renew_at: Instant,
}

/// Where access tokens come from.
pub(crate) enum Source {
    /// A service account's key, signing grants.
    Key(Box<ServiceAccount>),
    /// The metadata server at this URL (its token path).
    Metadata(String),
}

/// Fetches access tokens from one source and keeps the current one.
pub(crate) struct TokenSource {
    source: Source,
    current: tokio::sync::Mutex<Option<Token>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenRefusal {
    error: Option<String>,
}

impl TokenSource {
    pub fn new(source: Source) -> Self {
        Self {
            source,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// Tokens from the metadata server at `host` (`host[:port]`).
    pub fn metadata(host: &str) -> Self {
        Self::new(Source::Metadata(format!(
            "http://{}{METADATA_TOKEN_PATH}",
            host.trim_end_matches('/')
        )))
    }

    /// Who the tokens are for, in messages: `the service account a@b` or the VM's.
    pub fn principal(&self) -> String {
        match &self.source {
            Source::Key(account) => format!("the service account {}", account.client_email),
            Source::Metadata(_) => "the VM's service account (from the metadata server)".into(),
        }
    }

    /// What to check when the service refuses a token, for hints.
    pub fn what_to_check(&self) -> &'static str {
        match &self.source {
            Source::Key(_) => {
                "check that service_account_json is a current key of the service account"
            }
            Source::Metadata(_) => {
                "check the service account attached to the VM and its access scopes (devstorage.read_write or cloud-platform)"
            }
        }
    }

    /// Forgets the current token (the service refused it).
    pub async fn forget(&self) {
        *self.current.lock().await = None;
    }

    /// A valid access token, fetched when there is none or it is about to expire.
    /// `what` starts every message.
    pub async fn token(&self, http: &reqwest::Client, what: &str) -> Result<Secret> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref()
            && Instant::now() < token.renew_at
        {
            return Ok(token.value.clone());
        }
        let token = match &self.source {
            Source::Key(account) => fetch(account, http, what).await?,
            Source::Metadata(url) => from_metadata(url, http, what).await?,
        };
        let value = token.value.clone();
        *current = Some(token);
        Ok(value)
    }
}

/// A token of the VM's service account from the metadata server at `url`.
async fn from_metadata(url: &str, http: &reqwest::Client, what: &str) -> Result<Token> {
    let fail = |why: String| {
        Error::new(
            ErrorKind::Destination,
            format!("{what}: cannot get an access token from the metadata server {url}: {why}"),
        )
    };
    let response = http
        .get(url)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .map_err(|e| {
            fail(crate::http::transport_reason(&e))
                .with_hint("run the agent on a Google Cloud VM with a service account attached (or set GCE_METADATA_HOST), or set service_account_json and leave credentials_source out")
                .temporary()
        })?;
    let status = response.status();
    let text = crate::http::read_limited(response, MAX_TOKEN_ANSWER)
        .await
        .map_err(|e| fail(format!("the answer could not be read: {e}")).temporary())?;
    if !status.is_success() {
        let err = fail(format!("the server answered {status}"));
        return Err(if status.is_server_error() || status.as_u16() == 429 {
            err.temporary()
        } else {
            err.with_hint("attach a service account to the VM; a VM without one has no tokens")
        });
    }
    token_of(&text, &fail)
}

/// The token of a token endpoint's answer, renewed [`RENEW_MARGIN`] before it expires.
fn token_of(text: &[u8], fail: &dyn Fn(String) -> Error) -> Result<Token> {
    let answer: TokenAnswer =
        serde_json::from_slice(text).map_err(|_| fail("the answer is not a token".into()))?;
    let value = Zeroizing::new(
        answer
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail("the answer holds no access token".into()))?,
    );
    let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(GRANT_LIFETIME));
    Ok(Token {
        value: Secret::new(value.as_str()),
        renew_at: Instant::now() + lifetime.saturating_sub(RENEW_MARGIN),
    })
}

/// A token for the service account of a key, for a grant it signs.
async fn fetch(account: &ServiceAccount, http: &reqwest::Client, what: &str) -> Result<Token> {
    let uri = &account.token_uri;
    let fail = |why: String| {
        Error::new(
            ErrorKind::Destination,
            format!(
                "{what}: cannot get an access token for {} from {uri}: {why}",
                account.client_email
            ),
        )
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let grant = account.grant(now)?;
    let body = Zeroizing::new(format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={}",
        grant.as_str()
    ));
    let sent = http
        .post(uri.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.as_bytes().to_vec())
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            return Err(fail(crate::http::transport_reason(&e))
                .with_hint("check that the token endpoint (token_uri of the key) is reachable from this VM")
                .temporary());
        }
    };
    let status = response.status();
    let text = crate::http::read_limited(response, MAX_TOKEN_ANSWER)
        .await
        .map_err(|e| fail(format!("the answer could not be read: {e}")).temporary())?;
    if !status.is_success() {
        // Only the OAuth error code is shown: the description may echo the grant.
        let code = serde_json::from_slice::<TokenRefusal>(&text)
            .ok()
            .and_then(|r| r.error)
            .filter(|c| c.len() < 64 && c.bytes().all(|b| b.is_ascii_graphic()));
        let reason = match code {
            Some(code) => format!("the endpoint refused the key ({} {code})", status.as_u16()),
            None => format!("the endpoint answered {status}"),
        };
        let mut err = fail(reason);
        if status.is_server_error() || status.as_u16() == 429 {
            err = err.temporary();
        } else {
            err = err.with_hint(
                "check that service_account_json holds a current key of an enabled service account (keys that were deleted or disabled are refused)",
            );
        }
        return Err(err);
    }
    token_of(&text, &fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_keys_are_config_errors_that_quote_nothing() {
        let cases = [
            ("{\"key\":\"value\"", "is not a JSON key"),
            ("{\"key\":\"value\"}", "has no client_email"),
            (
                "{\"type\":\"authorized_user\",\"client_secret\":\"SECRETVALUE\"}",
                "not a service account key",
            ),
            (
                "{\"client_email\":\"a@b\",\"private_key\":\"SECRETVALUE\"}",
                "not a PEM PKCS#8 key",
            ),
            (
                "{\"client_email\":\"a@b\",\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nU0VDUkVUVkFMVUU=\\n-----END PRIVATE KEY-----\\n\"}",
                "not a usable RSA key",
            ),
        ];
        for (json, expected) in cases {
            let err = ServiceAccount::parse(&Secret::new(json), "gcs bucket b").unwrap_err();
            let text = format!("{err} {err:?}");
            assert_eq!(err.kind(), ErrorKind::Config, "{text}");
            assert!(
                text.starts_with("gcs bucket b: service_account_json "),
                "{text}"
            );
            assert!(text.contains(expected), "{text}");
            assert!(!text.contains("SECRETVALUE"), "{text}");
            assert!(!text.contains("U0VDUkVU"), "{text}");
        }
    }
}
