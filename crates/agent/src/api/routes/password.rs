//! `GET`, `PUT` and `DELETE /backups/password`: the backup password with which application
//! developers open the backups they download. The agent keeps only its public half
//! (`crate::password`); the password is never logged, stored or echoed.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse as _;
use serde_json::{Value, json};
use service_backup_core::format::Keyring;
use service_backup_core::secret::Secret;

use super::{ApiResult, body, internal};
use crate::api::{ApiError, ApiState, request};
use crate::password::{self, BackupPassword};

/// What every answer says a change applies to.
const APPLIES_TO: &str = "backups made from now on";

fn answer(set: Option<&BackupPassword>, message: &str) -> Value {
    json!({
        "set": set.is_some(),
        "set_at": set.map(|p| p.set_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        "applies_to": APPLIES_TO,
        "message": message,
    })
}

/// `GET /backups/password`: whether a backup password is set, and since when.
pub(super) async fn status(State(state): State<ApiState>) -> ApiResult {
    let set = password::load(&state.ctx.state_dir).map_err(|e| internal(&e))?;
    let message = if set.is_some() {
        "backups made since the password was set open with it, as well as with the operator's key"
    } else {
        "no backup password is set: downloads open with the operator's key only"
    };
    Ok(axum::Json(answer(set.as_ref(), message)).into_response())
}

/// `PUT /backups/password` with `{"password": "..."}` (or a form): sets the password that
/// new backups can be opened with.
pub(super) async fn set(
    State(state): State<ApiState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let raw = body(raw)?;
    let content_type = headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
    let text = request::password_field(content_type, &raw)
        .map_err(|d| ApiError::Error(StatusCode::BAD_REQUEST, "invalidBody", d))?;
    let secret = Secret::new(text);
    if let Some(problem) = password::problem(secret.expose()) {
        return Err(ApiError::Error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalidPassword",
            problem,
        ));
    }
    let config = state.config();
    if !config.keyring.as_ref().is_some_and(Keyring::can_encrypt) {
        return Err(ApiError::Error(
            StatusCode::CONFLICT,
            "notEncrypted",
            "the backups of this instance are not encrypted (the operator configured no encryption key): a password cannot protect them".to_string(),
        ));
    }
    let set = password::set(&state.ctx.state_dir, secret)
        .await
        .map_err(|e| internal(&e))?;
    tracing::info!(password_id = %set.recipient.id(), "Backup password set through the API; backups made from now on carry its stanza");
    Ok(axum::Json(answer(
        Some(&set),
        "backups made from now on open with this password, as well as with the operator's key; backups made before keep the password they were made with, or none",
    ))
    .into_response())
}

/// `DELETE /backups/password`: new backups stop carrying a password stanza.
pub(super) async fn remove(State(state): State<ApiState>) -> ApiResult {
    let removed = password::remove(&state.ctx.state_dir).map_err(|e| internal(&e))?;
    if removed {
        tracing::info!(
            "Backup password removed through the API; backups made from now on carry no password stanza"
        );
    }
    let message = if removed {
        "backups made from now on carry no password stanza; backups made before still open with the password they were made with"
    } else {
        "no backup password was set"
    };
    Ok(axum::Json(answer(None, message)).into_response())
}
