//! The dashboard root, sessions and the page, in-process through the router: the session
//! contract of the dashboard (cookie attributes, JSON, cookie authentication, CSRF) and its
//! bad-input rows (another agent's cookie, an expired one, a POST without or with a wrong
//! CSRF token), each with its status and body, and nothing left behind (no task queued).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt as _;

use super::{HTML, SCRIPT, STYLE};
use crate::api::session::Sessions;
use crate::api::{ApiState, router};

const TOKEN: &str = "tok-Secret-3f9a1c7e5b";
const INSTANCE: &str = "inst-1";
const ROOT: &str = "/service-instances/inst-1/";

struct Agent {
    dir: tempfile::TempDir,
    state: ApiState,
    router: Router,
}

/// A router on a state of its own folder, with sessions of `lifetime`.
async fn agent(lifetime: Duration, tls: bool) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{TOKEN}\n")).unwrap();
    let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(&tokens, private).unwrap();
    std::fs::create_dir(dir.path().join("source")).unwrap();
    // The TLS files are not read by the router: only whether `api.tls` is set matters here.
    let tls = if tls {
        format!("  tls:\n    cert_file: {d}/cert.pem\n    key_file: {d}/key.pem\n")
    } else {
        String::new()
    };
    let config = crate::config::parse(&format!(
        "cron_schedule: \"0 0 1 1 *\"\ninstance_id: {INSTANCE}\nsource_folder: {d}/source\n\
         state_dir: {d}/state\n\
         destinations:\n- type: local\n  name: disk\n  config:\n    path: {d}/backups\n\
         api:\n  listen: 127.0.0.1:8443\n  bearer_tokens_file: {d}/tokens\n{tls}"
    ))
    .unwrap();
    let mut state = ApiState::standalone(config, INSTANCE).await.unwrap();
    state.sessions = Arc::new(Sessions::new(lifetime, 100));
    Agent {
        dir,
        router: router(state.clone()),
        state,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

async fn send(a: &Agent, method: Method, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = a
        .router
        .clone()
        .oneshot(req.body(Body::from("{}")).unwrap())
        .await
        .unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Signs in with the token: the cookie pair (`sb_session=…`) and the JSON body.
async fn sign_in(a: &Agent) -> (String, Value) {
    let bearer = format!("Bearer {TOKEN}");
    let r = send(
        a,
        Method::GET,
        ROOT,
        &[("authorization", &bearer), ("accept", "application/json")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let cookie = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    (cookie.split(';').next().unwrap().to_string(), r.json())
}

async fn tasks(a: &Agent) -> usize {
    a.state
        .ctx
        .tasks
        .list(crate::tasks::store::TaskKind::Backup)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn the_root_opens_a_session_with_the_contracts_cookie_and_json() {
    let a = agent(Duration::from_hours(1), false).await;
    for path in ["/service-instances/inst-1", ROOT] {
        let bearer = format!("Bearer {TOKEN}");
        let r = send(
            &a,
            Method::GET,
            path,
            &[("authorization", &bearer), ("accept", "application/json")],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        let cookie = r.headers[header::SET_COOKIE].to_str().unwrap();
        assert!(
            cookie.starts_with(&format!("sb_session_{INSTANCE}=")),
            "{cookie}"
        );
        assert!(
            cookie.ends_with("; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600"),
            "{cookie}"
        );
        let body = r.json();
        assert_eq!(body["instance_id"], INSTANCE);
        assert!(body["csrf_token"].as_str().unwrap().len() >= 40, "{body}");
        let expires =
            chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
        let left = expires
            .signed_duration_since(chrono::Utc::now())
            .num_seconds();
        assert!((3590..=3600).contains(&left), "{left}");
    }
    // Without `Accept: application/json`, the page (as the documented curl call gets it).
    let bearer = format!("Bearer {TOKEN}");
    let r = send(&a, Method::GET, ROOT, &[("authorization", &bearer)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.contains_key(header::SET_COOKIE));
    assert!(r.text.contains("<title>service-backup dashboard</title>"));
}

#[tokio::test]
async fn under_tls_the_cookie_is_secure() {
    let a = agent(Duration::from_hours(1), true).await;
    let bearer = format!("Bearer {TOKEN}");
    let r = send(&a, Method::GET, ROOT, &[("authorization", &bearer)]).await;
    let cookie = r.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.ends_with("; Max-Age=3600; Secure"), "{cookie}");
}

#[tokio::test]
async fn the_cookie_authenticates_and_posts_need_the_csrf_token() {
    let a = agent(Duration::from_hours(1), false).await;
    let (cookie, session) = sign_in(&a).await;
    let csrf = session["csrf_token"].as_str().unwrap();
    let r = send(
        &a,
        Method::GET,
        "/service-instances/inst-1/backups",
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["instance_id"], INSTANCE);
    // The root with the cookie keeps the session: the same CSRF token, no new cookie.
    let r = send(
        &a,
        Method::GET,
        ROOT,
        &[("cookie", &cookie), ("accept", "application/json")],
    )
    .await;
    assert_eq!(r.json()["csrf_token"], csrf);
    assert!(!r.headers.contains_key(header::SET_COOKIE));

    // Bad input: a POST with the cookie and no CSRF token; then a wrong one.
    let r = send(
        &a,
        Method::POST,
        "/service-instances/inst-1/backups",
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.json()["error"], "csrfTokenMissing");
    assert!(
        r.json()["description"]
            .as_str()
            .unwrap()
            .contains("X-CSRF-Token")
    );
    let r = send(
        &a,
        Method::POST,
        "/service-instances/inst-1/backups",
        &[("cookie", &cookie), ("x-csrf-token", "not-the-token")],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.json()["error"], "csrfTokenInvalid");
    assert_eq!(tasks(&a).await, 0, "a refused POST queued nothing");

    let r = send(
        &a,
        Method::POST,
        "/service-instances/inst-1/backups",
        &[("cookie", &cookie), ("x-csrf-token", csrf)],
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(tasks(&a).await, 1);
}

#[tokio::test]
async fn another_agents_cookie_is_refused() {
    let other = agent(Duration::from_hours(1), false).await;
    let (cookie, _) = sign_in(&other).await;
    let a = agent(Duration::from_hours(1), false).await;
    let r = send(
        &a,
        Method::GET,
        "/service-instances/inst-1/backups",
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(r.json()["error"], "unauthorized");
    assert!(
        r.json()["description"]
            .as_str()
            .unwrap()
            .contains("unknown"),
        "{}",
        r.text
    );
    // A session of this agent does not open another instance's routes either.
    let (cookie, _) = sign_in(&a).await;
    let r = send(
        &a,
        Method::GET,
        "/service-instances/inst-2/backups",
        &[("cookie", &cookie)],
    )
    .await;
    assert!(
        r.status.is_client_error() && r.status != StatusCode::OK,
        "{}",
        r.text
    );
    assert!(!r.text.contains("\"backups\""), "{}", r.text);
}

#[tokio::test]
async fn a_cookie_replayed_after_expiry_is_refused() {
    let a = agent(Duration::from_millis(300), false).await;
    let (cookie, session) = sign_in(&a).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = send(
        &a,
        Method::GET,
        "/service-instances/inst-1/backups",
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert!(
        r.json()["description"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{}",
        r.text
    );
    let csrf = session["csrf_token"].as_str().unwrap();
    let r = send(
        &a,
        Method::POST,
        "/service-instances/inst-1/backups",
        &[("cookie", &cookie), ("x-csrf-token", csrf)],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(tasks(&a).await, 0);
    // A browser at the root gets the page (which asks for a token), not the data.
    let r = send(
        &a,
        Method::GET,
        ROOT,
        &[("cookie", &cookie), ("accept", "text/html")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("Sign in with a token"));
    assert!(!r.headers.contains_key(header::SET_COOKIE));
}

#[tokio::test]
async fn without_credentials_a_browser_gets_the_page_and_a_client_401() {
    let a = agent(Duration::from_hours(1), false).await;
    let browser = "text/html,application/xhtml+xml,*/*;q=0.8";
    let r = send(&a, Method::GET, ROOT, &[("accept", browser)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("Sign in with a token"));
    assert!(!r.text.contains(INSTANCE), "the page holds no data");
    assert!(!r.headers.contains_key(header::SET_COOKIE));
    let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'none'; script-src 'sha256-"),
        "{csp}"
    );
    for (path, accept) in [
        (ROOT, "application/json"),
        (ROOT, "*/*"),
        ("/service-instances/inst-1/backups", browser),
    ] {
        let r = send(&a, Method::GET, path, &[("accept", accept)]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path} {accept}");
        assert_eq!(r.json()["error"], "unauthorized");
    }
}

#[test]
fn the_page_refers_to_no_other_origin() {
    for (name, text) in [
        ("index.html", HTML),
        ("app.js", SCRIPT),
        ("style.css", STYLE),
    ] {
        let lower = text.to_ascii_lowercase();
        for needle in ["http://", "https://", "//cdn", "@import", "url("] {
            assert!(!lower.contains(needle), "{name} contains {needle}");
        }
        assert!(!lower.contains("src=\""), "{name} loads a file");
    }
    assert!(HTML.contains("/*SCRIPT*/") && HTML.contains("/*STYLE*/"));
}

#[tokio::test]
async fn a_static_token_removed_from_the_file_ends_its_sessions() {
    let a = agent(Duration::from_hours(1), false).await;
    let (cookie, session) = sign_in(&a).await;
    let csrf = session["csrf_token"].as_str().unwrap();
    let backups = "/service-instances/inst-1/backups";
    let r = send(&a, Method::GET, backups, &[("cookie", &cookie)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The token leaves the file; the file is reread (as on SIGHUP).
    std::fs::write(a.dir.path().join("tokens"), "another-token-7d1e\n").unwrap();
    a.state.auth.reload(None);
    let r = send(
        &a,
        Method::POST,
        backups,
        &[("cookie", &cookie), ("x-csrf-token", csrf)],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(r.json()["error"], "unauthorized");
    assert_eq!(tasks(&a).await, 0, "a refused POST queued nothing");
    let r = send(&a, Method::GET, backups, &[("cookie", &cookie)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert!(
        r.json()["description"]
            .as_str()
            .unwrap()
            .contains("unknown"),
        "the session is gone: {}",
        r.text
    );
    assert!(a.state.sessions.is_empty());
}

#[tokio::test]
async fn calls_with_the_header_neither_flush_sessions_nor_open_one_each() {
    let a = agent(Duration::from_hours(1), false).await;
    let (cookie, session) = sign_in(&a).await;
    let bearer = format!("Bearer {TOKEN}");
    // The cookie sent beside the header that opened it: the same session, no new cookie.
    let r = send(
        &a,
        Method::GET,
        ROOT,
        &[
            ("authorization", &bearer),
            ("cookie", &cookie),
            ("accept", "application/json"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["csrf_token"], session["csrf_token"]);
    assert!(!r.headers.contains_key(header::SET_COOKIE));
    // A HEAD opens none.
    let r = send(&a, Method::HEAD, ROOT, &[("authorization", &bearer)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.headers.contains_key(header::SET_COOKIE));
    assert_eq!(a.state.sessions.len(), 1);
    // Many sign-ins of one client keep at most its share; the first browser stays in.
    for _ in 0..200 {
        send(&a, Method::GET, ROOT, &[("authorization", &bearer)]).await;
    }
    assert_eq!(
        a.state.sessions.len(),
        crate::api::session::MAX_PER_CREDENTIAL
    );
    let tokens = a.dir.path().join("tokens");
    std::fs::write(&tokens, format!("{TOKEN}\nbrowser-token-5c2a\n")).unwrap();
    a.state.auth.reload(None);
    let other = "Bearer browser-token-5c2a";
    let browser = send(&a, Method::GET, ROOT, &[("authorization", other)]).await;
    let browser = browser.headers[header::SET_COOKIE].to_str().unwrap();
    let browser = browser.split(';').next().unwrap().to_string();
    for _ in 0..50 {
        send(&a, Method::GET, ROOT, &[("authorization", &bearer)]).await;
        let respelled = format!("bearer   {TOKEN}");
        send(&a, Method::GET, ROOT, &[("authorization", &respelled)]).await;
    }
    assert_eq!(
        a.state.sessions.len(),
        crate::api::session::MAX_PER_CREDENTIAL + 1
    );
    let r = send(
        &a,
        Method::GET,
        "/service-instances/inst-1/backups",
        &[("cookie", &browser)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
