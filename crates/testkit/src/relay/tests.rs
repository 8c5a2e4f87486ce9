//! The relay against small servers of the test's own: untouched forwarding, corrupted
//! and answered requests, cuts, resets, and a relay that was cut.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::{Faults, Relay, request};

/// A one-connection-at-a-time HTTP server that reads each request's body and answers
/// 200 with `body`, and reports the body sizes it received.
fn server(body: &'static [u8]) -> (u16, std::sync::mpsc::Receiver<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut out = conn;
                loop {
                    let mut length = 0u64;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let got = std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink())
                        .unwrap_or(0);
                    let _ = tx.send(got);
                    if got < length {
                        return;
                    }
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                    if out
                        .write_all(head.as_bytes())
                        .and_then(|()| out.write_all(body))
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

/// Sends `body` with `line` over `conn` and reads the response: (status, body), or
/// None if the connection broke.
fn exchange(conn: &mut TcpStream, line: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let head = format!(
        "{line}\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).ok()?;
    conn.write_all(body).ok()?;
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).ok()?;
    let code: u16 = status.split(' ').nth(1)?.parse().ok()?;
    let mut length = 0usize;
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l).ok()? == 0 {
            return None;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        if l == "\r\n" {
            break;
        }
    }
    let mut out = vec![0u8; length];
    reader.read_exact(&mut out).ok()?;
    Some((code, out))
}

#[test]
fn a_relay_cuts_answers_and_corrupts() {
    const BODY: &[u8] = b"0123456789abcdefghij";
    let (port, received) = server(BODY);
    let relay = Relay::start(port);

    // Untouched: two requests on one connection.
    let mut conn = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
    for _ in 0..2 {
        let (code, body) = exchange(&mut conn, "PUT /a HTTP/1.1", &[7; 1000]).unwrap();
        assert_eq!((code, &body[..]), (200, BODY));
        assert_eq!(received.recv().unwrap(), 1000);
    }
    assert!(relay.counts().up > 2000, "{:?}", relay.counts());

    // Corrupted: one byte in the middle of the matching response's body.
    relay.set(Faults {
        corrupt: Some(request("GET", "/obj")),
        ..Faults::default()
    });
    let (_, plain) = exchange(&mut conn, "GET /other HTTP/1.1", b"").unwrap();
    assert_eq!(plain, BODY);
    received.recv().unwrap();
    let (_, bad) = exchange(&mut conn, "GET /obj HTTP/1.1", b"").unwrap();
    received.recv().unwrap();
    let differ: Vec<usize> = (0..BODY.len()).filter(|&i| bad[i] != BODY[i]).collect();
    assert_eq!(differ, [BODY.len() / 2]);
    assert_eq!(relay.counts().corrupted, 1);

    // Answered by the relay: the server never sees the request.
    relay.set(Faults {
        answer: Some((request("PUT", "comp=blocklist"), 500, "<Error/>".into())),
        ..Faults::default()
    });
    let (code, body) = exchange(&mut conn, "PUT /b?comp=blocklist HTTP/1.1", b"<x/>").unwrap();
    assert_eq!((code, &body[..]), (500, &b"<Error/>"[..]));
    assert_eq!(relay.counts().answered, 1);
    assert!(received.try_recv().is_err());

    // Cut once after 10,000 bytes up: that connection breaks, the next one works.
    relay.set(Faults {
        cut_after: Some(10_000),
        cut_times: Some(1),
        ..Faults::default()
    });
    let mut first = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
    assert!(exchange(&mut first, "PUT /big HTTP/1.1", &vec![1; 50_000]).is_none());
    assert!(received.recv().unwrap() < 10_000);
    let mut second = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
    assert!(exchange(&mut second, "PUT /big HTTP/1.1", &vec![1; 50_000]).is_some());
    assert_eq!(received.recv().unwrap(), 50_000);
    assert_eq!(relay.counts().cuts, 1);
    relay.wait_for("the bytes up", Duration::from_secs(5), |c| c.up > 60_000);
}

/// A server that answers every connection with `len` bytes, then closes it.
fn talker(len: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.write_all(&vec![7u8; len]);
        }
    });
    port
}

fn read_all(port: u16) -> usize {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut got = Vec::new();
    let _ = conn.read_to_end(&mut got);
    got.len()
}

#[test]
fn a_reset_cuts_one_answer_once_and_a_cut_refuses_connections() {
    let relay = Relay::raw(talker(100_000));
    relay.set(Faults {
        reset_answers_at: Some(150_000),
        ..Faults::default()
    });
    assert_eq!(read_all(relay.port), 100_000);
    let cut_short = read_all(relay.port);
    assert!(cut_short < 100_000, "{cut_short} bytes passed the reset");
    relay.wait_for("the reset", Duration::from_secs(10), |c| c.resets == 1);
    assert_eq!(read_all(relay.port), 100_000, "a second reset");
    assert_eq!(relay.counts().resets, 1);

    relay.cut();
    // The accept loop closes the listener once it wakes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", relay.port)).is_ok() {
        assert!(Instant::now() < deadline, "the cut relay still accepts");
        std::thread::sleep(Duration::from_millis(20));
    }
}
