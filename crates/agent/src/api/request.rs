//! What the API decides from a request's untrusted bytes, before any state is touched: the
//! path as it is routed (repeated slashes collapsed, tricks refused), the instance id of a
//! prefixed path, a backup id, the fields of a restore body, the restore request's instance
//! and backup, the paging of the list, and the metrics quantity.
//!
//! It depends on nothing of the agent but the standard library, `chrono`, `serde_json` and
//! `serde_urlencoded`, so that the `api` fuzz target compiles it as it is.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The path prefixes that name an instance: backups, then metrics.
pub const INSTANCE_PREFIXES: [&str; 2] = ["/service-instances/", "/v1/instances/"];

/// The description of a `quantity` that is not a whole number of at least 1.
pub const INVALID_QUANTITY: &str = "quantity must be a whole number of at least 1";

/// The description of a `limit` that is not a whole number of at least 1.
pub const INVALID_LIMIT: &str = "limit must be a whole number of at least 1";

/// The description of a `before` that is neither a task id nor an RFC 3339 time.
pub const INVALID_BEFORE: &str =
    "before must be a task id (a whole number) or an RFC 3339 time such as 2026-01-02T03:04:05Z";

/// `path` with each run of slashes made one: `"${dashboard_url}/backups"` with a dashboard
/// URL that ends in `/` names the same route as without it.
pub fn collapse_slashes(path: &str) -> Cow<'_, str> {
    if !path.contains("//") {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// Why `path` (as sent, percent-encoded) is refused before routing, if it is: a `.` or
/// `..` segment (in any mix of plain and encoded dots), an encoded slash or backslash, a
/// backslash, an encoded NUL or control byte, or a `%` not followed by two hex digits.
/// Such paths name nothing this API serves, and refusing them outright means no decoding
/// step further on can turn one into another instance's route.
pub fn path_problem(path: &str) -> Option<&'static str> {
    for segment in path.split('/') {
        let Some(decoded) = percent_decode(segment) else {
            return Some("the path has a `%` not followed by two hex digits");
        };
        if decoded == b"." || decoded == b".." {
            return Some("the path has a `.` or `..` segment");
        }
        if decoded.iter().any(|b| matches!(b, b'/' | b'\\')) {
            return Some("the path has an encoded slash or a backslash in a segment");
        }
        if decoded.iter().any(u8::is_ascii_control) {
            return Some("the path has a control character");
        }
    }
    None
}

/// The bytes of a percent-encoded path segment; `None` for a `%` not followed by two hex
/// digits.
fn percent_decode(segment: &str) -> Option<Vec<u8>> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The instance id a prefixed path names (`None` for a path at the root).
pub fn prefixed_instance(path: &str) -> Option<&str> {
    INSTANCE_PREFIXES
        .iter()
        .find_map(|p| path.strip_prefix(p))
        .map(|rest| rest.split('/').next().unwrap_or(""))
}

/// A backup id as a client sends it (path or body): a whole number, spaces around allowed.
pub fn backup_id(raw: &str) -> Option<i64> {
    raw.trim().parse().ok()
}

/// Whether a `Content-Type` value names JSON (`application/json`, parameters ignored).
pub fn is_json(content_type: Option<&[u8]>) -> bool {
    content_type
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// The fields of a restore body: a JSON object (string and number values) when the content
/// type is JSON, else a form; a body that is neither gives the description of a 400.
pub fn restore_fields(
    content_type: Option<&[u8]>,
    raw: &[u8],
) -> Result<HashMap<String, String>, String> {
    if is_json(content_type) {
        let value: Value =
            serde_json::from_slice(raw).map_err(|e| format!("the body is not valid JSON: {e}"))?;
        let Value::Object(map) = value else {
            return Err(
                "the body must be a JSON object with instance_id and backup_id".to_string(),
            );
        };
        return Ok(map
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                Value::Number(n) => Some((k, n.to_string())),
                _ => None,
            })
            .collect());
    }
    let text = std::str::from_utf8(raw).map_err(|_| "the form body is not UTF-8".to_string())?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(text)
        .map(|pairs| pairs.into_iter().collect())
        .map_err(|e| format!("the body is not a valid form: {e}"))
}

