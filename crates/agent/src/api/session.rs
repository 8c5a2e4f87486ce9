//! Dashboard sessions: a GET of the dashboard root with a valid `Authorization` header
//! opens one and sets its cookie, as the dashboard's documented `curl --cookie-jar` calls
//! and a browser expect; later requests may authenticate by the cookie instead.
//!
//! A session is an opaque random id (only its SHA-256 digest is kept), bound to the
//! instance id it was opened for, with a CSRF token that a state-changing request
//! authenticated by the cookie must echo in `X-CSRF-Token`. Sessions live in memory: a
//! restart signs everyone out, their number is bounded (the oldest is dropped first), and
//! each expires after its lifetime.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The cookie's name.
pub const COOKIE: &str = "sb_session";

/// The session cookie's name for `instance_id`: [`COOKIE`], `_`, and the id (each character
/// a cookie name may not hold made `_`), so that the agents of several instances on one
/// host (browsers share cookies across ports) keep a session each.
pub fn cookie_name(instance_id: &str) -> String {
    let id: String = instance_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{COOKIE}_{id}")
}

/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How long a session lives: the cookie's `Max-Age`.
pub const LIFETIME: Duration = Duration::from_hours(1);

/// How many sessions are kept at most.
pub const MAX_SESSIONS: usize = 1000;

/// How many sessions one credential keeps at most, so that one client cannot push every
/// other user's session out.
pub const MAX_PER_CREDENTIAL: usize = 20;

/// The `Authorization` header value that opened a session, rechecked on each request the
/// session authenticates; never printed.
#[derive(Clone)]
pub struct Credential(zeroize::Zeroizing<Vec<u8>>);

impl Credential {
    /// The credential of an `Authorization` header value.
    pub fn new(header: &[u8]) -> Self {
        Self(zeroize::Zeroizing::new(header.to_vec()))
    }

    /// The header value.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The digest of the token alone: the scheme word's case and the spaces around do
    /// not make another credential.
    fn digest(&self) -> [u8; 32] {
        let header = self.as_bytes().trim_ascii();
        let token = header
            .iter()
            .position(u8::is_ascii_whitespace)
            .map_or(header, |at| header[at..].trim_ascii());
        Sha256::digest(token).into()
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(..)")
    }
}

/// The expiry of the credential a request was authenticated by (`None`: a static token),
/// put in the request's extensions for the root to open a session no longer than it.
#[derive(Debug, Clone, Copy)]
pub struct CredentialUntil(pub Option<DateTime<Utc>>);

/// A session just opened: what the client gets.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The cookie's value.
    pub id: String,
    /// The token state-changing requests must carry.
    pub csrf_token: String,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
    /// How long it lives: the cookie's `Max-Age`.
    pub max_age: Duration,
}

/// A known session, as a request authenticated by it sees it.
#[derive(Debug, Clone)]
pub struct Known {
    /// The session's CSRF token.
    pub csrf_token: String,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
    /// The credential that opened it.
    pub credential: Credential,
    key: [u8; 32],
}

/// Why a cookie does not authenticate a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No session has this id (never opened, dropped, opened by another agent, or the
    /// agent restarted).
    Unknown,
    /// The session's lifetime is over.
    Expired,
    /// The session was opened for another service instance.
    OtherInstance,
    /// A state-changing request without `X-CSRF-Token`.
    CsrfMissing,
    /// A state-changing request whose `X-CSRF-Token` is not the session's.
    CsrfInvalid,
}

impl Refusal {
    /// The error word of the answer.
    pub fn code(self) -> &'static str {
        match self {
            Self::Unknown | Self::Expired | Self::OtherInstance => "unauthorized",
            Self::CsrfMissing => "csrfTokenMissing",
            Self::CsrfInvalid => "csrfTokenInvalid",
        }
    }

    /// Whether the answer is 403 (the session is valid, the request is not) rather than 401.
    pub fn is_forbidden(self) -> bool {
        matches!(self, Self::CsrfMissing | Self::CsrfInvalid)
    }

    /// What the answer says.
    pub fn description(self) -> &'static str {
        match self {
            Self::Unknown => {
                "the session cookie is unknown (the agent may have restarted); sign in again with a token"
            }
            Self::Expired => "the session has expired; sign in again with a token",
            Self::OtherInstance => {
                "the session cookie was issued for another service instance; sign in again with a token"
            }
            Self::CsrfMissing => {
                "a request authenticated by the session cookie that changes something needs the X-CSRF-Token header"
            }
            Self::CsrfInvalid => "the X-CSRF-Token header is not this session's token",
        }
    }
}

struct Entry {
    instance: String,
    credential: Credential,
    owner: [u8; 32],
    csrf_token: String,
    opened: Instant,
    expires: Instant,
    expires_at: DateTime<Utc>,
}

