//! Platform tokens (`api.uaa`, `api.cloud_controller`) through the real daemon, with JWTs
//! issued by a real `OpenID` Connect provider (oidc-provider, started by `tests/run.sh` from
//! `tests/servers/oidc.sh`): the valid ones and every bad one of the issue as a row of
//! status and body, none of them in the daemon's log; the Cloud Controller's permission
//! answer and its cache; an issuer whose keys cannot be fetched.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::Env;
use serde_json::{Value, json};

const STATIC_TOKEN: &str = "static-tok-9b2e4d71";
const INSTANCE: &str = "a1b2c3d4-0000-4000-8000-00000000cafe";

/// The issuer, from `tests/servers/oidc.sh`; missing is a failure, not a skip.
fn issuer() -> String {
    std::env::var("SB_TEST_OIDC_ISSUER").expect(
        "SB_TEST_OIDC_ISSUER is not set: run the tests through tests/run.sh, which starts \
         the OpenID Connect provider (tests/servers/oidc.sh)",
    )
}

/// An access token of `client` for `resource` with `scope`.
async fn token(client: &str, resource: Option<&str>, scope: &str) -> String {
    let mut form = vec![("grant_type", "client_credentials"), ("scope", scope)];
    if let Some(r) = resource {
        form.push(("resource", r));
    }
    let body = serde_urlencoded::to_string(&form).unwrap();
    let answer = reqwest::Client::new()
        .post(format!("{}/token", issuer()))
        .basic_auth(client, Some("secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let token = answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    common::secret(token);
    token.to_string()
}

async fn text_of(path: &str) -> String {
    reqwest::get(format!("{}{path}", issuer()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The parts of a JWT, the header and payload decoded.
fn parts(token: &str) -> (Value, Value, String) {
    let mut it = token.split('.');
    let json_of = |p: Option<&str>| -> Value {
        serde_json::from_slice(&B64.decode(p.unwrap()).unwrap()).unwrap()
    };
    let header = json_of(it.next());
    let payload = json_of(it.next());
    (header, payload, it.next().unwrap().to_string())
}

fn encode(v: &Value) -> String {
    B64.encode(serde_json::to_vec(v).unwrap())
}

/// A daemon with the API on a free port, a static token and `api_extra` under `api:`.
struct Agent {
    env: Env,
    child: Child,
    port: u16,
}

impl Agent {
    async fn start(api_extra: &str) -> Self {
        common::secret(STATIC_TOKEN);
        let env = Env::new();
        let d = env.dir.path().display().to_string();
        let port = service_backup_testkit::free_port();
        common::write_private(&env.path("tokens"), format!("{STATIC_TOKEN}\n"));
        env.write_config(&format!(
            "cron_schedule: \"0 0 1 1 *\"\ninstance_id: {INSTANCE}\n\
             api:\n  listen: 127.0.0.1:{port}\n  bearer_tokens_file: {d}/tokens\n{api_extra}"
        ));
        let child = Command::new(common::binary())
            .args(["run", "config.yml"])
            .current_dir(env.dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(env.path("daemon.log")).unwrap())
            .stderr(std::fs::File::create(env.path("daemon.err")).unwrap())
            .spawn()
            .unwrap();
        let agent = Self { env, child, port };
        let start = Instant::now();
        loop {
            let health = reqwest::get(format!("http://127.0.0.1:{port}/health")).await;
            if health.is_ok_and(|r| r.status() == 200) {
                return agent;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the daemon did not answer /health: {}",
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        let read = |n| std::fs::read_to_string(self.env.path(n)).unwrap_or_default();
        format!("{}{}", read("daemon.log"), read("daemon.err"))
    }

    /// `GET /service-instances/{INSTANCE}/backups` with `authorization`: status and body.
    async fn get(&self, authorization: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .get(format!(
                "http://127.0.0.1:{}/service-instances/{INSTANCE}/backups",
                self.port
            ))
            .header("authorization", authorization)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        common::printed(&self.log());
    }
}

/// `api.uaa` deciding by scopes, with no leeway so that a 1-second token expires soon.
fn by_scopes(issuer: &str) -> String {
    format!(
        "  uaa:\n    jwks_url: {issuer}/jwks\n    issuer: {issuer}\n    audience: service-backup\n    \
         required_scopes: [backup.manage]\n    leeway_seconds: 0\n"
    )
}

/// One bad-input row: the token sent, the status and the words of the body.
struct Row {
    name: &'static str,
    authorization: String,
    status: u16,
    words: &'static [&'static str],
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_platform_tokens_pass_and_every_bad_one_is_refused() {
    let issuer = issuer();
    let agent = Agent::start(&by_scopes(&issuer)).await;
    let wrong_issuer = Agent::start(&by_scopes(&issuer).replace(
        &format!("issuer: {issuer}\n"),
        "issuer: https://uaa.other.test/oauth/token\n",
    ))
    .await;
    let scope = "cloud_controller.read backup.manage";
    let rs256 = token("backup-client", None, scope).await;
    let es256 = token("backup-client", Some("https://backup-es.test"), scope).await;
    let short = token("short-lived", None, scope).await;
    let (header, payload, signature) = parts(&rs256);

    // Forged from the valid token: alg none; HS256 keyed with the RSA public key's PEM
    // (the classic confusion: a verifier that takes the algorithm from the token would
    // accept it); a payload given another subject under the original signature.
    let body = encode(&payload);
    let none = format!(
        "{}.{body}.",
        encode(&json!({"alg": "none", "typ": "at+jwt"}))
    );
    let hs_head = encode(&json!({"alg": "HS256", "typ": "at+jwt", "kid": header["kid"]}));
    let pem = text_of("/test/public.pem").await;
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, pem.as_bytes());
    let mac = ring::hmac::sign(&key, format!("{hs_head}.{body}").as_bytes());
    let hmac = format!("{hs_head}.{body}.{}", B64.encode(mac.as_ref()));
    let mut other = payload.clone();
    other["sub"] = json!("someone-else");
    other["scope"] = json!("backup.manage cloud_controller.admin");
    let tampered = format!("{}.{}.{signature}", encode(&header), encode(&other));
    let foreign = text_of("/test/foreign-token").await;
    common::secret(&foreign);
    let wrong_aud = token("backup-client", Some("https://other.test"), scope).await;
    let no_scope = token("backup-client", None, "cloud_controller.read").await;

    // Leeway 0: the 1-second token is past its exp two seconds on.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let rows = [
        Row {
            name: "valid RS256",
            authorization: format!("Bearer {rs256}"),
            status: 200,
            words: &["backups"],
        },
        Row {
            name: "valid ES256",
            authorization: format!("Bearer {es256}"),
            status: 200,
            words: &["backups"],
        },
        // As `cf oauth-token` prints it.
        Row {
            name: "scheme word in lower case",
            authorization: format!("bearer {rs256}"),
            status: 200,
            words: &["backups"],
        },
        Row {
            name: "static token beside them",
            authorization: format!("Bearer {STATIC_TOKEN}"),
            status: 200,
            words: &["backups"],
        },
        Row {
            name: "expired",
            authorization: format!("bearer {short}"),
            status: 401,
            words: &["unauthorized", "the token has expired"],
        },
        Row {
            name: "wrong audience",
            authorization: format!("bearer {wrong_aud}"),
            status: 401,
            words: &["unauthorized", "not meant for this service"],
        },
        Row {
            name: "unknown key id",
            authorization: format!("bearer {foreign}"),
            status: 401,
            words: &["unauthorized", "a key the token issuer does not publish"],
        },
        Row {
            name: "alg none",
            authorization: format!("bearer {none}"),
            status: 401,
            words: &["unauthorized", "not a JWT signed with RS256 or ES256"],
        },
        Row {
            name: "HS256 keyed with the public key",
            authorization: format!("bearer {hmac}"),
            status: 401,
            words: &["unauthorized", "not a JWT signed with RS256 or ES256"],
        },
        Row {
            name: "tampered payload",
            authorization: format!("bearer {tampered}"),
            status: 401,
            words: &["unauthorized", "signature is not valid"],
        },
        Row {
            name: "missing scope",
            authorization: format!("bearer {no_scope}"),
            status: 403,
            words: &["forbidden", "lacks a scope"],
        },
        Row {
            name: "not a JWT",
            authorization: "bearer not.a-jwt".to_string(),
            status: 401,
            words: &["unauthorized"],
        },
    ];
    let mut failures = Vec::new();
    for row in &rows {
        let (status, body) = agent.get(&row.authorization).await;
        let text = body.to_string();
        if status != row.status || row.words.iter().any(|w| !text.contains(w)) {
            failures.push(format!("{}: {status} {text}", row.name));
        }
        if status != 200 && (body.get("error").is_none() || body.get("description").is_none()) {
            failures.push(format!("{}: not an error body: {text}", row.name));
        }
    }
    let (status, body) = wrong_issuer.get(&format!("bearer {rs256}")).await;
    if status != 401 || !body.to_string().contains("issued by another issuer") {
        failures.push(format!("wrong issuer: {status} {body}"));
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // No token, nor the signature of one, in the log.
    let log = agent.log() + &wrong_issuer.log();
    for row in &rows {
        let token = row.authorization.split_once(' ').unwrap().1;
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !log.contains(token),
            "{}: the token is in the log",
            row.name
        );
        assert!(
            signature.len() < 8 || !log.contains(signature),
            "{}: its signature is in the log",
            row.name
        );
    }
    assert!(log.contains("API request refused"), "{log}");
}

/// A stand-in for the Cloud Controller's `GET /v3/service_instances/{guid}/permissions`,
/// serving the documented response shape `{"read": bool, "manage": bool}` (it is not a
/// Cloud Controller: it checks only the path and that a bearer token came along).
struct CloudController {
    url: String,
    manage: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
    asked: Arc<AtomicUsize>,
}

async fn cloud_controller() -> CloudController {
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    type Flags = (Arc<AtomicBool>, Arc<AtomicBool>, Arc<AtomicUsize>);
    async fn permissions(
        State((manage, down, asked)): State<Flags>,
        Path(guid): Path<String>,
        headers: HeaderMap,
    ) -> (StatusCode, String) {
        asked.fetch_add(1, Ordering::SeqCst);
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("bearer ey"));
        if down.load(Ordering::SeqCst) {
            return (StatusCode::BAD_GATEWAY, "down".into());
        }
        if !bearer {
            return (StatusCode::UNAUTHORIZED, "{}".into());
        }
        if guid != INSTANCE {
            return (StatusCode::NOT_FOUND, "{}".into());
        }
        let manage = manage.load(Ordering::SeqCst);
        (
            StatusCode::OK,
            json!({"read": true, "manage": manage}).to_string(),
        )
    }
    let flags: Flags = Default::default();
    let app = axum::Router::new()
        .route(
            "/v3/service_instances/{guid}/permissions",
            axum::routing::get(permissions),
        )
        .with_state(flags.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    CloudController {
        url,
        manage: flags.0,
        down: flags.1,
        asked: flags.2,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cloud_controller_decides_and_its_answer_is_kept_briefly() {
    let issuer = issuer();
    let cc = cloud_controller().await;
    cc.manage.store(true, Ordering::SeqCst);
    let agent = Agent::start(&format!(
        "  uaa:\n    token_keys_url: {issuer}/jwks\n    issuer: {issuer}\n  \
         cloud_controller:\n    url: {}\n    cache_seconds: 2\n",
        cc.url
    ))
    .await;
    // No scope this service would require: the Cloud Controller alone decides.
    let token = token("backup-client", None, "cloud_controller.read").await;
    let bearer = format!("bearer {token}");
    assert_eq!(agent.get(&bearer).await.0, 200, "manage: true");
    assert_eq!(agent.get(&bearer).await.0, 200);
    assert_eq!(
        cc.asked.load(Ordering::SeqCst),
        1,
        "the second answer came from the cache"
    );
    cc.manage.store(false, Ordering::SeqCst);
    assert_eq!(agent.get(&bearer).await.0, 200, "still the kept answer");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, body) = agent.get(&bearer).await;
    assert_eq!(
        (status, &body["error"]),
        (403, &json!("forbidden")),
        "{body}"
    );
    assert_eq!(
        cc.asked.load(Ordering::SeqCst),
        2,
        "asked again past the lifetime"
    );
    // Static tokens never ask.
    assert_eq!(agent.get(&format!("Bearer {STATIC_TOKEN}")).await.0, 200);
    assert_eq!(cc.asked.load(Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    cc.down.store(true, Ordering::SeqCst);
    let (status, body) = agent.get(&bearer).await;
    assert_eq!(
        (status, &body["error"]),
        (503, &json!("permissionsUnavailable")),
        "{body}"
    );
    assert!(!agent.log().contains(&token), "the token is in the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_that_cannot_be_fetched_answer_503_quickly_and_static_tokens_still_work() {
    let issuer = issuer();
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/token_keys", silent.local_addr().unwrap());
    let held = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = silent.accept().await {
            keep.lock().await.push(conn);
        }
    });
    let agent = Agent::start(&format!(
        "  uaa:\n    token_keys_url: {silent_url}\n    issuer: {issuer}\n    required_scopes: [backup.manage]\n"
    ))
    .await;
    let token = token("backup-client", None, "backup.manage").await;
    let start = Instant::now();
    let (status, body) = agent.get(&format!("bearer {token}")).await;
    assert_eq!(
        (status, &body["error"]),
        (503, &json!("tokenKeysUnavailable")),
        "{body}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "took {:?}",
        start.elapsed()
    );
    let start = Instant::now();
    assert_eq!(agent.get(&format!("Bearer {STATIC_TOKEN}")).await.0, 200);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
    assert!(!held.lock().await.is_empty(), "the keys were asked for");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_ca_of_the_issuer_is_trusted_when_given() {
    let issuer = issuer();
    // A TLS server whose certificate a private CA signed: the S3 stand-in of the tests
    // (tests/servers/s3.sh). It serves no keys; what matters is whether TLS passes.
    let tls = std::env::var("SB_TEST_S3_TLS_ENDPOINT")
        .expect("SB_TEST_S3_TLS_ENDPOINT is not set: run the tests through tests/run.sh");
    let ca = std::fs::read_to_string(std::env::var("SB_TEST_S3_CA_CERT").unwrap()).unwrap();
    let uaa = |ca: &str| {
        format!(
            "  uaa:\n    jwks_url: {tls}/jwks\n    issuer: {issuer}\n    \
             required_scopes: [backup.manage]\n{ca}"
        )
    };
    let ca_lines: String = ca.lines().map(|l| format!("      {l}\n")).collect();
    let trusting = Agent::start(&uaa(&format!("    ca_cert: |\n{ca_lines}"))).await;
    let plain = Agent::start(&uaa("")).await;
    let bearer = format!(
        "bearer {}",
        token("backup-client", None, "backup.manage").await
    );
    for agent in [&trusting, &plain] {
        let (status, body) = agent.get(&bearer).await;
        assert_eq!(
            (status, &body["error"]),
            (503, &json!("tokenKeysUnavailable"))
        );
    }
    let (trusting, plain) = (trusting.log(), plain.log());
    assert!(plain.contains("could not be fetched"), "{plain}");
    assert!(plain.contains("UnknownIssuer"), "{plain}");
    assert!(trusting.contains("could not be fetched"), "{trusting}");
    assert!(!trusting.contains("certificate"), "TLS failed: {trusting}");
}

/// `method` of `path` on `agent` with `headers`: status, `Set-Cookie` pair and JSON body.
async fn call(
    agent: &Agent,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("http://127.0.0.1:{}{path}", agent.port))
        .header("accept", "application/json")
        .timeout(Duration::from_secs(20));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|c| c.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, cookie, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dashboard_session_ends_with_the_platform_token_that_opened_it() {
    let issuer = issuer();
    let root = format!("/service-instances/{INSTANCE}/");
    let backups = format!("/service-instances/{INSTANCE}/backups");

    // A 1-second JWT: the session's cookie lives no longer, and it is refused past `exp`.
    let agent = Agent::start(&by_scopes(&issuer)).await;
    let short = token("short-lived", None, "cloud_controller.read backup.manage").await;
    let (status, cookie, session) = call(
        &agent,
        reqwest::Method::GET,
        &root,
        &[("authorization", &format!("bearer {short}"))],
    )
    .await;
    assert_eq!(status, 200, "{session}");
    let cookie = cookie.unwrap();
    let max_age: u64 = cookie
        .split("Max-Age=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(max_age <= 1, "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    let csrf = session["csrf_token"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let (status, _, body) = call(
            &agent,
            method.clone(),
            &backups,
            &[("cookie", &pair), ("x-csrf-token", &csrf)],
        )
        .await;
        assert_eq!(status, 401, "{method} past the token's exp: {body}");
    }

    // The Cloud Controller's answer turns to `manage: false`: the session ends.
    let cc = cloud_controller().await;
    cc.manage.store(true, Ordering::SeqCst);
    let agent = Agent::start(&format!(
        "  uaa:\n    token_keys_url: {issuer}/jwks\n    issuer: {issuer}\n  \
         cloud_controller:\n    url: {}\n    cache_seconds: 1\n",
        cc.url
    ))
    .await;
    let token = token("backup-client", None, "cloud_controller.read").await;
    let (status, cookie, body) = call(
        &agent,
        reqwest::Method::GET,
        &root,
        &[("authorization", &format!("bearer {token}"))],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let pair = cookie.unwrap().split(';').next().unwrap().to_string();
    let with_cookie = [("cookie", pair.as_str())];
    assert_eq!(
        call(&agent, reqwest::Method::GET, &backups, &with_cookie)
            .await
            .0,
        200
    );
    cc.manage.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, _, body) = call(&agent, reqwest::Method::GET, &backups, &with_cookie).await;
    assert_eq!(
        (status, &body["error"]),
        (403, &json!("forbidden")),
        "{body}"
    );
    cc.manage.store(true, Ordering::SeqCst);
    let (status, _, body) = call(&agent, reqwest::Method::GET, &backups, &with_cookie).await;
    assert_eq!(status, 401, "the session ended for good: {body}");
    assert!(!agent.log().contains(&token), "the token is in the log");
}
