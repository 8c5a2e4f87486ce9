//! The metrics routes: the Graphite lines (or the Prometheus text for `Accept: text/plain`),
//! the Prometheus text, and the parachute threshold read and set at run time.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use service_backup_core::{Error, ErrorKind};

use super::parachute::parse_threshold;
use super::{parse_quantity, prometheus};
use crate::api::{ApiError, ApiState, request};

type ApiResult = Result<Response, ApiError>;

/// The body field that names the threshold.
pub const THRESHOLD_FIELD: &str = "max_disk_threshold";

/// Whether `Accept` asks for text before (or without) JSON.
fn wants_text(headers: &HeaderMap) -> bool {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_lowercase();
    let position = |kind: &str| {
        accept
            .split(',')
            .position(|item| item.split(';').next().is_some_and(|t| t.trim() == kind))
    };
    match (position("text/plain"), position("application/json")) {
        (Some(text), Some(json)) => text < json,
        (Some(_), None) => true,
        _ => false,
    }
}

fn exposition(state: &ApiState) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(prometheus::CONTENT_TYPE),
        )],
        prometheus::render(state.metrics.newest().as_ref()),
    )
        .into_response()
}

/// `GET /metrics?quantity=N`: the lines of the N latest samples, or with `Accept:
/// text/plain` the latest sample in the Prometheus text format.
pub async fn metrics(
    State(state): State<ApiState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult {
    let raw = request::quantity_param(query.as_deref());
    let quantity = parse_quantity(raw.as_deref())
        .map_err(|d| ApiError::Error(StatusCode::BAD_REQUEST, "invalidQuantity", d.to_string()))?;
    if wants_text(&headers) {
        return Ok(exposition(&state));
    }
    Ok(axum::Json(state.metrics.latest(quantity)).into_response())
}

/// `GET /metrics/prometheus`: the latest sample in the Prometheus text format.
pub async fn prometheus_text(State(state): State<ApiState>) -> Response {
    exposition(&state)
}

fn threshold_json(state: &ApiState) -> Response {
    axum::Json(json!({
        THRESHOLD_FIELD: state.parachute.threshold(),
        "set_through_api": state.parachute.is_set(),
    }))
    .into_response()
}

/// `GET /metrics/parachute`: the threshold in force.
pub async fn threshold(State(state): State<ApiState>) -> Response {
    threshold_json(&state)
}

/// `PUT` or `POST /metrics/parachute` with `max_disk_threshold` (JSON or form): sets the
/// threshold, kept across restarts.
pub async fn set_threshold(
    State(state): State<ApiState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let invalid = || {
        ApiError::Error(
            StatusCode::BAD_REQUEST,
            "invalidThreshold",
            format!("{THRESHOLD_FIELD} must be a whole number from 0 (off) to 100"),
        )
    };
    let raw = raw.map_err(|_| invalid())?;
    let content_type = headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
    if !body_is_plain(content_type, &raw) {
        return Err(invalid());
    }
    let fields = request::restore_fields(content_type, &raw).map_err(|_| invalid())?;
    let threshold = fields
        .get(THRESHOLD_FIELD)
        .and_then(|t| parse_threshold(t))
        .ok_or_else(invalid)?;
    let parachute = state.parachute.clone();
    service_backup_core::blocking(move || {
        parachute.set(threshold).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot keep the parachute threshold: {e}"),
            )
        })
    })
    .await
    .map_err(|e| ApiError::internal(&e))?;
    tracing::info!(
        max_disk_threshold = threshold,
        "The parachute threshold was set through the API"
    );
    Ok(threshold_json(&state))
}

/// Whether a threshold body is free of what two readers could read apart: a charset
/// other than UTF-8, a key given twice (in JSON or a form).
fn body_is_plain(content_type: Option<&[u8]>, raw: &[u8]) -> bool {
    let Ok(content_type) = std::str::from_utf8(content_type.unwrap_or_default()) else {
        return false;
    };
    let utf8 = content_type
        .split(';')
        .skip(1)
        .all(|param| match param.split_once('=') {
            Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
                value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            _ => true,
        });
    if !utf8 {
        return false;
    }
    if request::is_json(Some(content_type.as_bytes())) {
        // A non-object or unreadable body is left to the reader's own message.
        serde_json::from_slice::<UniqueKeys>(raw)
            .map_or_else(|e| !e.to_string().starts_with(DUPLICATE), |_| true)
    } else {
        let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(raw) else {
            return true;
        };
        let mut seen = std::collections::HashSet::new();
        pairs.iter().all(|(k, _)| seen.insert(k.as_str()))
    }
}

const DUPLICATE: &str = "duplicate key";

/// A JSON object whose keys are each given once.
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                    if !seen.insert(key) {
                        return Err(serde::de::Error::custom(DUPLICATE));
                    }
                }
                Ok(UniqueKeys)
            }
        }
        d.deserialize_map(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_bodies_with_a_key_twice_or_another_charset_are_not_plain() {
        let json = Some(&b"application/json"[..]);
        let form = Some(&b"application/x-www-form-urlencoded"[..]);
        assert!(body_is_plain(json, br#"{"max_disk_threshold": 5}"#));
        assert!(body_is_plain(form, b"max_disk_threshold=5"));
        assert!(body_is_plain(
            Some(b"application/json; charset=\"UTF-8\""),
            br#"{"max_disk_threshold": 5}"#
        ));
        assert!(!body_is_plain(
            json,
            br#"{"max_disk_threshold": 5, "max_disk_threshold": 90}"#
        ));
        assert!(!body_is_plain(
            form,
            b"max_disk_threshold=5&max_disk_threshold=90"
        ));
        assert!(!body_is_plain(
            Some(b"application/json; charset=utf-16"),
            br#"{"max_disk_threshold": 5}"#
        ));
        assert!(!body_is_plain(
            Some(b"application/x-www-form-urlencoded; charset=latin1"),
            b"max_disk_threshold=5"
        ));
    }

    #[test]
    fn text_is_chosen_by_accept() {
        let with = |accept: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
            wants_text(&h)
        };
        assert!(with("text/plain"));
        assert!(with("text/plain;version=0.0.4;q=0.3,*/*;q=0.1"));
        assert!(with("Text/Plain, application/json"));
        assert!(!with("application/json, text/plain"));
        assert!(!with("*/*"));
        assert!(!with("text/html"));
        assert!(!wants_text(&HeaderMap::new()));
    }
}
