//! The HTTP API of the daemon (when `api` is configured), compatible with the backup API of
//! the anynines service dashboard.
//!
//! Routes are served at the root and under `/service-instances/{instance_id}` (backups) and
//! `/v1/instances/{instance_id}` (metrics); another instance id gets 412. Every route but
//! `GET /health` needs `Authorization: Bearer <token>` or the cookie of a dashboard session
//! (opened at the dashboard root, which also serves the web page: see `web` and
//! [`session`]). Errors are JSON:
//! `{"error": "camelCaseWord", "description": "..."}`, or `{"msg": "..."}` for the 412s of
//! the dashboard API.

pub mod auth;
pub mod metrics;
pub mod request;
mod routes;
mod serve;
pub mod session;
mod web;

pub use routes::router;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use service_backup_core::{Error, ErrorKind, Result};
use tokio::sync::Mutex as AsyncMutex;
use tokio_util::sync::CancellationToken;

use crate::config::{ApiConfig, Config};
use crate::context::RunContext;
use crate::queue::Queue;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The longest a request (other than a download) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a client may take to send the request headers once it started them (see
/// [`serve::IDLE_TIMEOUT`] for the time from the accept, TLS handshake included).
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
    /// What decides whether a request's token is accepted.
    pub auth: Arc<auth::Auth>,
    /// The metrics samples.
    pub metrics: Arc<metrics::Ring>,
    /// The parachute's threshold and the disks past it.
    pub parachute: Arc<metrics::Parachute>,
    /// One restore at a time.
    pub restoring: Arc<AsyncMutex<()>>,
    /// The instance id served.
    pub instance_id: String,
    /// The dashboard sessions (cookies).
    pub sessions: Arc<session::Sessions>,
}

impl ApiState {
    /// A state for `config` (whose `api` section names the tokens file) with its own task
    /// database in `state_dir`, an idle queue and no daemon behind it, serving
    /// `instance_id`: what tests and fuzz targets hand to [`router`].
    pub async fn standalone(config: Config, instance_id: &str) -> Result<Self> {
        let api = config
            .api
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Config, "api is not configured"))?;
        let auth = auth::Auth::load(api, instance_id)
            .map_err(|e| Error::new(ErrorKind::Config, format!("api: {e}")))?;
        let ctx = RunContext::open(&config).await?;
        let parachute = Arc::new(metrics::Parachute::load(
            Some(&ctx.state_dir),
            metrics::configured_threshold(&config),
        ));
        Ok(Self {
            ctx,
            config: Arc::new(RwLock::new(config)),
            queue: Arc::default(),
            auth: Arc::new(auth),
            metrics: Arc::default(),
            parachute,
            restoring: Arc::default(),
            instance_id: instance_id.to_string(),
            sessions: Arc::default(),
        })
    }

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
    /// A 503 (a destination failed) or 500 (anything else) for an error of ours: the body
    /// says what happened in public words and gives a reference; the detail (paths, hosts,
    /// endpoints) goes only to the log, under that reference.
    pub fn internal(e: &Error) -> Self {
        let reference = reference();
        tracing::error!(reference = %reference, error = %e, "API request failed");
        match e.kind() {
            ErrorKind::Destination | ErrorKind::NotFound => Self::unavailable(&reference),
            _ => Self::Error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internalError",
                format!(
                    "the agent could not complete the request; its log has the details under \
                     reference {reference}"
                ),
            ),
        }
    }

    /// A 503 for destinations that could not be used, whose details were logged under
    /// `reference`.
    pub fn unavailable(reference: &str) -> Self {
        Self::Error(
            StatusCode::SERVICE_UNAVAILABLE,
            "destinationUnavailable",
            format!(
                "a backup destination could not be reached or used; try again later, and see \
                 the agent's log under reference {reference}"
            ),
        )
    }
}

/// A short random word that ties an error answer to its log line.
pub fn reference() -> String {
    let mut bytes = [0u8; 6];
    if getrandom::fill(&mut bytes).is_err() {
        // Only the tie to the log is lost: the time is unique enough.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        bytes[..4].copy_from_slice(&nanos.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    sampler: tokio::task::JoinHandle<()>,
    /// The accepted tokens, to reread on SIGHUP.
    pub auth: Arc<auth::Auth>,
}

impl Server {
    /// Stops accepting connections and lets open ones finish within [`SHUTDOWN_GRACE`].
    pub async fn shutdown(self) {
        self.shutdown.cancel();
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
fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig> {
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
    // Read as a secret file (its mode checked, its text wiped after use); the key's parse
    // error is not shown: it could quote key material.
    let pem = crate::config::file_mode::read_secret_file("api.tls.key_file", key)
        .map_err(|e| Error::new(ErrorKind::Config, format!("api: {e}")))?;
    let key_der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| config_error("the private key", key, "it is not a PEM private key"))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key_der))
        .map_err(|e| config_error("the certificate and key", cert, e))
}

/// Starts the API on `api.listen` (TLS when `api.tls` is set), and the metrics sampler.
pub async fn start(api: &ApiConfig, state_parts: StateParts) -> Result<Server> {
    let auth = Arc::new(
        auth::Auth::load(api, &state_parts.instance_id)
            .map_err(|e| Error::new(ErrorKind::Config, format!("api: {e}")))?,
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
    let parachute = Arc::new(metrics::Parachute::load(
        Some(&state_parts.ctx.state_dir),
        api.metrics.parachute_threshold,
    ));
    let state = ApiState {
        config: state_parts.config,
        ctx: state_parts.ctx,
        queue: state_parts.queue,
        auth: auth.clone(),
        metrics: ring.clone(),
        parachute,
        restoring: Arc::new(AsyncMutex::new(())),
        instance_id: state_parts.instance_id,
        sessions: Arc::default(),
    };
    let tls = match &api.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(
            &t.cert_file,
            &t.key_file,
        )?))),
        None => None,
    };
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| Error::new(ErrorKind::Io, format!("api: {e}")))?;
    let max_connections = connection_cap(api.max_connections);
    let sampler = tokio::spawn(metrics::sample_forever(state.clone()));
    let app = routes::router(state);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve::accept_loop(
        listener,
        tls,
        app,
        max_connections,
        shutdown.clone(),
    ));
    if let Some(warning) = api.plaintext_warning() {
        tracing::error!("{warning}");
    }
    tracing::info!(
        listen = %local.map_or_else(|| api.listen.clone(), |a| a.to_string()),
        tls = api.tls.is_some(),
        max_connections,
        "API listening"
    );
    Ok(Server {
        shutdown,
        task,
        sampler,
        auth,
    })
}

/// `api.max_connections`, lowered to half the open-file limit so that the API's sockets
/// always leave descriptors for backups (files, the task database, uploads).
fn connection_cap(configured: usize) -> usize {
    let Ok((soft, _)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    else {
        return configured;
    };
    let half = usize::try_from(soft / 2).unwrap_or(usize::MAX).max(1);
    if configured > half {
        tracing::warn!(
            max_connections = configured,
            lowered_to = half,
            open_file_limit = soft,
            "api.max_connections is lowered to half the open-file limit, to keep descriptors for backups; raise the limit (LimitNOFILE, ulimit -n) to allow more"
        );
        return half;
    }
    configured
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
