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
    // Read raw: the validation skips an `nbf` it cannot parse and takes `iss` as a list.
    nbf: Option<serde_json::Value>,
    iss: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
}

impl Claims {
    /// The problem of the claims the validation lets through: an `nbf` that is not a
    /// whole number of seconds, an `iss` that is not one string.
    fn problem(&self) -> Option<Problem> {
        if self.nbf.as_ref().is_some_and(|n| n.as_u64().is_none()) {
            return Some(Problem::Unreadable);
        }
        if !matches!(self.iss, Some(serde_json::Value::String(_))) {
            return Some(Problem::Issuer);
        }
        None
    }
}

/// Whether the JOSE header of `token` has `crit`: RFC 7515 4.1.11 has a verifier that
/// understands no extension refuse every token that marks one critical.
fn has_crit(token: &str) -> bool {
    use base64::Engine as _;
    let head = token.split('.').next().unwrap_or_default();
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(head) else {
        return true;
    };
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes)
        .map_or(true, |h| h.contains_key("crit"))
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
        if let Some(aud) = &self.config.audience {
            v.set_audience(&[aud]);
            // Only a required `aud` is refused when missing or not a string or list.
            v.set_required_spec_claims(&["exp", "iss", "aud"]);
        } else {
            v.validate_aud = false;
            v.set_required_spec_claims(&["exp", "iss"]);
        }
        v
    }

    /// Checks `token`; `Ok` with its `exp` (seconds since the epoch) when it is valid and
    /// carries the required scopes.
    pub async fn verify(&self, token: &str) -> Result<i64, Problem> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Problem::Unreadable);
        }
        // The header only picks the key; the algorithm checked is the key's own.
        let header = jsonwebtoken::decode_header(token).map_err(|_| Problem::Unreadable)?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) || has_crit(token) {
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
                    if let Some(problem) = data.claims.problem() {
                        return Err(problem);
                    }
                    let scoped = self
                        .config
                        .required_scopes
                        .iter()
                        .all(|s| data.claims.scope.contains(s));
                    // Required and validated: a number.
                    let exp = data.claims.exp.as_ref().and_then(serde_json::Value::as_i64);
                    return match (scoped, exp) {
                        (false, _) => Err(Problem::Scope),
                        (true, Some(exp)) => Ok(exp),
                        (true, None) => Err(Problem::Unreadable),
                    };
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

    /// A verifier trusting a fresh ES256 key served from a JWK set on 127.0.0.1, and a
    /// signer of any header and payload with that key.
    async fn trusted() -> (
        Verifier,
        impl Fn(&serde_json::Value, &serde_json::Value) -> String,
    ) {
        use base64::Engine as _;
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "kid": "k1", "crv": "P-256",
            "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..65])}]})
        .to_string();
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let body = jwks.clone();
                async move { body }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = UaaConfig {
            keys_url: url,
            issuer: "https://uaa.test/oauth/token".into(),
            audience: Some("service-backup".into()),
            required_scopes: vec![],
            leeway_seconds: 0,
            ca_cert: None,
        };
        let sign = move |header: &serde_json::Value, payload: &serde_json::Value| {
            let head = format!(
                "{}.{}",
                b64.encode(header.to_string()),
                b64.encode(payload.to_string())
            );
            let sig = pair.sign(&rng, head.as_bytes()).unwrap();
            format!("{head}.{}", b64.encode(sig.as_ref()))
        };
        (Verifier::new(config, reqwest::Client::new()), sign)
    }

    #[tokio::test]
    async fn missing_or_malformed_claims_and_crit_headers_are_refused() {
        use serde_json::json;
        let (verifier, sign) = trusted().await;
        let head = json!({"alg": "ES256", "kid": "k1"});
        let exp = chrono::Utc::now().timestamp() + 600;
        let good = json!({"iss": "https://uaa.test/oauth/token", "aud": "service-backup",
            "exp": exp, "nbf": 1});
        assert_eq!(verifier.verify(&sign(&head, &good)).await, Ok(exp));
        let with = |key: &str, value: serde_json::Value| {
            let mut p = good.clone();
            p[key] = value;
            p
        };
        let mut no_aud = good.clone();
        no_aud.as_object_mut().unwrap().remove("aud");
        let rows = [
            ("no aud", no_aud, Problem::Audience),
            (
                "aud an object",
                with("aud", json!({"a": "service-backup"})),
                Problem::Audience,
            ),
            ("nbf a word", with("nbf", json!("x")), Problem::Unreadable),
            ("nbf absurd", with("nbf", json!(1e300)), Problem::Unreadable),
            (
                "iss a list",
                with("iss", json!(["https://uaa.test/oauth/token"])),
                Problem::Issuer,
            ),
        ];
        for (name, payload, problem) in rows {
            assert_eq!(
                verifier.verify(&sign(&head, &payload)).await,
                Err(problem),
                "{name}"
            );
        }
        let crit = json!({"alg": "ES256", "kid": "k1", "crit": ["exp"], "exp": 1});
        assert_eq!(
            verifier.verify(&sign(&crit, &good)).await,
            Err(Problem::Unreadable),
            "crit"
        );
    }
}
