//! The HTTP API's request parsing: whatever the request line, headers and body, the bearer
//! check accepts only a listed token under the `Bearer` scheme, the instance and backup ids
//! and the restore body give a value or a one-line reason, and nothing panics.
//!
//! The input is a request as it is sent: `METHOD TARGET ...`, header lines `Name: value`,
//! an empty line, then the body (lines end in `\n` or `\r\n`). The router itself needs the
//! whole agent (task database, destinations and their SDKs); its decisions from untrusted
//! bytes are in `api::request` and `api::auth`, compiled in here as they are.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unused_imports, missing_docs)]
#[path = "../../crates/agent/src/api"]
mod api {
    pub mod auth;
    pub mod request;
}
use api::{auth, request};

// `auth` reads the tokens file through the agent's secret-file check.
#[allow(dead_code, missing_docs)]
#[path = "../../crates/agent/src/config"]
mod config {
    pub mod file_mode;
}

const INSTANCE: &str = "inst-1";
const TOKENS: [&str; 2] = ["tok-Fuzz-3f9a1c7e5b", "a token with spaces"];

/// The accepted tokens, from a tokens file written once.
fn tokens() -> &'static auth::Tokens {
    static TOKENS_FILE: OnceLock<(tempfile::TempDir, auth::Tokens)> = OnceLock::new();
    &TOKENS_FILE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let file = dir.path().join("tokens");
            std::fs::write(&file, format!("\n  {}\n{}\n\n", TOKENS[0], TOKENS[1]))
                .expect("the tokens file");
            // The agent refuses a tokens file that others may read.
            let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
            std::fs::set_permissions(&file, private).expect("the tokens file's mode");
            let tokens = auth::Tokens::load(&file).expect("the tokens");
            (dir, tokens)
        })
        .1
}

/// A request split as a server reads it.
struct Request<'a> {
    method: &'a [u8],
    target: &'a [u8],
    headers: Vec<(&'a [u8], &'a [u8])>,
    body: &'a [u8],
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

fn split(data: &[u8]) -> Request<'_> {
    let mut rest = data;
    let mut next_line = || {
        let (line, after) = match rest.iter().position(|&c| c == b'\n') {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = after;
        line.strip_suffix(b"\r").unwrap_or(line)
    };
    let first = next_line();
    let mut words = first.splitn(3, |&c| c == b' ');
    let method = words.next().unwrap_or_default();
    let target = words.next().unwrap_or_default();
    let mut headers = Vec::new();
    loop {
        let line = next_line();
        if line.is_empty() {
            break;
        }
        if let Some(colon) = line.iter().position(|&c| c == b':') {
            headers.push((&line[..colon], trim(&line[colon + 1..])));
        }
    }
    Request {
        method,
        target,
        headers,
        body: rest,
    }
}

fn header<'a>(req: &Request<'a>, name: &str) -> Option<&'a [u8]> {
    req.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| *v)
}

/// The bearer check against an independent reading of the header.
fn check_auth(value: Option<&[u8]>) {
    let verdict = auth::check(tokens(), value);
    let Some(value) = value else {
        assert_eq!(verdict, Err(auth::Refusal::Missing));
        return;
    };
    let expected = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().split_once(char::is_whitespace))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match verdict {
        Ok(()) => {
            let token = expected.expect("accepted without `Bearer <token>`");
            assert!(
                TOKENS.contains(&token),
                "accepted an unlisted token {token:?}"
            );
        }
        Err(auth::Refusal::Missing) => panic!("a header present reported missing"),
        Err(auth::Refusal::Wrong) => {
            let token = expected.expect("a malformed header reported as a wrong token");
            assert!(
                !token.is_empty() && !TOKENS.contains(&token),
                "refused listed {token:?}"
            );
        }
        Err(auth::Refusal::Malformed) => {
            assert!(
                expected.is_none_or(str::is_empty),
                "refused a well-formed header"
            )
        }
    }
    if let Err(refusal) = verdict {
        let shown = refusal.description();
        assert!(
            TOKENS.iter().all(|t| !shown.contains(t)),
            "a token in {shown:?}"
        );
    }
}

/// The instance of a prefixed path is the whole segment after the prefix.
fn check_instance(path: &str) {
    match request::prefixed_instance(path) {
        Some(instance) => {
            assert!(!instance.contains('/'));
            let prefixed = request::INSTANCE_PREFIXES.iter().any(|p| {
                path.strip_prefix(p).is_some_and(|rest| {
                    rest == instance || rest.starts_with(&format!("{instance}/"))
                })
            });
            assert!(
                prefixed,
                "{instance:?} is not the segment after a prefix of {path:?}"
            );
        }
        None => assert!(
            request::INSTANCE_PREFIXES
                .iter()
                .all(|p| !path.starts_with(p)),
            "a prefixed path without an instance: {path:?}"
        ),
    }
}

/// A backup id is a whole number, with a sign at most, or nothing.
fn check_backup_id(raw: &str) {
    if let Some(id) = request::backup_id(raw) {
        let t = raw.trim();
        let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
        assert!(
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
            "{raw:?}"
        );
        let canonical = digits.trim_start_matches('0');
        let canonical = if canonical.is_empty() { "0" } else { canonical };
        assert_eq!(id.unsigned_abs().to_string(), canonical, "{raw:?}");
    }
}

/// The restore body: fields or a one-line reason; the request's backup only for this
/// instance, with both fields present.
fn check_restore(content_type: Option<&[u8]>, body: &[u8]) {
    let fields: HashMap<String, String> = match request::restore_fields(content_type, body) {
        Ok(fields) => fields,
        Err(reason) => {
            assert!(!reason.is_empty() && !reason.contains('\n'), "{reason:?}");
            return;
        }
    };
    match request::restore_backup_id(&fields, INSTANCE) {
        Ok(id) => {
            assert_eq!(
                fields.get("instance_id").map(String::as_str),
                Some(INSTANCE)
            );
            assert!(!id.is_empty());
            check_backup_id(id);
        }
        Err(msg) => {
            assert!(!msg.is_empty());
            let ours = fields.get("instance_id").map(String::as_str) == Some(INSTANCE);
            let has_id = fields.get("backup_id").is_some_and(|b| !b.is_empty());
            assert!(
                !(ours && has_id),
                "refused a request for this instance: {msg}"
            );
        }
    }
}

fn check_quantity(query: Option<&str>) {
    match request::parse_quantity(request::quantity_param(query).as_deref()) {
        Ok(Some(n)) => assert!(n >= 1),
        Ok(None) => {}
        Err(reason) => assert_eq!(reason, request::INVALID_QUANTITY),
    }
}

fuzz_target!(|data: &[u8]| {
    let req = split(data);
    check_auth(header(&req, "authorization"));
    check_restore(header(&req, "content-type"), req.body);
    let _ = req.method;
    let Ok(target) = std::str::from_utf8(req.target) else {
        return;
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    check_instance(path);
    check_quantity(query);
    // `/backups/{id}/download`, at the root or under a prefix.
    let segments: Vec<&str> = path.split('/').collect();
    if let [.., "backups", id, "download"] = segments.as_slice() {
        check_backup_id(id);
    }
});
