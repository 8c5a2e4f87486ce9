//! Hostile servers on loopback, for tests of what a client reads from a server that lies.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A server answering every request with `500` and an announced 2 GB XML error body that
/// it streams (an error code, then an endless message) while the client reads; returns its
/// port and the count of body bytes the clients accepted.
#[must_use]
pub fn endless_error_server() -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut request = vec![0u8; 65536];
                let _ = conn.read(&mut request);
                let head = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n\
                            Content-Length: 2000000000\r\n\r\n<Error><Code>X</Code><Message>";
                if conn.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![b'A'; 64 * 1024];
                while conn.write_all(&chunk).is_ok() {
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (port, sent)
}

/// A server answering every request with `200`, the header lines `headers` (each ending in
/// `\r\n`, `Content-Length` among them) and, unless it is a `HEAD`, a body that trickles a
/// byte every `every` for as long as the client reads; returns its port and the count of
/// requests it answered.
#[must_use]
pub fn trickling_server(headers: &str, every: std::time::Duration) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    let answered = Arc::new(AtomicU64::new(0));
    let counter = answered.clone();
    let headers = headers.to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (counter, headers) = (counter.clone(), headers.clone());
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let head = format!("HTTP/1.1 200 OK\r\n{headers}Connection: close\r\n\r\n");
                if conn.write_all(head.as_bytes()).is_err() || request.starts_with(b"HEAD ") {
                    return;
                }
                loop {
                    std::thread::sleep(every);
                    if conn.write_all(b"x").is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, answered)
}
