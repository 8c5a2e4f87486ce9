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

#[cfg(test)]
mod tests {
    use super::*;

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
