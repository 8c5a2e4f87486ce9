//! The API's accept loop: each connection is served by hyper's HTTP/1 server (after a TLS
//! handshake when `api.tls` is set), at most `api.max_connections` at once, and none may
//! stay idle for long.
//!
//! A connection is idle from its accept, and again from the end of each response, until a
//! complete request head has arrived; one idle for [`IDLE_TIMEOUT`] is closed. hyper's
//! own header timer starts only at the first byte, so without this a client that connects
//! and sends nothing (or finishes a TLS handshake and goes silent) would keep its socket,
//! and enough of them would take every file descriptor of the agent, backups included.
//! When every place is taken, the connection idle the longest is closed to make room for
//! the new one: a flood of silent connections cannot lock a real client out. A place is
//! given only once the socket that held it is closed, so the sockets of the API never
//! pass `max_connections` + 1.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use super::{HEADER_TIMEOUT, SHUTDOWN_GRACE};

/// How long a connection may stay without a request in progress: from its accept (TLS
/// handshake included) or from the end of its last response.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often at most the closing of connections to make room is logged.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// How long the loop waits after a failed accept (such as "too many open files"), so that
/// it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// An accepted socket, plain or (with `api.tls`) a TLS session over it.
type Connection = Either<TcpStream, TlsStream<TcpStream>>;

/// One open connection, as the accept loop sees it.
struct Conn {
    /// Requests in progress (their response bodies not yet sent).
    busy: AtomicUsize,
    /// When the connection last became idle: its accept or the end of a response.
    idle_since: Mutex<Instant>,
    /// Cancelled to close the connection at once.
    close: CancellationToken,
}

impl Conn {
    fn new() -> Self {
        Self {
            busy: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            close: CancellationToken::new(),
        }
    }

    fn idle_since(&self) -> Instant {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Since when the connection is idle, or `None` while a request is in progress.
    fn idle(&self) -> Option<Instant> {
        (self.busy.load(Ordering::SeqCst) == 0).then(|| self.idle_since())
    }
}

/// Marks a request in progress on its connection until dropped with the response body.
struct Busy(Arc<Conn>);

impl Busy {
    fn start(conn: &Arc<Conn>) -> Self {
        conn.busy.fetch_add(1, Ordering::SeqCst);
        Self(conn.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self
            .0
            .idle_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its connection marked busy until hyper has sent (and
/// dropped) it: a download being streamed is not idle.
struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The open connections, by number.
#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next: AtomicU64,
    /// Connections closed to make room, and newcomers that waited, since the last report.
    report: Mutex<Report>,
    /// Notified when a connection has ended.
    freed: Notify,
}

#[derive(Default)]
struct Report {
    /// When the last report was logged (`None`: never).
    logged: Option<Instant>,
    evicted: u64,
    waited: u64,
}

impl Registry {
    /// Returns once fewer than `max` connections are open. At the cap, the connection idle
    /// the longest is closed (unless one is closing already) and its end awaited: a place
    /// is taken only once the socket that held it is closed, so that the number of open
    /// sockets never passes `max` + 1 (the newcomer), whatever the rate of new ones. When
    /// every connection is in a request, the newcomer waits for one to end.
    async fn make_room(&self, max: usize) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so that an end between the two is not missed.
            freed.as_mut().enable();
            {
                let conns = self
                    .conns
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if conns.len() < max {
                    return;
                }
                if !conns.values().any(|c| c.close.is_cancelled()) {
                    let oldest = conns
                        .values()
                        .filter_map(|c| c.idle().map(|since| (since, c)))
                        .min_by_key(|(since, _)| *since);
                    let evicted = oldest.is_some();
                    if let Some((_, victim)) = oldest {
                        victim.close.cancel();
                    }
                    drop(conns);
                    self.note(evicted, max);
                }
            }
            freed.await;
        }
    }

    /// Registers a new connection.
    fn register(&self) -> (u64, Arc<Conn>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new());
        self.conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, conn.clone());
        (id, conn)
    }

