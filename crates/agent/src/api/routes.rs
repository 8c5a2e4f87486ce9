//! The routes of the HTTP API and their handlers.

use std::collections::HashMap;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::{Value, json};
use service_backup_core::catalog::{self, Selector};
use service_backup_core::ops::restore::{Decryption, RestoreInto};
use service_backup_core::task::TaskState;
use service_backup_core::{Error, ErrorKind, blocking};
use tower_http::timeout::TimeoutLayer;

use super::{
    ApiError, ApiState, BODY_LIMIT, REQUEST_TIMEOUT, auth, metrics, request, session, web,
};
use crate::destinations;
use crate::jobs::restore::{self as restoring, RestorePlan};
use crate::lock;
use crate::progress::Bar;
use crate::queue::Enqueued;
use crate::tasks::store::{Task, TaskKind};

type ApiResult = Result<Response, ApiError>;

/// The routes: backups and metrics at the root and under the dashboard prefixes, with
/// authentication (of everything but `GET /health`, unknown paths and methods included),
/// the path and instance checks, a body limit and (but for downloads) a time limit. Each
/// run of slashes in a path is made one before routing, so that the instance check sees
/// the path the router sees.
pub fn router(state: ApiState) -> Router {
    let password_routes = || {
        put(password::set)
            .get(password::status)
            .delete(password::remove)
    };
    let timed = Router::new()
        .route("/backups", get(list).post(create))
        .route("/backups/restore", post(restore))
        .route("/backups/password", password_routes())
        .route("/backups/{id}", get(one))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            super::REQUEST_TIMEOUT,
        ));
    let backups = timed.route("/backups/{id}/download", get(download));
    let metrics = Router::new()
        .route("/metrics", get(metrics::handlers::metrics))
        .route(
            "/metrics/prometheus",
            get(metrics::handlers::prometheus_text),
        )
        .route(
            "/metrics/parachute",
            get(metrics::handlers::threshold)
                .put(metrics::handlers::set_threshold)
                .post(metrics::handlers::set_threshold),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ));
    // The public API V1's list of backups, beside its metrics.
    let v1 = metrics
        .clone()
        .route(
            "/backups",
            get(v1_list).layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                REQUEST_TIMEOUT,
            )),
        )
        .route(
            "/backups/password",
            password_routes().layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                REQUEST_TIMEOUT,
            )),
        );
    let routed = Router::new()
        .merge(backups.clone())
        .merge(metrics)
        .route("/openapi.yaml", get(openapi))
        .nest("/service-instances/{instance_id}", backups)
        .nest("/v1/instances/{instance_id}", v1)
        .route("/service-instances/{instance_id}", get(web::root))
        .route("/service-instances/{instance_id}/", get(web::root))
        // Before the guard, so that an unknown path or method without a valid token gets
        // 401 like any other request: the API does not tell strangers what it serves.
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .route("/health", get(health_status).fallback(method_not_allowed))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state);
    // A layer of the router runs after its routing: the collapse wraps it from outside.
    Router::new()
        .fallback_service(routed)
        .layer(middleware::from_fn(collapse_slashes))
}

