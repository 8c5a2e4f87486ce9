//! Bearer tokens: read from `bearer_tokens_file` (one a line), reread on SIGHUP, compared
//! in constant time. Only SHA-256 digests of the tokens are kept (the file's text is wiped
//! once hashed, so that a core or swapped page holds no token); no token is ever logged.
//! A tokens file that others may read or write is refused, at start and on SIGHUP.
//!
//! Beside them (`api.uaa`), the platform's JWTs: verified by [`jwt`] against the issuer's
//! published keys ([`keys`]), then authorized by the Cloud Controller ([`permissions`],
//! when `api.cloud_controller` is set) or by the required scopes. Static tokens are
//! compared first, so that they keep working when the issuer is down.

pub mod jwt;
pub mod keys;
pub mod permissions;

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};

use sha2::{Digest as _, Sha256};

use super::ApiError;
use crate::config::ApiConfig;
use crate::config::file_mode::read_secret_file;
use permissions::{Permission, Permissions};
use subtle::ConstantTimeEq as _;

/// The longest a request waits for the token issuer or the Cloud Controller (each).
pub const PLATFORM_TIMEOUT: Duration = Duration::from_secs(3);

/// The accepted tokens, as digests.
#[derive(Debug)]
pub struct Tokens {
    path: RwLock<PathBuf>,
    digests: RwLock<Vec<[u8; 32]>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Reads a tokens file: one token a line, blank lines and surrounding spaces ignored; the
/// problem says what is wrong with the file.
fn read(path: &Path) -> Result<Vec<[u8; 32]>, String> {
    let text = read_secret_file("api.bearer_tokens_file", path)?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(digest)
        .collect())
}

impl Tokens {
    /// Loads the tokens of `path`; an unreadable file, or one open to others, is an error.
    pub fn load(path: &Path) -> Result<Self, String> {
        let digests = read(path)?;
        if digests.is_empty() {
            tracing::warn!(file = %path.display(), "The API's bearer tokens file has no token: every request will be refused");
        }
        Ok(Self {
            path: RwLock::new(path.to_path_buf()),
            digests: RwLock::new(digests),
        })
    }

    /// Rereads the tokens file (`path` if given, else the current one); on failure the
    /// previous tokens stay in force and the problem is logged.
    pub fn reload(&self, path: Option<&Path>) {
        let path = path.map_or_else(
            || {
                self.path
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            },
            Path::to_path_buf,
        );
        match read(&path) {
            Ok(digests) => {
                let count = digests.len();
                *self
                    .digests
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = digests;
                *self
                    .path
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = path;
                tracing::info!(tokens = count, "API bearer tokens reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "API bearer tokens could not be reread; keeping the previous ones");
            }
        }
    }

    /// Whether `token` is one of the accepted tokens; every digest is compared.
    pub fn accepts(&self, token: &str) -> bool {
        let presented = digest(token);
        let digests = self
            .digests
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut found = subtle::Choice::from(0u8);
        for d in digests.iter() {
            found |= d.ct_eq(&presented);
        }
        found.into()
    }
}

/// Why a request's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header.
    Missing,
    /// The header is not `Bearer <token>`.
    Malformed,
    /// The token is not accepted.
    Wrong,
    /// A platform JWT that is not valid.
    Jwt(jwt::Problem),
    /// A valid platform token whose user may not manage this instance.
    Forbidden,
    /// The Cloud Controller could not be asked.
    PermissionsUnavailable,
}

impl Refusal {
    /// The description sent to the client.
    pub fn description(self) -> &'static str {
        match self {
            Self::Missing => {
                "the request has no Authorization header: send `Authorization: Bearer <token>`"
            }
            Self::Malformed => "the Authorization header must be `Bearer <token>`",
            Self::Wrong => "the bearer token is not valid",
            Self::Jwt(problem) => problem.description(),
            Self::Forbidden => {
                "the token's user may not manage this service instance (a SpaceDeveloper of \
                 its space may)"
            }
            Self::PermissionsUnavailable => {
                "the platform's Cloud Controller cannot be asked about permissions now; try \
                 again later"
            }
        }
    }

    /// The error answer: 401, 403, or 503 when the platform could not be asked.
    pub fn into_api_error(self) -> ApiError {
        let (status, word) = match self {
            Self::Forbidden | Self::Jwt(jwt::Problem::Scope) => {
                (StatusCode::FORBIDDEN, "forbidden")
            }
            Self::Jwt(jwt::Problem::KeysUnavailable) => {
                (StatusCode::SERVICE_UNAVAILABLE, "tokenKeysUnavailable")
            }
            Self::PermissionsUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "permissionsUnavailable")
            }
            _ => (StatusCode::UNAUTHORIZED, "unauthorized"),
        };
        ApiError::Error(status, word, self.description().to_string())
    }
}

/// Everything that decides whether a request's token is accepted.
pub struct Auth {
    /// The static tokens of `api.bearer_tokens_file`, when configured.
    pub tokens: Option<Tokens>,
    jwt: Option<jwt::Verifier>,
    permissions: Option<Permissions>,
}