    /// Forgets a connection whose socket is closed, and wakes a newcomer waiting for room.
    fn remove(&self, id: u64) {
        self.conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
        self.freed.notify_waiters();
    }

    /// Counts a connection closed to make room (or a newcomer waiting, every connection
    /// being in a request), logged at most every
    /// [`REPORT_EVERY`] so that a flood does not flood the log too.
    fn note(&self, evicted: bool, max: usize) {
        let mut r = self
            .report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if evicted {
            r.evicted += 1;
        } else {
            r.waited += 1;
        }
        if r.logged.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
            tracing::warn!(
                max_connections = max,
                closed_idle = r.evicted,
                waited_all_busy = r.waited,
                "The API has as many connections as api.max_connections: idle ones are closed to make room"
            );
            *r = Report {
                logged: Some(Instant::now()),
                ..Report::default()
            };
        }
    }
}

/// Accepts connections on `listener` until `shutdown` is cancelled, then gives the open
/// ones [`SHUTDOWN_GRACE`] to finish their requests.
pub async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let registry = Arc::new(Registry::default());
    let mut tasks = JoinSet::new();
    let mut accept_errors_logged: Option<Instant> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    tokio::select! {
                        () = registry.make_room(max_connections) => {}
                        () = shutdown.cancelled() => break,
                    }
                    let (id, conn) = registry.register();
                    let registry = registry.clone();
                    let (tls, router, shutdown) = (tls.clone(), router.clone(), shutdown.clone());
                    tasks.spawn(async move {
                        serve_one(stream, tls, router, conn, shutdown).await;
                        registry.remove(id);
                    });
                }
                Err(e) => {
                    if accept_errors_logged.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
                        tracing::error!(error = %e, "The API could not accept a connection");
                        accept_errors_logged = Some(Instant::now());
                    }
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        () = shutdown.cancelled() => break,
                    }
                }
            },
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = tasks.len(),
            "API connections still open after the grace period are closed"
        );
        tasks.shutdown().await;
    }
}

/// Serves one connection until it ends, is idle for [`IDLE_TIMEOUT`], or is closed to
/// make room.
async fn serve_one(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    router: Router,
    conn: Arc<Conn>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let work = async {
        // One path for both: a connection is the plain socket or its TLS session.
        let io = match tls {
            Some(acceptor) => match acceptor.accept(stream).await {
                Ok(stream) => Either::Right(stream),
                Err(e) => {
                    tracing::debug!(error = %e, "API TLS handshake failed");
                    return;
                }
            },
            None => Either::Left(stream),
        };
        http(io, router, &conn, &shutdown).await;
    };
    tokio::select! {
        () = work => {}
        () = idle_watch(&conn) => tracing::debug!("API connection closed: idle"),
        () = conn.close.cancelled() => tracing::debug!("API connection closed to make room"),
    }
}

/// Returns once the connection has been idle for [`IDLE_TIMEOUT`].
async fn idle_watch(conn: &Conn) {
    loop {
        let wait = match conn.idle() {
            Some(since) => match IDLE_TIMEOUT.checked_sub(since.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => return,
            },
            None => IDLE_TIMEOUT,
        };
        tokio::time::sleep(wait.max(Duration::from_millis(20))).await;
    }
}

/// HTTP/1 on `io` with the router, each response marking the connection busy until sent;
/// on shutdown, the request in progress is finished and the connection closed.
async fn http(io: Connection, router: Router, conn: &Arc<Conn>, shutdown: &CancellationToken) {
    let service = TowerToHyperService::new(router);
    let conn_for_service = conn.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let busy = Busy::start(&conn_for_service);
        let answer = hyper::service::Service::call(&service, req);
        async move {
            let response = answer.await?;
            Ok::<_, Infallible>(response.map(|inner| Tracked { inner, _busy: busy }))
        }
    });
    let mut builder = http1::Builder::new();
    // A client may shut its write side once its request is sent and still wait for the
    // answer; the idle limit above closes one that then never reads.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .half_close(true);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "API connection ended with an error");
            }
            return;
        }
        () = shutdown.cancelled() => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}