/// Makes each run of slashes in the path one, the query kept.
async fn collapse_slashes(mut req: Request, next: Next) -> Response {
    if let std::borrow::Cow::Owned(path) = request::collapse_slashes(req.uri().path()) {
        let target = match req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let mut parts = req.uri().clone().into_parts();
        match target.parse() {
            Ok(pq) => parts.path_and_query = Some(pq),
            // A collapsed valid path is valid; kept as sent should that ever fail.
            Err(_) => return next.run(req).await,
        }
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    next.run(req).await
}

/// Checks the bearer token (or the dashboard session cookie), then the path (400 for its
/// tricks), then the instance id of a prefixed path (412 `{"msg"}` for another instance, as
/// the dashboard API answers).
async fn guard(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    // Without `Authorization`, the dashboard's session cookie may authenticate.
    let by_cookie = match web::cookie_session(&state, &mut req) {
        Ok(by_cookie) => by_cookie,
        Err(answer) => return *answer,
    };
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    // A session lasts only as long as the credential that opened it is still accepted
    // (a JWT not expired, a static token still in the file, the Cloud Controller's yes).
    let known = by_cookie
        .then(|| req.extensions().get::<session::Known>().cloned())
        .flatten();
    let checked = match &known {
        Some(k) => auth::check(&state.auth, Some(k.credential.as_bytes())).await,
        None => auth::check(&state.auth, header).await,
    };
    if let (Err(_), Some(k)) = (&checked, &known) {
        state.sessions.end(k);
    }
    if let Ok(until) = checked {
        req.extensions_mut().insert(session::CredentialUntil(until));
    }
    if let Err(refusal) = checked {
        tracing::info!(path = %req.uri().path(), reason = ?refusal, "API request refused");
        // A browser opening the dashboard gets the page, which asks for a token.
        if web::wants_page(&req) {
            return web::page();
        }
        return refusal.into_api_error().into_response();
    }
    if let Some(problem) = request::path_problem(req.uri().path()) {
        return ApiError::Error(StatusCode::BAD_REQUEST, "invalidPath", problem.to_string())
            .into_response();
    }
    if let Some(instance) = request::prefixed_instance(req.uri().path())
        && instance != state.instance_id
    {
        return ApiError::Precondition(format!("instance {instance} does not exist here"))
            .into_response();
    }
    next.run(req).await
}

/// The health status and the age of the last success; 503 when the status is ERROR, so
/// that load balancers and uptime checks see it.
async fn health_status(State(state): State<ApiState>) -> Response {
    let config = state.config();
    let health = crate::health::current(&config, &state.ctx, metrics::full_disks).await;
    let last = health.inputs.last_success;
    let body = json!({
        "status": health.status.level.as_str(),
        "description": health.status.public,
        "last_success": last.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        "last_success_age_seconds": last.map(|t| (health.inputs.now - t).num_seconds().max(0)),
    });
    let code = if health.status.level == crate::health::status::Level::Error {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, axum::Json(body)).into_response()
}

async fn not_found() -> ApiError {
    ApiError::Error(
        StatusCode::NOT_FOUND,
        "notFound",
        "there is no such route".to_string(),
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::Error(
        StatusCode::METHOD_NOT_ALLOWED,
        "methodNotAllowed",
        "this route does not accept that method".to_string(),
    )
}

/// A body read within the limit, or a JSON error.
fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::Error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payloadTooLarge",
                format!("the request body is larger than {BODY_LIMIT} bytes"),
            )
        } else {
            ApiError::Error(
                StatusCode::BAD_REQUEST,
                "invalidBody",
                "the request body could not be read".to_string(),
            )
        }
    })
}

fn internal(e: &Error) -> ApiError {
    ApiError::internal(e)
}

/// Records this instance's backups found in the catalog that no task made, so that they
/// get ids; returns when the catalog was last refreshed. The catalog is refreshed first
/// when it is older than [`catalog::API_MAX_AGE`], for [`catalog::API_BUDGET`] at most:
/// a request never waits for a listing of the stores beyond that.
async fn discover(state: &ApiState) -> Option<chrono::DateTime<chrono::Utc>> {
    let config = state.config();
    let tasks = state.ctx.tasks.clone();
    tasks.note_catalog_read();
    let found = |config: &crate::config::Config| {
        let tasks = tasks.clone();
        let config = config.clone();
        let instance = state.instance_id.clone();
        async move {
            crate::catalog::discover(&config, &tasks, &instance)
                .await
                .inspect_err(|e| tracing::warn!(error = %e, "API: the catalog could not be read"))
        }
    };
    let last = found(&config).await;
    let refreshed = crate::catalog::refresh_in_background(
        std::sync::Arc::new(config.clone()),
        tasks.clone(),
        state.instance_id.clone(),
        last.as_ref().ok().copied().flatten(),
        crate::catalog::API_MAX_AGE,
        crate::catalog::API_BUDGET,
    )
    .await;
    // Again only when a refresh may have changed the catalog.
    let last = if refreshed {
        found(&config).await
    } else {
        last
    };
    last.ok().flatten()
}

/// The header of the V1 list (an array) that says when the catalog was refreshed.
const CATALOG_REFRESHED_AT: &str = "x-catalog-refreshed-at";

fn task_json(t: &Task) -> Value {
    json!({
        "status": t.state.as_str(),
        "created_at": t.created_at.to_rfc3339(),
        "updated_at": t.updated_at.to_rfc3339(),
        "trigger": t.trigger,
        "backup_name": t.backup_name,
        "size_in_bytes": t.size_in_bytes,
        "stored_bytes": t.stored_bytes,
        "duration_in_seconds": t.duration_in_seconds,
        "reason": t.reason,
    })
}

