//! Replays of an attacker's review against hostile blob endpoints on loopback.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt as _;
use service_backup_azure::{AzureDestination, AzureSettings};
use service_backup_core::ErrorKind;
use service_backup_core::destination::{Destination as _, RetryPolicy};
use service_backup_core::secret::Secret;

/// A server answering every List Blobs with a page of names and the same `NextMarker`;
/// returns its port and the count of pages served.
fn same_marker_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let pages = Arc::new(AtomicUsize::new(0));
    let counter = pages.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let mut body = String::from(
                    r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="x" ContainerName="c"><Blobs>"#,
                );
                for i in 0..50 {
                    let _ = write!(
                        body,
                        "<Blob><Name>{}-{n}-{i}</Name><Properties><Content-Length>1</Content-Length></Properties></Blob>",
                        "n".repeat(200)
                    );
                }
                body.push_str("</Blobs><NextMarker>again</NextMarker></EnumerationResults>");
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    (port, pages)
}

#[tokio::test]
async fn a_listing_whose_marker_repeats_stops_with_an_error() {
    let (port, pages) = same_marker_server();
    let settings = AzureSettings::with_access_key(
        "acct",
        Secret::new("a2V5"),
        "backups",
        &format!("http://127.0.0.1:{port}/acct"),
        RetryPolicy::none(),
    );
    let dest = AzureDestination::new(settings).unwrap();
    let err = tokio::time::timeout(std::time::Duration::from_secs(30), dest.list(""))
        .await
        .expect("the listing ended")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Destination, "{err}");
    let text = err.to_string();
    assert!(text.contains("azure acct/backups"), "{text}");
    assert!(
        text.contains("repeats its continuation marker \"again\""),
        "{text}"
    );
    // The first page names the marker, the second repeats it: no third is asked.
    assert_eq!(pages.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_blob_whose_body_trickles_fails_within_the_bound() {
    // The attacker's finding: a Get Blob whose body comes a byte every 200 ms never timed
    // out (each byte reset the connection's idle timer), and a restore hung for ever.
    let (port, answered) = service_backup_testkit::trickling_server(
        "Content-Length: 10485760\r\nETag: \"0x1\"\r\nx-ms-blob-type: BlockBlob\r\n\
         Last-Modified: Sun, 06 Dec 2026 10:00:00 GMT\r\n",
        std::time::Duration::from_millis(200),
    );
    let mut settings = AzureSettings::with_access_key(
        "acct",
        Secret::new("a2V5"),
        "backups",
        &format!("http://127.0.0.1:{port}/acct"),
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: std::time::Duration::from_millis(10),
            max_backoff: std::time::Duration::from_millis(20),
            budget: std::time::Duration::from_secs(30),
        },
    );
    settings.stall_timeout = std::time::Duration::from_secs(1);
    let dest = AzureDestination::new(settings).unwrap();
    let started = std::time::Instant::now();
    let read = async {
        let mut object = dest.get("2026/12/06/x.tar.gz.enc").await?;
        while let Some(chunk) = object.chunks.next().await {
            chunk?;
        }
        Ok::<(), service_backup_core::Error>(())
    };
    let err = tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .expect("the read ended")
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
    assert!(text.contains("azure acct/backups"), "{text}");
    assert!(text.contains("fewer than 64 KiB came in 1 s"), "{text}");
    // each of the three attempts stalls after a second
    let elapsed = started.elapsed();
    assert!(elapsed < std::time::Duration::from_secs(8), "{elapsed:?}");
    // the properties, then the range three times
    assert_eq!(answered.load(Ordering::SeqCst), 4);
}
