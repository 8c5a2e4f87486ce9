//! The HTTP API: whatever the request, the real router (on a temporary state with a local
//! destination, its own task database and an idle queue) accepts only a listed token under
//! the `Bearer` scheme and quotes none in a refusal, takes backup ids only as whole
//! numbers, accepts a restore only for this instance with both fields, gives a one-line
//! reason for a body it cannot read, and neither panics nor answers with a server error.
//!
//! The input is a request as it is sent: `METHOD TARGET ...`, header lines `Name: value`,
//! an empty line, then the body (lines end in `\n` or `\r\n`). What `http` refuses as a
//! method, target, header name or value is dropped, as a server drops it before routing.
#![no_main]

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use service_backup::api::{self, ApiState, auth, request};
use tower::ServiceExt as _;

const INSTANCE: &str = "inst-1";
const TOKENS: [&str; 2] = ["tok-Fuzz-3f9a1c7e5b", "a token with spaces"];
/// The id of the backup task that a `POST /backups` makes at start: no worker runs it, so
/// it stays queued (and later posts join it).
const QUEUED_BACKUP: i64 = 1;

/// The router on its state, and the runtime that serves it, made once.
struct Fixture {
    _dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    router: Router,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let d = dir.path().display();
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, format!("\n  {}\n{}\n\n", TOKENS[0], TOKENS[1]))
            .expect("the tokens file");
        // The agent refuses a tokens file that others may read.
        let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        std::fs::set_permissions(&tokens, private).expect("the tokens file's mode");
        let config = service_backup::config::parse(&format!(
            "cron_schedule: \"0 0 1 1 *\"\nsource_folder: {d}/source\nstate_dir: {d}/state\n\
             destinations:\n- type: local\n  config:\n    path: {d}/backups\n\
             restore:\n  target_folder: {d}/restored\n\
             api:\n  listen: 127.0.0.1:8443\n  bearer_tokens_file: {d}/tokens\n"
        ))
        .expect("the configuration");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let router = runtime.block_on(async {
            let state = ApiState::standalone(config, INSTANCE)
                .await
                .expect("the API state");
            let router = api::router(state);
            let post = Request::post("/backups")
                .header(header::AUTHORIZATION, format!("Bearer {}", TOKENS[0]))
                .body(Body::empty())
                .expect("a request");
            let answer = router.clone().oneshot(post).await.expect("an answer");
            assert_eq!(answer.status(), StatusCode::CREATED);
            let body = axum::body::to_bytes(answer.into_body(), 1 << 20).await;
            let body: Value = serde_json::from_slice(&body.expect("a body")).expect("JSON");
            assert_eq!(body["id"], QUEUED_BACKUP);
            router
        });
        Fixture {
            _dir: dir,
            runtime,
            router,
        }
    })
}

/// The next line of `rest`, without its `\r\n` or `\n`.
fn line<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let (line, after) = match rest.iter().position(|&c| c == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (*rest, &rest[rest.len()..]),
    };
    *rest = after;
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The input as a request (and its body), if `http` takes its parts.
fn request(data: &[u8]) -> Option<(Request<Body>, &[u8])> {
    let mut rest = data;
    let mut words = line(&mut rest).splitn(3, |&c| c == b' ');
    let mut builder = Request::builder().method(words.next()?).uri(words.next()?);
    loop {
        let header = line(&mut rest);
        if header.is_empty() {
            break;
        }
        if let Some(colon) = header.iter().position(|&c| c == b':') {
            builder = builder.header(&header[..colon], header[colon + 1..].trim_ascii());
        }
    }
    let req = builder.body(Body::from(rest.to_vec())).ok()?;
    Some((req, rest))
}

/// The token of an `Authorization` value read independently of the agent: `Bearer`
/// in any case, then the rest trimmed.
fn bearer_token(value: &[u8]) -> Option<&str> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().split_once(char::is_whitespace))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// The answer's status, its whole text, and its reason (`description` or `msg`).
struct Answer {
    status: StatusCode,
    text: String,
    reason: Option<String>,
    error: Option<String>,
}

/// The bearer check: only a listed token passes, and a refusal says why without quoting
/// any token.
fn check_auth(authorization: Option<&[u8]>, answer: &Answer) {
    let token = authorization.and_then(bearer_token);
    let listed = token.is_some_and(|t| TOKENS.contains(&t));
    if answer.status != StatusCode::UNAUTHORIZED {
        assert!(listed, "accepted without a listed token: {authorization:?}");
        return;
    }
    assert!(!listed, "refused listed {token:?}");
    let expected = match (authorization, token) {
        (None, _) => auth::Refusal::Missing,
        (Some(_), Some(t)) if !t.is_empty() => auth::Refusal::Wrong,
        (Some(_), _) => auth::Refusal::Malformed,
    };
    assert_eq!(
        answer.reason.as_deref(),
        Some(expected.description()),
        "{authorization:?}"
    );
    assert!(
        TOKENS.iter().all(|t| !answer.text.contains(t)),
        "a token in {:?}",
        answer.text
    );
}