/// How far a running restore got (`percent`, `bytes_done`, `bytes_total` of the stored
/// object); null for a restore that is not running or not yet reading.
fn restore_progress(state: &ApiState, t: &Task) -> Value {
    if t.state != TaskState::Running {
        return Value::Null;
    }
    state.ctx.tasks.progress(t.id).map_or(Value::Null, |done| {
        json!({
            "percent": done.percent(),
            "bytes_done": done.bytes,
            "bytes_total": done.total,
        })
    })
}

/// An item of the list's `backups`.
fn backup_json(t: &Task) -> Value {
    json!({"id": t.id, "backup_agent_task": task_json(t)})
}

/// The tasks of the page `page` asks for, newest first.
fn newest<'a>(tasks: &'a [Task], page: &'a request::Page) -> impl Iterator<Item = &'a Task> {
    tasks
        .iter()
        .rev()
        .filter(|t| page.admits(t.id, t.created_at))
        .take(page.limit.unwrap_or(usize::MAX))
}

/// The page a list's query asks for, every backup task (after recording the backups found
/// in the catalog), and when the catalog was last refreshed.
async fn listed_backups(
    state: &ApiState,
    query: Option<&str>,
) -> Result<(request::Page, Vec<Task>, Option<String>), ApiError> {
    let page = request::page_params(query)
        .map_err(|d| ApiError::Error(StatusCode::BAD_REQUEST, "invalidQuery", d.to_string()))?;
    let refreshed_at = discover(state).await.map(|t| t.to_rfc3339());
    let backups = state
        .ctx
        .tasks
        .list(TaskKind::Backup)
        .await
        .map_err(|e| internal(&e))?;
    Ok((page, backups, refreshed_at))
}

/// `GET /backups?limit=N&before=<id or time>`: the backups and restores, newest first; all
/// of them without `limit`, as the dashboard API lists them.
async fn list(State(state): State<ApiState>, RawQuery(query): RawQuery) -> ApiResult {
    let (page, backups, refreshed_at) = listed_backups(&state, query.as_deref()).await?;
    let restores = state
        .ctx
        .tasks
        .list(TaskKind::Restore)
        .await
        .map_err(|e| internal(&e))?;
    let backups: Vec<Value> = newest(&backups, &page).map(backup_json).collect();
    let restores: Vec<Value> = newest(&restores, &page)
        .map(|t| {
            json!({
                "id": t.id,
                "backup_id": t.backup_task_id,
                "backup_agent_tasks": [task_json(t)],
                "progress": restore_progress(&state, t),
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "instance_id": state.instance_id,
        "backups": backups,
        "restores": restores,
        "catalog_refreshed_at": refreshed_at,
    }))
    .into_response())
}

/// An item of the public API V1's list: the fields and meanings of its documentation.
fn v1_backup_json(t: &Task) -> Value {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339());
    json!({
        "id": t.id,
        "backup_id": t.backup_name,
        "size": t.stored_bytes,
        "status": t.state.as_str(),
        "triggered_at": t.created_at.to_rfc3339(),
        "started_at": time(t.started_at),
        "finished_at": time(t.finished_at),
        "downloadable": t.state == TaskState::Done && t.backup_name.is_some(),
    })
}

/// `GET /v1/instances/{id}/backups?limit=N&before=<id or time>`: the backups, newest first,
/// in the shape of the public API V1 (an array).
async fn v1_list(State(state): State<ApiState>, RawQuery(query): RawQuery) -> ApiResult {
    let (page, backups, refreshed_at) = listed_backups(&state, query.as_deref()).await?;
    let items: Vec<Value> = newest(&backups, &page).map(v1_backup_json).collect();
    let mut headers = HeaderMap::new();
    if let Some(v) = refreshed_at.and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert(CATALOG_REFRESHED_AT, v);
    }
    Ok((headers, axum::Json(items)).into_response())
}

/// `GET /backups/{id}`: one backup task, as an item of the list.
async fn one(
    State(state): State<ApiState>,
    Path(params): Path<HashMap<String, String>>,
) -> ApiResult {
    let raw_id = params.get("id").map_or("", String::as_str);
    let (_, task) = backup_task(&state, raw_id).await?;
    Ok(axum::Json(backup_json(&task)).into_response())
}

