//! Helpers for the tests against moto: addresses from `tests/run.sh`, settings, and a moto
//! of a test's own for the tests that stop it.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use service_backup_core::destination::RetryPolicy;
use service_backup_core::secret::Secret;
use service_backup_s3::S3Settings;

/// The secret access key of every test: it must never show in an error or debug output.
pub const SECRET: &str = "tEsT/sEcReT+aCcEsS+kEy/never-to-be-printed";
/// The access key id of every test (moto accepts any).
pub const KEY_ID: &str = "AKIATESTKEYID0000001";

/// A variable that `tests/run.sh` exports; the test fails without it.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through tests/run.sh, which starts the server")
    })
}

/// A name no other test run uses: lowercase, so it is also a valid bucket name.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        service_backup_core::random::hex_token(6).unwrap()
    )
}

/// A retry policy short enough for tests that expect failures.
pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        budget: Duration::from_secs(3),
    }
}

/// Settings for `bucket` at `endpoint`, with the test credentials and a quick retry.
pub fn settings(endpoint: &str, bucket: &str) -> S3Settings {
    let mut s = S3Settings::new(bucket, KEY_ID, Secret::new(SECRET));
    s.endpoint_url = Some(endpoint.to_string());
    s.retry = quick_retry();
    s.connect_timeout = Duration::from_secs(3);
    s
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A moto server of this test's own, killed when dropped.
pub struct Moto {
    child: Child,
    /// Its endpoint URL.
    pub endpoint: String,
}

impl Moto {
    /// Starts moto (the program `tests/run.sh` installed) on a free port.
    pub fn start() -> Self {
        let program = env("SB_TEST_MOTO_SERVER");
        let port = closed_port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not open port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Kills the server at once (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Blocks of 1 MiB, as the backup pipeline hands them to destinations.
pub fn block(seed: u8) -> bytes::Bytes {
    bytes::Bytes::from(
        (0..1024 * 1024)
            .map(|i: u32| (i % 251) as u8 ^ seed)
            .collect::<Vec<u8>>(),
    )
}

/// A TCP relay on loopback to a server, which a test can cut like a lost network: every
/// connection through it is shut down and new ones are refused. It can also reset the one
/// connection that carries the server's answers past a given byte, as a network glitch
/// does, and counts the bytes of the server's answers it passed on.
pub struct Relay {
    /// The endpoint URL that goes through the relay.
    pub endpoint: String,
    connections: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    from_server: std::sync::Arc<std::sync::atomic::AtomicU64>,
    reset_at: std::sync::Arc<std::sync::atomic::AtomicU64>,
    port: u16,
}

/// The `reset_at` of a relay whose reset happened (no answer is that long).
const RESET_DONE: u64 = u64::MAX - 1;

/// Copies the server's answers to the client, counting them; when the count would pass
/// `reset_at`, drops that piece and shuts the connection down (once).
fn relay_answers(
    mut from: TcpStream,
    mut to: TcpStream,
    from_server: &std::sync::atomic::AtomicU64,
    reset_at: &std::sync::atomic::AtomicU64,
) {
    use std::io::{Read as _, Write as _};
    use std::sync::atomic::Ordering;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let limit = reset_at.load(Ordering::SeqCst);
        let passed = from_server.load(Ordering::SeqCst);
        if passed + n as u64 > limit
            && reset_at
                .compare_exchange(limit, RESET_DONE, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            let _ = from.shutdown(std::net::Shutdown::Both);
            let _ = to.shutdown(std::net::Shutdown::Both);
            return;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        from_server.fetch_add(n as u64, Ordering::SeqCst);
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

impl Relay {
    /// A relay to `127.0.0.1:target_port`.
    pub fn start(target_port: u16) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::<TcpStream>::new()));
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let from_server = std::sync::Arc::new(AtomicU64::new(0));
        let reset_at = std::sync::Arc::new(AtomicU64::new(u64::MAX));
        let (conns, stop) = (connections.clone(), cut.clone());
        let (counted, reset) = (from_server.clone(), reset_at.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                let mut list = conns.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                let (mut from, mut to) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
                let (counted, reset) = (counted.clone(), reset.clone());
                std::thread::spawn(move || relay_answers(server, client, &counted, &reset));
            }
        });
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            connections,
            cut,
            from_server,
            reset_at,
            port,
        }
    }

    /// Resets the connection whose answer passes byte `at` of all the server's answers
    /// relayed so far (counted from the start); later connections go through.
    pub fn reset_at(&self, at: u64) {
        self.reset_at.store(at, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the reset asked for by [`Relay::reset_at`] happened.
    pub fn was_reset(&self) -> bool {
        self.reset_at.load(std::sync::atomic::Ordering::SeqCst) == RESET_DONE
    }

    /// The bytes of the server's answers passed on so far.
    pub fn answered_bytes(&self) -> u64 {
        self.from_server.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Cuts every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag and closes the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for conn in self.connections.lock().unwrap().drain(..) {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

/// The port of an `http://127.0.0.1:PORT` endpoint.
pub fn port_of(endpoint: &str) -> u16 {
    endpoint
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// A loopback port that accepts connections and never answers (a hung store); its
/// connections stay open until the test process ends.
pub fn silent_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    port
}
