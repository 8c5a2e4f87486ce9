//! The HTTP API of the daemon (when `api` is configured), compatible with the backup API of
//! the anynines service dashboard.
//!
//! Routes are served at the root and under `/service-instances/{instance_id}` (backups) and
//! `/v1/instances/{instance_id}` (metrics); another instance id gets 404. Every route but
//! `GET /health` needs `Authorization: Bearer <token>`. Errors are JSON:
//! `{"error": "camelCaseWord", "description": "..."}`, or `{"msg": "..."}` for the 412s of
//! the dashboard API.

pub mod auth;
pub mod metrics;
pub mod request;
mod routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_server::Handle;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use service_backup_core::{Error, ErrorKind, Result};
use tokio::sync::Mutex as AsyncMutex;

use crate::config::{ApiConfig, Config};
use crate::daemon::Queue;
use crate::runner::RunContext;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The longest a request (other than a download) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a client may take to send the request headers, or the TLS handshake.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long open connections get to finish after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    /// The configuration in force (replaced on SIGHUP).
    pub config: Arc<RwLock<Config>>,
    /// The task database and the cancellation token of the daemon.
    pub ctx: RunContext,
    /// The backup queue the worker runs.
    pub queue: Arc<Queue>,
    /// The accepted bearer tokens.
    pub tokens: Arc<auth::Tokens>,
    /// The metrics samples.
    pub metrics: Arc<metrics::Ring>,
    /// One restore at a time.
    pub restoring: Arc<AsyncMutex<()>>,
    /// The instance id served.
    pub instance_id: String,
}

impl ApiState {
    /// A copy of the configuration in force.
    pub fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// An error response.
#[derive(Debug)]
pub enum ApiError {
    /// `{"error": word, "description": text}` with the status.
    Error(StatusCode, &'static str, String),
    /// 412 `{"msg": text}`.
    Precondition(String),
}

impl ApiError {
    /// A 500 for an error of ours, without details that could leak.
    pub fn internal(e: &Error) -> Self {
        tracing::error!(error = %e, "API request failed");
        let (status, word) = match e.kind() {
            ErrorKind::Destination | ErrorKind::NotFound => {
                (StatusCode::SERVICE_UNAVAILABLE, "destinationUnavailable")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internalError"),
        };
        Self::Error(status, word, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Error(status, word, description) => (
                status,
                Json(json!({"error": word, "description": description})),
            )
                .into_response(),
            Self::Precondition(msg) => {
                (StatusCode::PRECONDITION_FAILED, Json(json!({"msg": msg}))).into_response()
            }
        }
    }
}

/// A running API server.
pub struct Server {
    handle: Handle<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
    sampler: tokio::task::JoinHandle<()>,
    /// The accepted tokens, to reread on SIGHUP.
    pub tokens: Arc<auth::Tokens>,
}

impl Server {
    /// Stops accepting connections and lets open ones finish within [`SHUTDOWN_GRACE`].
    pub async fn shutdown(self) {
        self.handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
        self.sampler.abort();
        if tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), self.task)
            .await
            .is_err()
        {
            tracing::error!("The API server did not stop in time");
        }
    }
}

fn config_error(what: &str, path: &std::path::Path, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("api: cannot use {what} {}: {e}", path.display()),
    )
}

/// The TLS settings of `api.tls`, on the ring provider.
fn tls_config(cert: &PathBuf, key: &PathBuf) -> Result<rustls::ServerConfig> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<std::result::Result<Vec<_>, _>>)
        .map_err(|e| config_error("the certificate", cert, e))?;
    if certs.is_empty() {
        return Err(config_error(
            "the certificate",
            cert,
            "it holds no PEM certificate",
        ));
    }
    // The key's parse error is not shown: it could quote key material.
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|_| config_error("the private key", key, "it is not a PEM private key"))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key_der))
        .map_err(|e| config_error("the certificate and key", cert, e))
}

/// Starts the API on `api.listen` (TLS when `api.tls` is set), and the metrics sampler.
pub async fn start(api: &ApiConfig, state_parts: StateParts) -> Result<Server> {
    let tokens = Arc::new(
        auth::Tokens::load(&api.bearer_tokens_file)
            .map_err(|e| config_error("the bearer tokens file", &api.bearer_tokens_file, e))?,
    );
    let addr = tokio::net::lookup_host(&api.listen)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("api.listen {} is not an address to listen on", api.listen),
            )
        })?;
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("api: cannot listen on {}: {e}", api.listen),
        )
        .with_hint("check that no other process uses this port")
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::new(ErrorKind::Io, format!("api: {e}")))?;
    let local = listener.local_addr().ok();
    let ring = Arc::new(metrics::Ring::default());
    let state = ApiState {
        config: state_parts.config,
        ctx: state_parts.ctx,
        queue: state_parts.queue,
        tokens: tokens.clone(),
        metrics: ring.clone(),
        restoring: Arc::new(AsyncMutex::new(())),
        instance_id: state_parts.instance_id,
    };
    let sampler = tokio::spawn(routes::sample_forever(state.clone()));
    let app = routes::router(state);
    let handle: Handle<SocketAddr> = Handle::new();
    let tls = match &api.tls {
        Some(t) => Some(tls_config(&t.cert_file, &t.key_file)?),
        None => None,
    };
    let task = match tls {
        Some(cfg) => {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(cfg));
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls)
                .handshake_timeout(HEADER_TIMEOUT);
            let mut server = axum_server::from_tcp(listener)
                .map_err(|e| Error::new(ErrorKind::Io, format!("api: {e}")))?
                .acceptor(acceptor)
                .handle(handle.clone());
            server
                .http_builder()
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service()).await {
                    tracing::error!(error = %e, "The API server stopped");
                }
            })
        }
        None => {
            let mut server = axum_server::from_tcp(listener)
                .map_err(|e| Error::new(ErrorKind::Io, format!("api: {e}")))?
                .handle(handle.clone());
            server
                .http_builder()
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service()).await {
                    tracing::error!(error = %e, "The API server stopped");
                }
            })
        }
    };
    tracing::info!(
        listen = %local.map_or_else(|| api.listen.clone(), |a| a.to_string()),
        tls = api.tls.is_some(),
        "API listening"
    );
    Ok(Server {
        handle,
        task,
        sampler,
        tokens,
    })
}

/// What the daemon hands to the API.
pub struct StateParts {
    /// The configuration in force.
    pub config: Arc<RwLock<Config>>,
    /// The task database and the cancellation token.
    pub ctx: RunContext,
    /// The backup queue.
    pub queue: Arc<Queue>,
    /// The instance id served.
    pub instance_id: String,
}
