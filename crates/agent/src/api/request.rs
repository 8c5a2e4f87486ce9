//! What the API decides from a request's untrusted bytes, before any state is touched: the
//! instance id of a prefixed path, a backup id, the fields of a restore body, the restore
//! request's instance and backup, and the metrics quantity.
//!
//! It depends on nothing of the agent but the standard library, `serde_json` and
//! `serde_urlencoded`, so that the `api` fuzz target compiles it as it is.

use std::collections::HashMap;
use std::hash::BuildHasher;

use serde_json::Value;

/// The path prefixes that name an instance: backups, then metrics.
pub const INSTANCE_PREFIXES: [&str; 2] = ["/service-instances/", "/v1/instances/"];

/// The description of a `quantity` that is not a whole number of at least 1.
pub const INVALID_QUANTITY: &str = "quantity must be a whole number of at least 1";

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
    fn quantity_from_the_query() {
        assert_eq!(quantity_param(Some("a=1&quantity=3")).as_deref(), Some("3"));
        assert_eq!(quantity_param(None), None);
    }
}
