//! The issuer's published signing keys: fetched on first use, kept for [`KEYS_LIFETIME`],
//! fetched again when a token names a key id we do not hold (at most once per
//! [`REFETCH_INTERVAL`]); after a failed fetch, none is tried for [`RETRY_INTERVAL`]. Both a standard JWKS (`/jwks`) and the UAA's `/token_keys` are JWK sets;
//! only RSA (RS256) and P-256 (ES256) signing keys are taken.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// How long a fetched key set is used before it is fetched again.
const KEYS_LIFETIME: Duration = Duration::from_hours(1);

/// The least time between two fetches caused by unknown key ids, so that tokens with
/// invented key ids cannot make us hammer the issuer.
const REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// The least time from a failed fetch to the next (the issuer is down): short, so that
/// tokens pass soon after it is back.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// The largest key set read.
const MAX_KEYS_BYTES: usize = 256 * 1024;

/// One usable key.
#[derive(Clone)]
pub struct Key {
    /// Its key id, if the set gave one.
    pub kid: Option<String>,
    /// The one algorithm it verifies.
    pub alg: Algorithm,
    /// The key itself.
    pub key: DecodingKey,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl Jwk {
    /// The key, when it is an RS256 or ES256 signing key.
    fn usable(&self) -> Option<Key> {
        if self.usage.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        let (alg, key) = match (self.kty.as_str(), self.alg.as_deref()) {
            ("RSA", None | Some("RS256")) => (
                Algorithm::RS256,
                DecodingKey::from_rsa_components(self.n.as_deref()?, self.e.as_deref()?).ok()?,
            ),
            ("EC", None | Some("ES256")) if self.crv.as_deref() == Some("P-256") => (
                Algorithm::ES256,
                DecodingKey::from_ec_components(self.x.as_deref()?, self.y.as_deref()?).ok()?,
            ),
            _ => return None,
        };
        Some(Key {
            kid: self.kid.clone(),
            alg,
            key,
        })
    }
}

/// Parses a JWK set, keeping its usable keys.
pub fn parse(body: &[u8]) -> Result<Vec<Key>, String> {
    let set: JwkSet = serde_json::from_slice(body).map_err(|e| format!("not a JWK set ({e})"))?;
    Ok(set.keys.iter().filter_map(Jwk::usable).collect())
}

struct Held {
    keys: Arc<Vec<Key>>,
    fetched: Option<Instant>,
}

/// Why no key could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeysProblem {
    /// The issuer's keys could not be fetched (and none are held).
    Unavailable,
}

/// When fetches were last tried, for their rate limits.
#[derive(Default)]
struct Attempts {
    /// The last fetch that failed.
    failed: Option<Instant>,
    /// The last fetch for a key id that fresh keys did not have.
    unknown_kid: Option<Instant>,
}

/// The key set of one issuer.
pub struct KeySet {
    url: String,
    client: reqwest::Client,
    held: RwLock<Held>,
    attempts: tokio::sync::Mutex<Attempts>,
}

impl KeySet {
    /// The keys published at `url`, fetched with `client` when needed.
    pub fn new(url: String, client: reqwest::Client) -> Self {
        Self {
            url,
            client,
            held: RwLock::new(Held {
                keys: Arc::new(Vec::new()),
                fetched: None,
            }),
            attempts: tokio::sync::Mutex::default(),
        }
    }

    fn held(&self) -> (Arc<Vec<Key>>, Option<Instant>) {
        let held = self
            .held
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (held.keys.clone(), held.fetched)
    }