/// The open sessions.
pub struct Sessions {
    lifetime: Duration,
    max: usize,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(LIFETIME, MAX_SESSIONS)
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("lifetime", &self.lifetime)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

/// 32 random bytes as URL-safe base64.
fn random_word() -> String {
    let mut bytes = [0u8; 32];
    // Without randomness no session can be safe: fail loudly rather than hand out guessable ids.
    getrandom::fill(&mut bytes).expect("the system's random source failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// Sessions that last `lifetime`, at most `max` of them.
    pub fn new(lifetime: Duration, max: usize) -> Self {
        Self {
            lifetime,
            max: max.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The lifetime of a session.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a session for `instance` by `credential`, ending no later than `until` (the
    /// credential's own expiry); drops expired ones and, at a cap, the oldest (of this
    /// credential first).
    pub fn open(
        &self,
        instance: &str,
        credential: Credential,
        until: Option<DateTime<Utc>>,
    ) -> Opened {
        let id = random_word();
        let csrf_token = random_word();
        let now = Instant::now();
        let wall = Utc::now();
        let left = until.map_or(self.lifetime, |u| {
            (u - wall).to_std().unwrap_or_default().min(self.lifetime)
        });
        let expires_at = wall + chrono::Duration::from_std(left).unwrap_or(chrono::Duration::MAX);
        let owner = credential.digest();
        let mut entries = self.entries();
        entries.retain(|_, e| e.expires > now);
        let oldest_where = |entries: &HashMap<[u8; 32], Entry>, mine: bool| {
            entries
                .iter()
                .filter(|(_, e)| !mine || e.owner == owner)
                .min_by_key(|(_, e)| e.opened)
                .map(|(k, _)| *k)
        };
        while entries.values().filter(|e| e.owner == owner).count() >= MAX_PER_CREDENTIAL {
            let Some(oldest) = oldest_where(&entries, true) else {
                break;
            };
            entries.remove(&oldest);
        }
        while entries.len() >= self.max {
            let Some(oldest) = oldest_where(&entries, false) else {
                break;
            };
            entries.remove(&oldest);
        }
        entries.insert(
            digest(&id),
            Entry {
                instance: instance.to_string(),
                credential,
                owner,
                csrf_token: csrf_token.clone(),
                opened: now,
                expires: now + left,
                expires_at,
            },
        );
        Opened {
            id,
            csrf_token,
            expires_at,
            max_age: left,
        }
    }

    /// The session `id` if it is open for `instance`; a state-changing `method` must carry
    /// its CSRF token.
    pub fn check(
        &self,
        id: &str,
        instance: &str,
        method: &Method,
        csrf: Option<&[u8]>,
    ) -> Result<Known, Refusal> {
        let key = digest(id);
        let mut entries = self.entries();
        let entry = entries.get(&key).ok_or(Refusal::Unknown)?;
        if entry.expires <= Instant::now() {
            entries.remove(&key);
            return Err(Refusal::Expired);
        }
        if entry.instance != instance {
            return Err(Refusal::OtherInstance);
        }
        if changes_state(method) {
            let given = csrf.ok_or(Refusal::CsrfMissing)?;
            if !bool::from(given.ct_eq(entry.csrf_token.as_bytes())) {
                return Err(Refusal::CsrfInvalid);
            }
        }
        Ok(Known {
            csrf_token: entry.csrf_token.clone(),
            expires_at: entry.expires_at,
            credential: entry.credential.clone(),
            key,
        })
    }

    /// The session `id` if it is open for `instance` and was opened by `credential`: a
    /// client that sends its session cookie beside its header keeps that session.
    pub fn reusable(&self, id: &str, instance: &str, credential: &[u8]) -> Option<Known> {
        let known = self.check(id, instance, &Method::GET, None).ok()?;
        bool::from(known.credential.as_bytes().ct_eq(credential)).then_some(known)
    }

    /// Ends the session `known` (its credential is no longer valid).
    pub fn end(&self, known: &Known) {
        self.entries().remove(&known.key);
    }

    /// The number of open sessions (expired ones included until the next open).
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether a request with `method` changes something (and so needs the CSRF token).
pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The session id in the cookie `name` of the request's `Cookie` headers, if any.
pub fn cookie_of(headers: &HeaderMap, name: &str) -> Option<String> {
    // As bytes: a non-ASCII byte in another site's cookie must not hide ours.
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .filter_map(|pair| {
            let at = pair.iter().position(|b| *b == b'=')?;
            Some((pair[..at].trim_ascii(), pair[at + 1..].trim_ascii()))
        })
        .find(|(n, _)| *n == name.as_bytes())
        .and_then(|(_, value)| std::str::from_utf8(value).ok())
        .map(|value| value.trim_matches('"').to_string())
}

/// The `Set-Cookie` value of session `id` in cookie `name`; `Secure` when the API is served
/// over TLS.
pub fn set_cookie(name: &str, id: &str, lifetime: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = format!(
        "{name}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        lifetime.as_secs()
    );
    // The id is base64url: always a valid header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(token: &str) -> Credential {
        Credential::new(format!("Bearer {token}").as_bytes())
    }

    #[test]
    fn a_session_ends_with_its_credential_and_is_never_printed() {
        let s = Sessions::default();
        let soon = Utc::now() + chrono::Duration::milliseconds(1500);
        let o = s.open("a", cred("jwt"), Some(soon));
        assert!(o.expires_at <= soon, "{} > {soon}", o.expires_at);
        let later = Utc::now() + chrono::Duration::days(2);
        assert!(s.open("a", cred("jwt"), Some(later)).expires_at <= Utc::now() + LIFETIME);
        let known = s.check(&o.id, "a", &Method::GET, None).unwrap();
        assert!(!format!("{known:?}").contains("jwt"), "{known:?}");
        std::thread::sleep(Duration::from_millis(1600));
        assert_eq!(
            s.check(&o.id, "a", &Method::GET, None).unwrap_err(),
            Refusal::Expired
        );
    }

    #[test]
    fn one_credential_cannot_push_out_the_others() {
        let s = Sessions::new(LIFETIME, 30);
        let other = s.open("a", cred("browser"), None);
        let first = s.open("a", cred("script"), None);
        for _ in 0..1000 {
            s.open("a", cred("script"), None);
        }
        assert_eq!(s.len(), MAX_PER_CREDENTIAL + 1);
        assert!(s.check(&other.id, "a", &Method::GET, None).is_ok());
        assert!(s.check(&first.id, "a", &Method::GET, None).is_err());
        // The header written otherwise is the same credential.
        s.open("a", Credential::new(b"bearer   script "), None);
        assert_eq!(s.len(), MAX_PER_CREDENTIAL + 1);
        // Reused only by the credential that opened it.
        let mine = cred("browser");
        assert!(s.reusable(&other.id, "a", mine.as_bytes()).is_some());
        assert!(
            s.reusable(&other.id, "a", cred("script").as_bytes())
                .is_none()
        );
        assert!(s.reusable(&other.id, "b", mine.as_bytes()).is_none());
        let known = s.reusable(&other.id, "a", mine.as_bytes()).unwrap();
        s.end(&known);
        assert!(s.check(&other.id, "a", &Method::GET, None).is_err());
    }

    #[test]
    fn a_session_is_bound_to_its_instance_and_lifetime() {
        let s = Sessions::new(Duration::from_millis(50), 10);
        let o = s.open("a", cred("x"), None);
        assert!(s.check(&o.id, "a", &Method::GET, None).is_ok());
        assert_eq!(
            s.check(&o.id, "b", &Method::GET, None).unwrap_err(),
            Refusal::OtherInstance
        );
        assert_eq!(
            s.check("nope", "a", &Method::GET, None).unwrap_err(),
            Refusal::Unknown
        );
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(
            s.check(&o.id, "a", &Method::GET, None).unwrap_err(),
            Refusal::Expired
        );
        assert_eq!(
            s.check(&o.id, "a", &Method::GET, None).unwrap_err(),
            Refusal::Unknown
        );
    }

    #[test]
    fn posts_need_the_csrf_token() {
        let s = Sessions::default();
        let o = s.open("a", cred("x"), None);
        assert_eq!(
            s.check(&o.id, "a", &Method::POST, None).unwrap_err(),
            Refusal::CsrfMissing
        );
        assert_eq!(
            s.check(&o.id, "a", &Method::DELETE, Some(b"x"))
                .unwrap_err(),
            Refusal::CsrfInvalid
        );
        assert!(
            s.check(&o.id, "a", &Method::POST, Some(o.csrf_token.as_bytes()))
                .is_ok()
        );
    }

    #[test]
    fn the_oldest_session_is_dropped_at_the_cap() {
        let s = Sessions::new(LIFETIME, 2);
        let first = s.open("a", cred("x"), None);
        let second = s.open("a", cred("x"), None);
        let third = s.open("a", cred("x"), None);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.check(&first.id, "a", &Method::GET, None).unwrap_err(),
            Refusal::Unknown
        );
        assert!(s.check(&second.id, "a", &Method::GET, None).is_ok());
        assert!(s.check(&third.id, "a", &Method::GET, None).is_ok());
    }

    #[test]
    fn the_cookie_is_read_among_others_and_set_with_its_attributes() {
        let name = cookie_name("b02f-4682");
        assert_eq!(name, "sb_session_b02f-4682");
        // Another instance's agent on the same host: its cookie is not this one's.
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; sb_session_other=xyz; sb_session_b02f-4682=abc; b=2"),
        );
        assert_eq!(cookie_of(&h, &name).as_deref(), Some("abc"));
        assert_eq!(cookie_of(&h, &cookie_name("other")).as_deref(), Some("xyz"));
        assert_eq!(cookie_of(&h, &cookie_name("third")), None);
        let mut latin = HeaderMap::new();
        latin.insert(
            header::COOKIE,
            HeaderValue::from_bytes(b"pref=caf\xe9; sb_session_b02f-4682=abc").unwrap(),
        );
        assert_eq!(cookie_of(&latin, &name).as_deref(), Some("abc"));
        assert_eq!(
            set_cookie(&name, "abc", LIFETIME, true),
            "sb_session_b02f-4682=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600; Secure"
        );
        assert!(
            !set_cookie(&name, "abc", LIFETIME, false)
                .to_str()
                .unwrap()
                .contains("Secure")
        );
        // Characters a cookie name may not hold become `_`.
        assert_eq!(cookie_name("a b;c=d"), "sb_session_a_b_c_d");
    }
}
