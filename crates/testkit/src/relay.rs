//! A fault-injecting TCP relay on loopback, for the network fault tests: it forwards to an
//! upstream server and can cut connections after a number of bytes sent upstream, reset
//! the connection whose answer passes a given byte, answer matching HTTP requests itself,
//! corrupt the bodies of matching HTTP responses, and cut everything like a lost network.
//! It counts the bytes each way, so that a test can wait for "N bytes went up" instead of
//! sleeping.
//!
//! HTTP awareness is limited to what the SDKs send: requests framed by `Content-Length`
//! (a request with `Transfer-Encoding: chunked` switches that connection to plain copying,
//! where only cuts apply), no pipelining. A raw relay ([`Relay::raw`]) copies bytes as they
//! come, for SSH or wherever requests must pass untouched.

mod http;
#[cfg(test)]
mod tests;

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use http::{Corrupting, requests};

/// Which requests a rule applies to: a test on the request line (`GET /b/k HTTP/1.1`).
pub type Matcher = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A matcher for request lines of `method` whose target contains `part`.
pub fn request(method: &str, part: &str) -> Matcher {
    let (method, part) = (format!("{method} "), part.to_string());
    Arc::new(move |line: &str| line.starts_with(&method) && line.contains(&part))
}

/// What the relay does to the traffic; the default forwards everything untouched.
#[derive(Clone, Default)]
pub struct Faults {
    /// Cut a connection once it has sent this many bytes upstream...
    pub cut_after: Option<u64>,
    /// ...on this many connections (the first ones to reach the limit), or on all of them.
    pub cut_times: Option<usize>,
    /// Answer matching requests with this status and body instead of forwarding them.
    pub answer: Option<(Matcher, u16, String)>,
    /// Flip one byte in the middle of the body of the responses to matching requests.
    pub corrupt: Option<Matcher>,
    /// Reset (once) the connection whose answer would pass this byte of all the answers
    /// relayed so far, counted from the relay's start; that piece is not passed on.
    pub reset_answers_at: Option<u64>,
    /// Hold every answer that would pass this byte of all the answers relayed so far
    /// (counted from the relay's start) until the faults change: a store that stops
    /// sending in the middle of a download.
    pub pause_answers_at: Option<u64>,
}

/// What the relay did so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Bytes forwarded to the upstream server.
    pub up: u64,
    /// Bytes forwarded back to clients.
    pub down: u64,
    /// Connections cut.
    pub cuts: usize,
    /// Requests answered by the relay itself.
    pub answered: usize,
    /// Response bodies corrupted.
    pub corrupted: usize,
    /// Connections accepted.
    pub connections: usize,
    /// Connections reset by [`Faults::reset_answers_at`].
    pub resets: usize,
}

struct Shared {
    upstream: u16,
    faults: Mutex<Faults>,
    counts: Mutex<Counts>,
    changed: Condvar,
    open: Mutex<Vec<TcpStream>>,
    stopped: AtomicBool,
    /// Not HTTP (SSH): bytes are copied as they come; only cuts apply.
    raw: bool,
    /// The head (request line and headers) of every HTTP request seen, in order.
    heads: Mutex<Vec<String>>,
}

impl Shared {
    fn count(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.counts.lock().unwrap());
        self.changed.notify_all();
    }

    /// Whether a connection that is about to pass `limit` is cut (taking one from the
    /// budget), given the faults now in force.
    fn take_cut(&self) -> Option<u64> {
        let faults = self.faults.lock().unwrap();
        let limit = faults.cut_after?;
        let mut counts = self.counts.lock().unwrap();
        if faults.cut_times.is_some_and(|n| counts.cuts >= n) {
            return None;
        }
        counts.cuts += 1;
        drop(counts);
        self.changed.notify_all();
        Some(limit)
    }

    /// Whether `n` more bytes of answers pass the reset point, in which case the reset is
    /// taken (once: the fault is then spent).
    fn take_reset(&self, n: usize) -> bool {
        let mut faults = self.faults.lock().unwrap();
        let Some(at) = faults.reset_answers_at else {
            return false;
        };
        let mut counts = self.counts.lock().unwrap();
        if counts.down + n as u64 <= at {
            return false;
        }
        faults.reset_answers_at = None;
        counts.resets += 1;
        drop(counts);
        self.changed.notify_all();
        true
    }
}

impl Shared {
    /// Waits while passing `n` more bytes down would pass [`Faults::pause_answers_at`].
    fn hold(&self, n: usize) {
        loop {
            let at = self.faults.lock().unwrap().pause_answers_at;
            let Some(at) = at else { return };
            let counts = self.counts.lock().unwrap();
            if counts.down + n as u64 <= at || self.stopped.load(Ordering::SeqCst) {
                return;
            }
            let _ = self
                .changed
                .wait_timeout(counts, std::time::Duration::from_millis(50))
                .unwrap();
        }
    }
}

/// A relay on `127.0.0.1:port`, cut (with every connection through it) when dropped.
pub struct Relay {
    /// The port it listens on.
    pub port: u16,
    shared: Arc<Shared>,
}

impl Relay {
    /// A relay for HTTP to `127.0.0.1:upstream`, forwarding untouched until told otherwise.
    pub fn start(upstream: u16) -> Self {
        Self::spawn(upstream, false)
    }