    /// The keys for a token naming `kid`: the held ones while fresh and knowing `kid`;
    /// otherwise fetched again, unless a fetch was tried within [`REFETCH_INTERVAL`].
    pub async fn for_kid(&self, kid: Option<&str>) -> Result<Arc<Vec<Key>>, KeysProblem> {
        let knows =
            |keys: &[Key]| kid.is_none_or(|k| keys.iter().any(|c| c.kid.as_deref() == Some(k)));
        let (keys, fetched) = self.held();
        let fresh = fetched.is_some_and(|t| t.elapsed() < KEYS_LIFETIME);
        if fresh && knows(&keys) {
            return Ok(keys);
        }
        // One fetch at a time; the others wait for its result.
        let mut attempts = self.attempts.lock().await;
        let (keys, fetched) = self.held();
        let fresh = fetched.is_some_and(|t| t.elapsed() < KEYS_LIFETIME);
        let within = |at: Option<Instant>, interval| at.is_some_and(|t| t.elapsed() < interval);
        let held_or_none = || {
            if fetched.is_some() {
                Ok(keys.clone())
            } else {
                Err(KeysProblem::Unavailable)
            }
        };
        if fresh && knows(&keys) {
            return Ok(keys);
        }
        if within(attempts.failed, RETRY_INTERVAL) {
            return held_or_none();
        }
        if fresh {
            // Fresh keys, but not the token's: a rotation, or an invented kid.
            if within(attempts.unknown_kid, REFETCH_INTERVAL) {
                return held_or_none();
            }
            attempts.unknown_kid = Some(Instant::now());
        }
        match self.fetch().await {
            Ok(new) => {
                tracing::info!(keys = new.len(), "API token signing keys fetched");
                let new = Arc::new(new);
                *self
                    .held
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Held {
                    keys: new.clone(),
                    fetched: Some(Instant::now()),
                };
                Ok(new)
            }
            Err(e) => {
                attempts.failed = Some(Instant::now());
                tracing::error!(url = %self.url, error = %e, "API token signing keys could not be fetched");
                // Keys held before stay usable: the issuer being down does not lock out
                // tokens it signed with them.
                held_or_none()
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<Key>, String> {
        let mut response = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(super::error_chain)?;
        if !response.status().is_success() {
            return Err(format!("the issuer answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(super::error_chain)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_KEYS_BYTES {
                return Err(format!("the key set is larger than {MAX_KEYS_BYTES} bytes"));
            }
        }
        parse(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rs256_and_es256_signing_keys_are_taken() {
        // A UAA `/token_keys` answer: RSA with `value` (PEM) beside n and e.
        let body = br#"{"keys":[
          {"kty":"RSA","e":"AQAB","use":"sig","kid":"key-1","alg":"RS256","value":"-----BEGIN PUBLIC KEY-----","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw"},
          {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
          {"kty":"oct","kid":"hmac","k":"c2VjcmV0"},
          {"kty":"EC","kid":"ec-1","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
          {"kty":"EC","kid":"ec-384","crv":"P-384","x":"AA","y":"AA"}
        ]}"#;
        let keys = parse(body).unwrap();
        let got: Vec<(Option<&str>, Algorithm)> =
            keys.iter().map(|k| (k.kid.as_deref(), k.alg)).collect();
        assert_eq!(
            got,
            [
                (Some("key-1"), Algorithm::RS256),
                (Some("ec-1"), Algorithm::ES256)
            ]
        );
        assert!(parse(b"<html>").is_err());
    }

    /// A JWK set server on 127.0.0.1 whose answer the test changes, counting requests.
    async fn jwks_server(
        body: std::sync::Arc<std::sync::Mutex<String>>,
        asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) -> String {
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let text = body.lock().unwrap().clone();
                async move { text }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn set_of(kids: &[&str]) -> String {
        // The RFC 7517 example key, under each kid.
        let keys: Vec<String> = kids
            .iter()
            .map(|kid| {
                format!(
                    r#"{{"kty":"EC","kid":"{kid}","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}}"#
                )
            })
            .collect();
        format!(r#"{{"keys":[{}]}}"#, keys.join(","))
    }

    #[tokio::test]
    async fn an_unknown_kid_fetches_again_but_not_more_than_once_in_a_while() {
        use std::sync::atomic::Ordering;
        let body = std::sync::Arc::new(std::sync::Mutex::new(set_of(&["one"])));
        let asked = std::sync::Arc::default();
        let url = jwks_server(body.clone(), std::sync::Arc::clone(&asked)).await;
        let set = KeySet::new(url, reqwest::Client::new());
        let kids = |keys: &[Key]| {
            keys.iter()
                .map(|k| k.kid.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(kids(&set.for_kid(Some("one")).await.unwrap()), ["one"]);
        assert_eq!(kids(&set.for_kid(Some("one")).await.unwrap()), ["one"]);
        assert_eq!(asked.load(Ordering::SeqCst), 1, "kept");
        // The issuer rotates its key: the new kid is fetched at once.
        *body.lock().unwrap() = set_of(&["one", "two"]);
        assert_eq!(
            kids(&set.for_kid(Some("two")).await.unwrap()),
            ["one", "two"]
        );
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        // An invented kid right after: no new fetch.
        assert_eq!(
            kids(&set.for_kid(Some("three")).await.unwrap()),
            ["one", "two"]
        );
        assert_eq!(asked.load(Ordering::SeqCst), 2, "rate-limited");
    }
}
