//! The HTTP side of the relay: requests forwarded one by one (answered by the relay or
//! marked for corruption as the faults say), and the corruption of a response's body.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};

use super::Upstream;

/// Forwards requests one by one, answering or marking them as the faults say.
pub(super) fn requests(
    up: &mut Upstream,
    mut client: BufReader<TcpStream>,
    corrupt_next: &AtomicBool,
) {
    loop {
        let mut head = Vec::new();
        loop {
            let before = head.len();
            match client.read_until(b'\n', &mut head) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if &head[before..] == b"\r\n" && before > 0 {
                break;
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        up.shared.heads.lock().unwrap().push(text.clone());
        let line = text.lines().next().unwrap_or_default().to_string();
        let header = |name: &str| {
            text.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let length: u64 = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let faults = up.shared.faults.lock().unwrap().clone();
        if let Some((matcher, status, body)) = &faults.answer
            && matcher(&line)
            && !chunked
        {
            let _ = std::io::copy(&mut (&mut client).take(length), &mut std::io::sink());
            let response = format!(
                "HTTP/1.1 {status} Fault\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            up.shared.count(|c| c.answered += 1);
            let _ = up.client.write_all(response.as_bytes());
            let _ = up.client.shutdown(Shutdown::Write);
            return;
        }
        corrupt_next.store(
            faults.corrupt.as_ref().is_some_and(|m| m(&line)),
            Ordering::SeqCst,
        );
        if !up.send(&head) {
            return;
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = if chunked { u64::MAX } else { length };
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap();
            let n = match client.read(&mut buf[..want]) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !up.send(&buf[..n]) {
                return;
            }
            left = left.saturating_sub(n as u64);
        }
    }
}

/// Where a response being corrupted is: in its head, or `seen` bytes into its body.
pub(super) struct Corrupting {
    pub(super) head: Vec<u8>,
    pub(super) body: Option<(u64, u64)>,
}

impl Corrupting {
    /// Looks through `bytes` (as they pass), flipping the byte in the middle of the body;
    /// true once done.
    pub(super) fn feed(&mut self, bytes: &mut [u8]) -> bool {
        for b in bytes.iter_mut() {
            match &mut self.body {
                None => {
                    self.head.push(*b);
                    if self.head.ends_with(b"\r\n\r\n") {
                        let text = String::from_utf8_lossy(&self.head).to_ascii_lowercase();
                        if text.starts_with("http/1.1 1") {
                            self.head.clear();
                            continue;
                        }
                        let length: u64 = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if length == 0 {
                            return true;
                        }
                        self.body = Some((0, length / 2));
                    }
                }
                Some((seen, at)) => {
                    if *seen == *at {
                        *b ^= 0x55;
                        return true;
                    }
                    *seen += 1;
                }
            }
        }
        false
    }
}
