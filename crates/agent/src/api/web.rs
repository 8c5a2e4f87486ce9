//! The dashboard root, `GET /service-instances/{id}/`: with a valid token it opens a
//! session (see [`session`]) and answers a small JSON (`Accept: application/json`) or the
//! web page; a browser without credentials gets the page, which asks for a token.
//!
//! The page (HTML, CSS and JS in `web/`) is embedded in the binary and served as one
//! document: it loads nothing from anywhere, and holds no data until its script, signed in,
//! asks the API. Its content security policy allows only its own script and style (by
//! digest) and requests to this origin.

use std::sync::LazyLock;

use axum::Extension;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::session::{self, Credential, CredentialUntil, Known};
use super::{ApiError, ApiState};

const HTML: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");
const STYLE: &str = include_str!("web/style.css");

/// The page and its content security policy, assembled once.
static PAGE: LazyLock<(String, HeaderValue)> = LazyLock::new(|| {
    let hash = |text: &str| STANDARD.encode(Sha256::digest(text.as_bytes()));
    let page = HTML
        .replace("/*STYLE*/", STYLE)
        .replace("/*SCRIPT*/", SCRIPT);
    let policy = format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
         connect-src 'self'; img-src 'self' data:; form-action 'none'; \
         frame-ancestors 'none'; base-uri 'none'",
        hash(SCRIPT),
        hash(STYLE)
    );
    let policy = HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    (page, policy)
});

/// The web page, with headers that keep it out of caches and frames.
pub fn page() -> Response {
    let (html, policy) = &*PAGE;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::CONTENT_SECURITY_POLICY, policy.clone());
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    (StatusCode::OK, headers, html.clone()).into_response()
}

/// Whether the path is the dashboard root (`/service-instances/{id}`, with or without
/// the trailing slash).
pub fn is_root(path: &str) -> bool {
    path.strip_prefix("/service-instances/")
        .map(|rest| rest.trim_end_matches('/'))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Whether `Accept` asks for `mime` explicitly.
fn accepts(headers: &HeaderMap, mime: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            m.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case(mime))
        })
}

/// Whether the request is a browser's GET of the dashboard root (which gets the page even
/// without credentials: it only asks for a token).
pub fn wants_page(req: &Request) -> bool {
    req.method() == Method::GET
        && is_root(req.uri().path())
        && accepts(req.headers(), "text/html")
        && !accepts(req.headers(), "application/json")
}

/// Authenticates a request without `Authorization` by its session cookie: `Ok(true)` with
/// the session put in the request's extensions, `Ok(false)` when the request has a header
/// or no cookie, or the answer to give (the page for a browser at the root, else 401 or,
/// for a missing or wrong CSRF token, 403).
pub fn cookie_session(state: &ApiState, req: &mut Request) -> Result<bool, Box<Response>> {
    if req.headers().contains_key(header::AUTHORIZATION) {
        return Ok(false);
    }
    let name = session::cookie_name(&state.instance_id);
    let Some(id) = session::cookie_of(req.headers(), &name) else {
        return Ok(false);
    };
    let csrf = req
        .headers()
        .get(session::CSRF_HEADER)
        .map(HeaderValue::as_bytes);
    match state
        .sessions
        .check(&id, &state.instance_id, req.method(), csrf)
    {
        Ok(known) => {
            req.extensions_mut().insert(known);
            Ok(true)
        }
        Err(refusal) => {
            tracing::info!(path = %req.uri().path(), reason = ?refusal, "API request refused");
            if wants_page(req) {
                return Err(Box::new(page()));
            }
            let status = if refusal.is_forbidden() {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::UNAUTHORIZED
            };
            Err(Box::new(
                ApiError::Error(status, refusal.code(), refusal.description().to_string())
                    .into_response(),
            ))
        }
    }
}

/// `GET /service-instances/{id}/`: opens a session for a request authenticated by its
/// header (a cookie-authenticated one keeps its session), then the session as JSON or the
/// page.
pub async fn root(
    State(state): State<ApiState>,
    known: Option<Extension<Known>>,
    until: Option<Extension<CredentialUntil>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    // A session cookie sent beside the header that opened it is kept, not replaced.
    let known = known.map(|Extension(k)| k).or_else(|| {
        session::cookie_of(&headers, &session::cookie_name(&state.instance_id)).and_then(|id| {
            state
                .sessions
                .reusable(&id, &state.instance_id, authorization)
        })
    });
    let (csrf_token, expires_at, cookie) = if let Some(k) = known {
        (k.csrf_token, k.expires_at, None)
    } else if method == Method::HEAD {
        // A HEAD shows nothing of a session: it opens none.
        (String::new(), Utc::now(), None)
    } else {
        let until = until.and_then(|Extension(CredentialUntil(u))| u);
        let opened = state
            .sessions
            .open(&state.instance_id, Credential::new(authorization), until);
        let secure = state.config().api.as_ref().is_some_and(|a| a.tls.is_some());
        let name = session::cookie_name(&state.instance_id);
        let cookie = session::set_cookie(&name, &opened.id, opened.max_age, secure);
        (opened.csrf_token, opened.expires_at, Some(cookie))
    };
    let mut answer = if accepts(&headers, "application/json") {
        let mut r = axum::Json(json!({
            "instance_id": state.instance_id,
            "csrf_token": csrf_token,
            "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }))
        .into_response();
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    } else {
        page()
    };
    if let Some(c) = cookie {
        answer.headers_mut().insert(header::SET_COOKIE, c);
    }
    answer
}

#[cfg(test)]
mod tests;