    /// A relay that copies bytes as they come (SSH, or HTTP left untouched): it counts
    /// them, cuts and resets, but answers and corrupts nothing.
    pub fn raw(upstream: u16) -> Self {
        Self::spawn(upstream, true)
    }

    fn spawn(upstream: u16, raw: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::new(Faults::default()),
            counts: Mutex::new(Counts::default()),
            changed: Condvar::new(),
            open: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            raw,
            heads: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(&s, client));
            }
        });
        Self { port, shared }
    }

    /// `http://127.0.0.1:PORT`, followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Replaces the faults in force; connections already open follow the new ones.
    pub fn set(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap() = faults;
    }

    /// Forwards everything untouched from now on.
    pub fn heal(&self) {
        self.set(Faults::default());
    }

    /// What it did so far.
    pub fn counts(&self) -> Counts {
        *self.shared.counts.lock().unwrap()
    }

    /// The head (request line and headers) of every HTTP request seen so far, in order:
    /// for tests of what a client sends (signatures, tokens), not only of what it gets.
    pub fn request_heads(&self) -> Vec<String> {
        self.shared.heads.lock().unwrap().clone()
    }

    /// Waits until `done(counts)` holds; fails the test after `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&Counts) -> bool) {
        let deadline = Instant::now() + limit;
        let mut counts = self.shared.counts.lock().unwrap();
        while !done(&counts) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "relay: waited {limit:?} for {what}: {counts:?}"
            );
            counts = self.shared.changed.wait_timeout(counts, left).unwrap().0;
        }
    }

    /// Closes every open connection through it (as a server that went away would).
    pub fn drop_connections(&self) {
        for c in self.shared.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Cuts every connection and refuses new ones, as a lost network.
    pub fn cut(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag and closes the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        self.drop_connections();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Serves one client connection: requests upstream in this thread, responses in another.
fn serve(shared: &Arc<Shared>, client: TcpStream) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", shared.upstream)) else {
        // Like the server itself: nobody there.
        return;
    };
    shared.count(|c| c.connections += 1);
    {
        let mut open = shared.open.lock().unwrap();
        open.push(client.try_clone().unwrap());
        open.push(server.try_clone().unwrap());
    }
    let corrupt_next = Arc::new(AtomicBool::new(false));
    let down = {
        let (shared, flag) = (shared.clone(), corrupt_next.clone());
        let (from, to) = (server.try_clone().unwrap(), client.try_clone().unwrap());
        std::thread::spawn(move || responses(&shared, from, to, &flag))
    };
    let mut up = Upstream {
        shared: shared.clone(),
        client: client.try_clone().unwrap(),
        server: server.try_clone().unwrap(),
        sent: 0,
        exempt: false,
        cut: false,
    };
    if shared.raw {
        copy_raw(&mut up, client);
    } else {
        requests(&mut up, BufReader::new(client), &corrupt_next);
    }
    if up.cut {
        // Closing with the client's bytes still unread makes the kernel send a reset.
        let _ = up.server.shutdown(Shutdown::Both);
        let _ = up.client.shutdown(Shutdown::Both);
    } else {
        let _ = up.server.shutdown(Shutdown::Write);
    }
    let _ = down.join();
}

/// The request direction of one connection, with its byte count and cut.
struct Upstream {
    shared: Arc<Shared>,
    client: TcpStream,
    server: TcpStream,
    sent: u64,
    /// Passed the cut limit while the budget of cuts was spent: never cut.
    exempt: bool,
    cut: bool,
}

impl Upstream {
    /// Sends `bytes` upstream, or as much as the cut limit lets through; false once cut.
    fn send(&mut self, bytes: &[u8]) -> bool {
        let mut len = bytes.len() as u64;
        let limit = self.shared.faults.lock().unwrap().cut_after;
        if let Some(limit) = limit
            && !self.exempt
            && self.sent + len > limit
        {
            if self.shared.take_cut().is_some() {
                len = limit.saturating_sub(self.sent);
                self.cut = true;
            } else {
                self.exempt = true;
            }
        }
        let part = &bytes[..usize::try_from(len).unwrap()];
        if self.server.write_all(part).is_err() {
            return false;
        }
        self.sent += len;
        self.shared.count(|c| c.up += len);
        !self.cut
    }
}

/// Copies what the client sends, as it comes.
fn copy_raw(up: &mut Upstream, mut client: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !up.send(&buf[..n]) {
            return;
        }
    }
}

/// Forwards responses, corrupting those of marked requests, resetting the connection at
/// the reset point.
fn responses(shared: &Shared, mut server: TcpStream, mut client: TcpStream, flag: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut corrupting: Option<Corrupting> = None;
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if shared.take_reset(n) {
            let _ = server.shutdown(Shutdown::Both);
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        shared.hold(n);
        if corrupting.is_none() && flag.swap(false, Ordering::SeqCst) {
            corrupting = Some(Corrupting {
                head: Vec::new(),
                body: None,
            });
        }
        if let Some(c) = &mut corrupting
            && c.feed(&mut buf[..n])
        {
            if c.body.is_some() {
                shared.count(|c| c.corrupted += 1);
            }
            corrupting = None;
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
        shared.count(|c| c.down += n as u64);
    }
    let _ = client.shutdown(Shutdown::Write);
}