/// The `password` of a `PUT /backups/password` body: a JSON object when the content type
/// is JSON, else a form; else the description of a 400, which never shows the body.
pub fn password_field(content_type: Option<&[u8]>, raw: &[u8]) -> Result<String, String> {
    const SHAPE: &str = "the body must be {\"password\": \"...\"} (JSON) or password=... (a form)";
    let found = if is_json(content_type) {
        match serde_json::from_slice::<Value>(raw) {
            Ok(Value::Object(mut map)) => match map.remove("password") {
                Some(Value::String(s)) => Some(s),
                Some(_) => return Err("password must be a string".to_string()),
                None => None,
            },
            _ => return Err(format!("the body is not a JSON object: {SHAPE}")),
        }
    } else {
        std::str::from_utf8(raw).map_err(|_| "the form body is not UTF-8".to_string())?;
        form_password(raw)?
    };
    found.ok_or_else(|| format!("password is missing: {SHAPE}"))
}

/// The first `password` field of a form body. Form decoders replace percent-encoded bytes
/// that are not UTF-8 with U+FFFD, which would store a password other than the one sent:
/// here they are refused.
fn form_password(raw: &[u8]) -> Result<Option<String>, String> {
    let decode = |part: &[u8]| -> Vec<u8> {
        let plus: Vec<u8> = part
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&plus).collect()
    };
    for pair in raw.split(|&b| b == b'&') {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        if decode(key) != b"password" {
            continue;
        }
        return String::from_utf8(decode(value)).map(Some).map_err(|_| {
            "the password in the form is not UTF-8 once percent-decoded: send the password's UTF-8 bytes, percent-encoded".to_string()
        });
    }
    Ok(None)
}

/// The backup id (as sent) that a restore request for `instance_id` names, or the message
/// of the 412 that refuses it.
pub fn restore_backup_id<'a, S: BuildHasher>(
    fields: &'a HashMap<String, String, S>,
    instance_id: &str,
) -> Result<&'a str, String> {
    let Some(instance) = fields.get("instance_id").filter(|i| !i.is_empty()) else {
        return Err("instance_id is missing".to_string());
    };
    if instance != instance_id {
        return Err(format!("instance {instance} does not exist here"));
    }
    match fields.get("backup_id").filter(|b| !b.is_empty()) {
        Some(id) => Ok(id),
        None => Err("backup_id is missing".to_string()),
    }
}

/// The `quantity` parameter of a raw query string, if present (the first one).
pub fn quantity_param(query: Option<&str>) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query.unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "quantity")
        .map(|(_, v)| v)
}

/// Where a page of the list ends: tasks older than this id or this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Before {
    /// Tasks with a smaller id.
    Id(i64),
    /// Tasks created earlier.
    Time(DateTime<Utc>),
}

/// The paging of `GET /backups`: at most `limit` backups and `limit` restores (all when
/// absent), newest first, older than `before` (from the newest when absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Page {
    /// How many of each at most.
    pub limit: Option<usize>,
    /// Only tasks older than this.
    pub before: Option<Before>,
}

/// The `limit` and `before` parameters of a raw query string (the first of each; others
/// ignored), or the description of the 400 for a bad value.
pub fn page_params(query: Option<&str>) -> Result<Page, &'static str> {
    let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(query.unwrap_or(""))
        .unwrap_or_default();
    let first = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim());
    let limit = match first("limit") {
        None => None,
        Some(raw) => Some(
            parse_quantity(Some(raw))
                .map_err(|_| INVALID_LIMIT)?
                .unwrap_or(usize::MAX),
        ),
    };
    let before = match first("before") {
        None => None,
        Some(raw) if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) => {
            // An id past i64 is past every task: the page starts at the newest.
            Some(Before::Id(raw.parse().unwrap_or(i64::MAX)))
        }
        Some(raw) => Some(Before::Time(
            DateTime::parse_from_rfc3339(raw)
                .map_err(|_| INVALID_BEFORE)?
                .with_timezone(&Utc),
        )),
    };
    Ok(Page { limit, before })
}

impl Page {
    /// Whether a task of `id` created at `created_at` is older than `before`.
    pub fn admits(&self, id: i64, created_at: DateTime<Utc>) -> bool {
        match self.before {
            None => true,
            Some(Before::Id(b)) => id < b,
            Some(Before::Time(t)) => created_at < t,
        }
    }
}

