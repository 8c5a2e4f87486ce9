//! Verification of a platform JWT: signature by one of the issuer's keys (RS256 or ES256
//! only, the algorithm fixed by the key, never by the token), `exp` and `nbf` within the
//! configured leeway, `iss`, `aud` when configured, and the required scopes.

use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::keys::{KeySet, KeysProblem};
use crate::config::UaaConfig;

/// The longest token looked at; longer ones are refused unread.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a JWT was refused (the descriptions are sent to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Not a JWT we can read, or an algorithm other than RS256/ES256 (`none`, HMAC).
    Unreadable,
    /// No held key has the token's key id.
    UnknownKey,
    /// The signature does not match.
    Signature,
    /// Past its `exp`.
    Expired,
    /// Before its `nbf`.
    NotYetValid,
    /// Another issuer.
    Issuer,
    /// Not for this audience.
    Audience,
    /// A required scope is missing.
    Scope,
    /// The issuer's keys could not be fetched.
    KeysUnavailable,
}

impl Problem {
    /// The description sent to the client.
    pub fn description(self) -> &'static str {
        match self {
            Self::Unreadable => {
                "the bearer token is not a JWT signed with RS256 or ES256, nor a known token"
            }
            Self::UnknownKey => "the token is signed with a key the token issuer does not publish",
            Self::Signature => "the token's signature is not valid",
            Self::Expired => "the token has expired: get a new one (cf oauth-token)",
            Self::NotYetValid => "the token is not valid yet",
            Self::Issuer => "the token was issued by another issuer",
            Self::Audience => "the token is not meant for this service",
            Self::Scope => "the token lacks a scope this service requires",
            Self::KeysUnavailable => {
                "the token issuer's signing keys cannot be fetched now; try again later"
            }
        }
    }
}

/// The claims read beyond those the validation checks.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    scope: Scopes,
}

/// `scope` as the UAA writes it (a list) or as OAuth 2 servers do (space-separated).
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Scopes {
    List(Vec<String>),
    Words(String),
    #[default]
    None,
}

impl Scopes {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Self::List(l) => l.iter().any(|s| s == wanted),
            Self::Words(w) => w.split_whitespace().any(|s| s == wanted),
            Self::None => false,
        }
    }
}

/// Verifies platform JWTs.
pub struct Verifier {
    config: UaaConfig,
    keys: KeySet,
}

impl Verifier {
    /// A verifier for `config`, fetching keys with `client`.
    pub fn new(config: UaaConfig, client: reqwest::Client) -> Self {
        Self {
            keys: KeySet::new(config.keys_url.clone(), client),
            config,
        }
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.config.leeway_seconds;
        v.validate_nbf = true;
        v.set_issuer(&[&self.config.issuer]);
        match &self.config.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&["exp", "iss"]);
        v
    }

    /// Checks `token`; `Ok` when it is valid and carries the required scopes.
    pub async fn verify(&self, token: &str) -> Result<(), Problem> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Problem::Unreadable);
        }
        // The header only picks the key; the algorithm checked is the key's own.
        let header = jsonwebtoken::decode_header(token).map_err(|_| Problem::Unreadable)?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(Problem::Unreadable);
        }
        let keys = self
            .keys
            .for_kid(header.kid.as_deref())
            .await
            .map_err(|KeysProblem::Unavailable| Problem::KeysUnavailable)?;
        let candidates: Vec<_> = keys
            .iter()
            .filter(|k| match &header.kid {
                Some(kid) => k.kid.as_deref() == Some(kid),
                None => k.alg == header.alg,
            })
            .collect();
        if candidates.is_empty() {
            return Err(Problem::UnknownKey);
        }
        let mut problem = Problem::Signature;
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &self.validation(key.alg)) {
                Ok(data) => {
                    let scoped = self
                        .config
                        .required_scopes
                        .iter()
                        .all(|s| data.claims.scope.contains(s));
                    return if scoped { Ok(()) } else { Err(Problem::Scope) };
                }
                Err(e) => problem = problem_of(e.kind()),
            }
        }
        Err(problem)
    }
}

fn problem_of(kind: &JwtErrorKind) -> Problem {
    match kind {
        JwtErrorKind::ExpiredSignature => Problem::Expired,
        JwtErrorKind::ImmatureSignature => Problem::NotYetValid,
        JwtErrorKind::InvalidIssuer => Problem::Issuer,
        JwtErrorKind::InvalidAudience => Problem::Audience,
        JwtErrorKind::InvalidSignature => Problem::Signature,
        JwtErrorKind::MissingRequiredClaim(claim) if claim == "aud" => Problem::Audience,
        JwtErrorKind::MissingRequiredClaim(claim) if claim == "iss" => Problem::Issuer,
        // A missing claim, a wrong algorithm for the key, a payload that is not JSON.
        _ => Problem::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_claim_is_named_as_the_wrong_one_would_be() {
        let missing = |c: &str| problem_of(&JwtErrorKind::MissingRequiredClaim(c.into()));
        assert_eq!(
            [missing("aud"), missing("iss"), missing("exp")],
            [Problem::Audience, Problem::Issuer, Problem::Unreadable]
        );
    }

    #[test]
    fn scopes_as_the_uaa_and_as_oauth_servers_write_them() {
        let of = |json: &str| serde_json::from_str::<Claims>(json).unwrap().scope;
        let uaa = of(r#"{"scope": ["openid", "cloud_controller.write"]}"#);
        assert!(uaa.contains("cloud_controller.write") && !uaa.contains("openid.x"));
        let words = of(r#"{"scope": "openid cloud_controller.write"}"#);
        assert!(words.contains("cloud_controller.write") && !words.contains("cloud"));
        assert!(!of("{}").contains("openid"));
    }
}