/// `GET /openapi.yaml`: the API's description, as built into the binary.
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/yaml")],
        include_str!("../../../../spec/openapi.yaml"),
    )
        .into_response()
}

/// `POST /backups`: queues a backup that the worker runs as a scheduled one; `Location`
/// names its task under the prefix the request used.
async fn create(
    State(state): State<ApiState>,
    Path(params): Path<HashMap<String, String>>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    body(raw)?;
    let exit_if_in_progress = state.config().exit_if_in_progress;
    let queue = state.queue.clone();
    let tasks = state.ctx.tasks.clone();
    let (outcome, id) = blocking(move || {
        queue.request_task(exit_if_in_progress, || {
            tasks.create_now(TaskKind::Backup, "api")
        })
    })
    .await
    .map_err(|e| internal(&e))?;
    let message = match outcome {
        Enqueued::Rejected => {
            return Err(ApiError::Error(
                StatusCode::CONFLICT,
                "backupInProgress",
                lock::IN_PROGRESS.to_string(),
            ));
        }
        Enqueued::Started => "backup started",
        Enqueued::Queued => "backup queued behind the one in progress",
        Enqueued::Coalesced => "a backup is already queued; this request is part of it",
    };
    // The guard let the request through, so a prefixed path named this instance.
    let prefix = if params.contains_key("instance_id") {
        format!("/service-instances/{}", state.instance_id)
    } else {
        String::new()
    };
    let mut headers = HeaderMap::new();
    if let Some(v) = id.and_then(|id| HeaderValue::from_str(&format!("{prefix}/backups/{id}")).ok())
    {
        headers.insert(header::LOCATION, v);
    }
    Ok((
        StatusCode::CREATED,
        headers,
        axum::Json(json!({"id": id, "message": message})),
    )
        .into_response())
}

/// The fields of a restore request, from a form or a JSON body.
fn restore_fields(headers: &HeaderMap, raw: &[u8]) -> Result<HashMap<String, String>, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
    request::restore_fields(content_type, raw)
        .map_err(|d| ApiError::Error(StatusCode::BAD_REQUEST, "invalidBody", d))
}

/// The backup task `raw_id` names, with its id; else the 412 of an unknown backup.
async fn backup_task(state: &ApiState, raw_id: &str) -> Result<(i64, Task), ApiError> {
    let unknown = || ApiError::Precondition(format!("there is no backup with id {raw_id}"));
    let id = request::backup_id(raw_id).ok_or_else(unknown)?;
    let task = state
        .ctx
        .tasks
        .get(id)
        .await
        .map_err(|e| internal(&e))?
        .filter(|t| t.kind == TaskKind::Backup)
        .ok_or_else(unknown)?;
    Ok((id, task))
}

/// The backup task `raw_id` names, if it is a complete backup; else the 412 message.
async fn complete_backup(state: &ApiState, raw_id: &str) -> Result<(i64, String), ApiError> {
    let (id, task) = backup_task(state, raw_id).await?;
    match (task.state, task.backup_name) {
        (TaskState::Done, Some(name)) => Ok((id, name)),
        (TaskState::Deleted, _) => Err(ApiError::Precondition(format!("backup {id} was deleted"))),
        (TaskState::Failed, _) => Err(ApiError::Precondition(format!(
            "backup {id} failed and cannot be used"
        ))),
        (state, _) => Err(ApiError::Precondition(format!(
            "backup {id} is {state}, not complete"
        ))),
    }
}