/// On the path as routed (slashes collapsed): one with a `.`/`..` segment, an encoded
/// slash or the like is refused with 400 `invalidPath`; else the instance of a prefixed
/// path is the whole segment after the prefix, and another one gets 412 `{"msg"}`.
fn check_instance(path: &str, answer: &Answer) -> bool {
    if let Some(problem) = request::path_problem(path) {
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path:?}: {}", answer.text);
        assert_eq!(answer.error.as_deref(), Some("invalidPath"), "{path:?}");
        assert_eq!(answer.reason.as_deref(), Some(problem), "{path:?}");
        return false;
    }
    let instance = request::INSTANCE_PREFIXES
        .iter()
        .find_map(|p| path.strip_prefix(p))
        .map(|rest| rest.split('/').next().unwrap_or(""));
    let other = instance.is_some_and(|i| i != INSTANCE);
    let refusal = instance.map(|i| format!("instance {i} does not exist here"));
    let refused = answer.status == StatusCode::PRECONDITION_FAILED
        && answer.reason.is_some()
        && answer.reason == refusal;
    assert_eq!(refused, other, "{path:?}: {}", answer.text);
    !other
}

/// A backup id the answer took as the queued backup's is a whole number naming it.
fn check_backup_id(raw: &str, answer: &Answer) {
    let Some(reason) = &answer.reason else { return };
    if !reason.starts_with(&format!("backup {QUEUED_BACKUP} ")) {
        return;
    }
    let t = raw.trim();
    let digits = t.strip_prefix('+').unwrap_or(t);
    assert!(
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
        "{raw:?} taken as backup {QUEUED_BACKUP}"
    );
    assert_eq!(
        digits.trim_start_matches('0'),
        QUEUED_BACKUP.to_string(),
        "{raw:?}"
    );
}

/// The restore body: a 400 with the parser's reason, or a refusal unless it is for this
/// instance with both fields, past which only the backup lookup refuses it.
fn check_restore(content_type: Option<&[u8]>, body: &[u8], answer: &Answer) {
    let fields = match request::restore_fields(content_type, body) {
        Ok(fields) => fields,
        Err(reason) => {
            assert!(!reason.contains('\n'), "{reason:?}");
            assert_eq!(answer.status, StatusCode::BAD_REQUEST);
            assert_eq!(answer.reason.as_ref(), Some(&reason));
            return;
        }
    };
    let ours = fields.get("instance_id").map(String::as_str) == Some(INSTANCE);
    let id = fields.get("backup_id").filter(|b| !b.is_empty());
    assert_eq!(
        answer.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        answer.text
    );
    let reason = answer.reason.as_deref().unwrap_or("");
    // The backup lookup's refusals: no such backup, or `backup N is …`.
    let looked_up =
        reason.starts_with("there is no backup with id ") || reason.starts_with("backup ");
    assert_eq!(looked_up, ours && id.is_some(), "{fields:?}: {reason}");
    if let Some(id) = id {
        check_backup_id(id, answer);
    }
}

/// `quantity`: a whole number of at least 1, or absent; never more samples than asked.
fn check_metrics(query: Option<&str>, answer: &Answer) {
    match request::parse_quantity(request::quantity_param(query).as_deref()) {
        Ok(quantity) => {
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
            // `Accept: text/plain` asks for the latest sample as Prometheus text instead
            // (empty before the first sample).
            if !answer.text.starts_with('[') {
                assert!(
                    answer.text.is_empty() || answer.text.starts_with("# TYPE "),
                    "{}",
                    answer.text
                );
                return;
            }
            let lines: Vec<String> = serde_json::from_str(&answer.text).expect("a list");
            assert!(quantity.is_none_or(|n| n >= 1 && lines.len() <= n));
        }
        Err(reason) => {
            assert_eq!(answer.status, StatusCode::BAD_REQUEST);
            assert_eq!(answer.reason.as_deref(), Some(reason));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((req, body)) = request(data) else {
        return;
    };
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes().to_vec());
    let method = req.method().clone();
    // What the router routes: each run of slashes made one.
    let path = request::collapse_slashes(req.uri().path()).into_owned();
    let query = req.uri().query().map(str::to_string);
    let fixture = fixture();
    let answer = fixture.runtime.block_on(async {
        let response = fixture
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("an answer");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("the answer's body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let field = |k: &str| json.get(k).and_then(Value::as_str).map(str::to_string);
        Answer {
            status,
            reason: field("description").or_else(|| field("msg")),
            error: field("error"),
            text,
        }
    });
    assert!(!answer.status.is_server_error(), "{}", answer.text);
    // Not one line always: a 412 quotes the ids of the request, line breaks included.
    if let Some(reason) = &answer.reason {
        assert!(!reason.is_empty(), "{}", answer.text);
    }
    if path == "/health" {
        return;
    }
    check_auth(authorization.as_deref(), &answer);
    if answer.status == StatusCode::UNAUTHORIZED || !check_instance(&path, &answer) {
        return;
    }
    // The routes, at the root or under a prefix (`…/{instance}/backups/…`).
    let segments: Vec<&str> = path.split('/').collect();
    let rooted = |tail: &[&str]| {
        let under = match segments.as_slice() {
            ["", "service-instances", _, rest @ ..] | ["", "v1", "instances", _, rest @ ..] => rest,
            ["", rest @ ..] => rest,
            _ => return false,
        };
        under.len() == tail.len() && under.iter().zip(tail).all(|(a, b)| b.is_empty() || a == b)
    };
    let backups_prefix = !path.starts_with("/v1/instances/");
    let metrics_prefix = !path.starts_with("/service-instances/");
    if method == "POST" && backups_prefix && rooted(&["backups", "restore"]) {
        check_restore(content_type.as_deref(), body, &answer);
    } else if method == "GET" && backups_prefix && rooted(&["backups", "", "download"]) {
        let id = segments[segments.len() - 2];
        if !id.contains('%') {
            check_backup_id(id, &answer);
        }
    } else if method == "GET" && metrics_prefix && rooted(&["metrics"]) {
        check_metrics(query.as_deref(), &answer);
    }
});