impl Auth {
    /// The checks `api` configures, for the instance `instance_id`.
    pub fn load(api: &ApiConfig, instance_id: &str) -> Result<Self, String> {
        let tokens = api
            .bearer_tokens_file
            .as_deref()
            .map(Tokens::load)
            .transpose()?;
        let jwt = match &api.uaa {
            Some(uaa) => Some(jwt::Verifier::new(
                uaa.clone(),
                platform_client(uaa.ca_cert.as_deref(), "api.uaa")?,
            )),
            None => None,
        };
        let permissions = match &api.cloud_controller {
            Some(cc) => Some(Permissions::new(
                cc,
                instance_id,
                platform_client(cc.ca_cert.as_deref(), "api.cloud_controller")?,
            )),
            None => None,
        };
        Ok(Self {
            tokens,
            jwt,
            permissions,
        })
    }

    /// Rereads the static tokens (see [`Tokens::reload`]), when there are some.
    pub fn reload(&self, path: Option<&Path>) {
        if let Some(tokens) = &self.tokens {
            tokens.reload(path);
        }
    }
}

/// The HTTP client for the issuer, the Cloud Controller or an alert (`what`): bounded in
/// time, no redirects (a token is sent along), trusting `ca_cert` beside the public roots.
pub(crate) fn platform_client(
    ca_cert: Option<&str>,
    what: &str,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(PLATFORM_TIMEOUT)
        .timeout(PLATFORM_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca_cert {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| format!("{what}.ca_cert is not a usable PEM certificate: {e}"))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot make the HTTP client of {what}: {e}"))
}

/// An HTTP client's error with its causes (a TLS or DNS failure is only named there), the
/// URL left out.
pub fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The token of an `Authorization` header value (scheme word in any case).
fn bearer(header: Option<&[u8]>) -> Result<&str, Refusal> {
    let header = header.ok_or(Refusal::Missing)?;
    let header = std::str::from_utf8(header).map_err(|_| Refusal::Malformed)?;
    let (scheme, token) = header
        .trim()
        .split_once(char::is_whitespace)
        .ok_or(Refusal::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Refusal::Malformed);
    }
    Ok(token)
}

/// Checks an `Authorization` header value: a static token, else a platform JWT and its
/// user's permission. `Ok` with the JWT's expiry, `None` for a static token.
pub async fn check(auth: &Auth, header: Option<&[u8]>) -> Result<Option<DateTime<Utc>>, Refusal> {
    let token = bearer(header)?;
    if auth.tokens.as_ref().is_some_and(|t| t.accepts(token)) {
        return Ok(None);
    }
    let Some(verifier) = &auth.jwt else {
        return Err(Refusal::Wrong);
    };
    let exp = verifier.verify(token).await.map_err(Refusal::Jwt)?;
    let until = Some(DateTime::from_timestamp(exp, 0).unwrap_or(DateTime::<Utc>::MIN_UTC));
    match &auth.permissions {
        None => Ok(until),
        Some(permissions) => match permissions.of(token).await {
            Permission::Manage => Ok(until),
            Permission::Denied => Err(Refusal::Forbidden),
            Permission::Unauthenticated => Err(Refusal::Wrong),
            Permission::Unavailable => Err(Refusal::PermissionsUnavailable),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_in_any_case_and_only_listed_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "alpha\n\n  beta  \n").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let tokens = Tokens::load(&file).unwrap();
        let check = |tokens: &Tokens, header: Option<&[u8]>| -> Result<(), Refusal> {
            let token = bearer(header)?;
            if tokens.accepts(token) {
                Ok(())
            } else {
                Err(Refusal::Wrong)
            }
        };
        assert_eq!(check(&tokens, Some(b"Bearer alpha")), Ok(()));
        assert_eq!(check(&tokens, Some(b"bearer beta")), Ok(()));
        assert_eq!(check(&tokens, Some(b"BEARER  alpha ")), Ok(()));
        assert_eq!(check(&tokens, Some(b"Bearer gamma")), Err(Refusal::Wrong));
        assert_eq!(
            check(&tokens, Some(b"Basic alpha")),
            Err(Refusal::Malformed)
        );
        assert_eq!(check(&tokens, Some(b"Bearer")), Err(Refusal::Malformed));
        assert_eq!(check(&tokens, Some(b"alpha")), Err(Refusal::Malformed));
        assert_eq!(check(&tokens, None), Err(Refusal::Missing));
        std::fs::write(&file, "gamma\n").unwrap();
        tokens.reload(None);
        assert_eq!(check(&tokens, Some(b"Bearer gamma")), Ok(()));
        assert_eq!(check(&tokens, Some(b"Bearer alpha")), Err(Refusal::Wrong));
        std::fs::write(&file, "delta\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        tokens.reload(None);
        assert_eq!(
            (
                check(&tokens, Some(b"Bearer gamma")),
                check(&tokens, Some(b"Bearer delta"))
            ),
            (Ok(()), Err(Refusal::Wrong)),
            "a file readable by others is not reread"
        );
        std::fs::remove_file(&file).unwrap();
        tokens.reload(None);
        assert_eq!(
            check(&tokens, Some(b"Bearer gamma")),
            Ok(()),
            "kept on failure"
        );
    }
}