/// `POST /backups/restore`: restores a backup into `restore.target_folder` as a task.
async fn restore(
    State(state): State<ApiState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let raw = body(raw)?;
    let fields = restore_fields(&headers, &raw)?;
    let backup_id =
        request::restore_backup_id(&fields, &state.instance_id).map_err(ApiError::Precondition)?;
    let (backup_id, name) = complete_backup(&state, backup_id).await?;
    state.ctx.tasks.note_catalog_read();
    let config = state.config();
    crate::command::refuse_write_only(config.keyring.as_ref()).map_err(|e| {
        ApiError::Precondition(format!("{}; {}", e.message(), e.hint().unwrap_or_default()))
    })?;
    let Some(target) = restoring::default_target(&config) else {
        return Err(ApiError::Precondition(
            "no restore.target_folder or source_folder is configured".to_string(),
        ));
    };
    restoring::check_target(&config, &target).map_err(|e| {
        ApiError::Precondition(match e.hint() {
            Some(hint) => format!("{}; {hint}", e.message()),
            None => e.message().to_string(),
        })
    })?;
    let restore_id = state
        .ctx
        .tasks
        .create_restore(
            "api",
            Some(backup_id),
            name.clone(),
            target.display().to_string(),
        )
        .await
        .map_err(|e| internal(&e))?;
    let plan = RestorePlan {
        selector: Selector::Named(name),
        destination: None,
        decryption: Decryption::new(config.keyring.clone()),
        into: RestoreInto::Dir {
            path: target,
            replace: true,
        },
        from_instance: None,
        include: Vec::new(),
    };
    tokio::spawn(async move {
        // One restore at a time; one stopped while it waits says so in its task.
        let _one = tokio::select! {
            one = state.restoring.lock() => one,
            () = state.ctx.cancel.cancelled() => {
                let _ = state.ctx.tasks.fail(restore_id, None, "terminated".into(), 0.0).await;
                return;
            }
        };
        // The outcome is recorded in the task and logged.
        let _ = restoring::run_task(&config, &state.ctx, restore_id, &plan, Bar::hidden()).await;
    });
    Ok(axum::Json(json!({"restore_id": restore_id})).into_response())
}

/// `GET /backups/{id}/download`: the stored archive, streamed as stored.
async fn download(
    State(state): State<ApiState>,
    Path(params): Path<HashMap<String, String>>,
) -> ApiResult {
    let raw_id = params.get("id").map_or("", String::as_str);
    let (_, name) = complete_backup(&state, raw_id).await?;
    state.ctx.tasks.note_catalog_read();
    let config = state.config();
    let mut failures = Vec::new();
    // The catalog's copies, each checked against its manifest in the store; without any,
    // the destinations are listed as before the catalog knew them.
    let cached = crate::catalog::find(&config, &state.ctx.tasks, &name)
        .await
        .unwrap_or_default();
    let mut copies = if cached.is_empty() {
        destinations::find_backup(&config, None, &name).map_err(|e| internal(&e))?
    } else {
        futures::stream::iter(cached.into_iter().map(Ok)).boxed()
    };
    while let Some(copy) = copies.next().await {
        let attempt = async {
            let (d, entry) = copy?;
            let entry = crate::catalog::current(&d, &entry).await?;
            let mut object = d.destination.get(&entry.archive_key).await?;
            // The header is read before answering, so a store that fails at once gives an
            // error status, not a truncated 200, and an archive bound to another backup
            // than its manifest names (swapped in) is refused as a restore refuses it.
            let head = catalog::read_head(&mut object.chunks).await?;
            let bytes: Vec<u8> = head.iter().flat_map(|c| c.iter().copied()).collect();
            if let Err(e) = catalog::judge(&bytes, config.keyring.as_ref(), &entry)
                && e.kind() == ErrorKind::Corrupt
            {
                return Err(e);
            }
            Ok::<_, Error>((entry, object, head, d.name))
        };
        match attempt.await {
            Ok((entry, object, head, dest_name)) => {
                let file = entry
                    .archive_key
                    .rsplit('/')
                    .next()
                    .unwrap_or(&entry.archive_key)
                    .to_string();
                let size = object.size.unwrap_or(entry.manifest.stored_bytes);
                tracing::info!(backup_name = %name, destination_name = %dest_name, "API download started");
                let rest = object
                    .chunks
                    .inspect_err(|e| tracing::error!(error = %e, "API download failed mid-way; the connection is closed"))
                    .map_err(std::io::Error::other);
                let stream = futures::stream::iter(head.into_iter().map(Ok)).chain(rest);
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
                if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
                    headers.insert(header::CONTENT_DISPOSITION, v);
                }
                return Ok((headers, Body::from_stream(stream)).into_response());
            }
            Err(e) => {
                tracing::warn!(error = %e, backup_name = %name, "API download: a destination failed");
                failures.push(e.to_string());
            }
        }
    }
    if failures.is_empty() {
        Err(ApiError::Precondition(format!(
            "backup {name} is in no destination"
        )))
    } else {
        // The failures name hosts, endpoints and paths: the log has them, not the answer.
        let reference = super::reference();
        tracing::error!(reference = %reference, backup_name = %name, errors = %failures.join("; "), "API download: no destination could serve the backup");
        Err(ApiError::unavailable(&reference))
    }
}

mod password;
#[cfg(test)]
mod tests;