/// `quantity` of `GET /metrics`: absent is everything, else a whole number of at least 1
/// (a huge one is everything).
pub fn parse_quantity(raw: Option<&str>) -> Result<Option<usize>, &'static str> {
    let Some(raw) = raw else { return Ok(None) };
    let raw = raw.trim();
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(INVALID_QUANTITY);
    }
    if raw.bytes().all(|b| b == b'0') {
        return Err(INVALID_QUANTITY);
    }
    // All digits: too large to parse is simply "everything".
    Ok(Some(raw.parse::<usize>().unwrap_or(usize::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_of_a_prefixed_path() {
        assert_eq!(prefixed_instance("/service-instances/a/backups"), Some("a"));
        assert_eq!(prefixed_instance("/v1/instances/b/metrics"), Some("b"));
        assert_eq!(prefixed_instance("/service-instances/"), Some(""));
        assert_eq!(prefixed_instance("/backups"), None);
    }

    #[test]
    fn restore_bodies_as_form_and_json() {
        let json = Some(&b"application/json; charset=utf-8"[..]);
        let f = restore_fields(json, br#"{"instance_id": "i", "backup_id": 3}"#).unwrap();
        assert_eq!(restore_backup_id(&f, "i"), Ok("3"));
        assert_eq!(
            restore_backup_id(&f, "j"),
            Err("instance i does not exist here".to_string())
        );
        let f = restore_fields(None, b"instance_id=i&backup_id=x").unwrap();
        assert_eq!(restore_backup_id(&f, "i"), Ok("x"));
        assert_eq!(backup_id("x"), None);
        assert_eq!(backup_id(" 7 "), Some(7));
        assert!(
            restore_fields(json, b"[1]")
                .unwrap_err()
                .contains("JSON object")
        );
        assert!(
            restore_fields(json, b"{")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(restore_fields(None, b"\xff").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn password_bodies_as_json_and_form_never_echo_it() {
        let json = Some(&b"application/json"[..]);
        let p = password_field(json, br#"{"password": "long enough pw"}"#).unwrap();
        assert_eq!(p, "long enough pw");
        let p = password_field(None, b"password=long+enough%21").unwrap();
        assert_eq!(p, "long enough!");
        let p = password_field(None, b"a=%ff&password=caf%C3%A9+au+lait&password=second").unwrap();
        assert_eq!(p, "caf\u{e9} au lait");
        for (ct, raw, part) in [
            (json, &br#"{"password": 1234}"#[..], "must be a string"),
            (
                json,
                br#"{"pass": "hunter2hunter2"}"#,
                "password is missing",
            ),
            (json, br#"["hunter2hunter2"]"#, "not a JSON object"),
            (
                json,
                br#"{"password": "hunter2hunter2""#,
                "not a JSON object",
            ),
            (None, b"pw=hunter2hunter2", "password is missing"),
            // Lossy decoding would turn these into U+FFFD and store another password.
            (
                None,
                b"password=%ff%fehunter2hunter2",
                "not UTF-8 once percent-decoded",
            ),
            (None, b"pw=1&password=hunter2%c3(hunter2", "not UTF-8"),
        ] {
            let e = password_field(ct, raw).unwrap_err();
            assert!(e.contains(part), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn slashes_collapse_and_tricks_are_named() {
        assert_eq!(collapse_slashes("/a//b///c/"), "/a/b/c/");
        assert!(matches!(collapse_slashes("/a/b"), Cow::Borrowed(_)));
        assert_eq!(
            path_problem("/service-instances/i/backups/3/download"),
            None
        );
        assert_eq!(path_problem("/service-instances/%252e%252e/backups"), None);
        for dots in ["/a/../b", "/a/./b", "/a/%2e%2E/b", "/a/.%2e", "/a/%2E"] {
            assert!(path_problem(dots).unwrap().contains("`..`"), "{dots}");
        }
        for slash in ["/a%2Fb", "/a%2fb", "/a%5cb", "/a\\b"] {
            assert!(path_problem(slash).unwrap().contains("slash"), "{slash}");
        }
        assert!(path_problem("/a%00").unwrap().contains("control"));
        assert!(path_problem("/a%zz").unwrap().contains("hex"));
        assert!(path_problem("/a%4").unwrap().contains("hex"));
    }

    #[test]
    fn paging_of_the_list() {
        assert_eq!(page_params(None), Ok(Page::default()));
        let p = page_params(Some("limit=2&before=7&x=y")).unwrap();
        assert_eq!((p.limit, p.before), (Some(2), Some(Before::Id(7))));
        assert!(p.admits(6, Utc::now()) && !p.admits(7, Utc::now()));
        let p = page_params(Some("before=2026-01-02T03:04:05Z")).unwrap();
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .to_utc();
        assert!(!p.admits(1, at) && p.admits(1, at - chrono::Duration::seconds(1)));
        assert_eq!(page_params(Some("limit=0")), Err(INVALID_LIMIT));
        assert_eq!(page_params(Some("before=x")), Err(INVALID_BEFORE));
        assert_eq!(
            page_params(Some("limit=99999999999999999999"))
                .unwrap()
                .limit,
            Some(usize::MAX)
        );
    }

    #[test]
    fn quantity_from_the_query() {
        assert_eq!(quantity_param(Some("a=1&quantity=3")).as_deref(), Some("3"));
        assert_eq!(quantity_param(None), None);
    }
}
