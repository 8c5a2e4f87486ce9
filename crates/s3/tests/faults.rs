//! Failures against real moto servers and loopback sockets: killed mid-upload, a lost
//! connection, connection refused, a store that never answers, a bucket that cannot be
//! created. Each error names the bucket, says what to do, comes quickly with a short retry
//! budget, and carries no secret.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{KEY_ID, SECRET, block, settings, silent_port};
use service_backup_core::destination::Destination;
use service_backup_core::{Error, ErrorKind};
use service_backup_s3::S3Destination;
use service_backup_testkit::{Relay, env, free_port, moto, port_of, unique};

fn assert_no_secret(err: &Error) {
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(SECRET), "the secret leaked: {text}");
        assert!(!text.contains(KEY_ID), "the access key id leaked: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_upload() {
    let mut moto = moto().started();
    let bucket = unique("killed");
    let dest = S3Destination::new(&settings(&moto.url(""), &bucket)).unwrap();
    let mut upload = dest.put_multipart("2026/11/23/x.tar.gz.enc").await.unwrap();
    for i in 0..17 {
        upload.write(block(i)).await.unwrap();
    }
    // Two parts are sent or being sent; the store goes away.
    moto.kill();
    let started = Instant::now();
    let mut failure = None;
    for i in 0..40 {
        if let Err(e) = upload.write(block(i)).await {
            failure = Some(e);
            break;
        }
    }
    let err = match failure {
        Some(e) => {
            // The upload is abandoned: completing it cannot make anything visible.
            assert!(upload.complete().await.is_err());
            e
        }
        None => upload.complete().await.unwrap_err(),
    };
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
    assert!(text.contains(&format!("s3 bucket {bucket}")), "{text}");
    assert!(text.contains("x.tar.gz.enc"), "{text}");
    assert!(text.contains("unreachable"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_no_secret(&err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_clear_and_quick() {
    let port = free_port();
    let bucket = unique("refused");
    let dest = S3Destination::new(&settings(&format!("http://127.0.0.1:{port}"), &bucket)).unwrap();
    let started = Instant::now();

    let put = dest
        .put("a.json", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    let list = dest.list("").await.unwrap_err();
    let get = dest.get("a.json").await.unwrap_err();
    let mut upload = dest.put_multipart("big.bin").await.unwrap();
    let mut write = None;
    for i in 0..9 {
        if let Err(e) = upload.write(block(i)).await {
            write = Some(e);
            break;
        }
    }
    let write = write.expect("the first full part fails to start an upload");

    for err in [&put, &list, &get, &write] {
        let text = err.to_string();
        assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
        assert!(err.is_temporary(), "{text}");
        assert!(text.contains(&format!("s3 bucket {bucket}")), "{text}");
        assert!(
            text.contains(&format!("127.0.0.1:{port} is unreachable")),
            "{text}"
        );
        assert!(err.hint().unwrap().contains("endpoint_url"), "{text}");
        assert_no_secret(err);
    }
    // Four requests, each retried within a 3 s budget.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_that_cannot_be_created_is_clear() {
    let endpoint = env("SB_TEST_S3_ENDPOINT");
    // Longer than S3's 63 characters (the rule moto checks).
    let bucket = &format!("{}-too-long", "b".repeat(60));
    let dest = S3Destination::new(&settings(&endpoint, bucket)).unwrap();
    let err = dest
        .put("a.json", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
    assert!(text.contains(&format!("s3 bucket {bucket}")), "{text}");
    assert!(text.contains("InvalidBucketName"), "{text}");
    assert!(err.hint().unwrap().contains("bucket_name"), "{text}");
    assert!(!err.is_temporary(), "{text}");
    assert_no_secret(&err);

    // Reading from a bucket that does not exist says so, and what to check.
    let missing = unique("missing");
    let dest = S3Destination::new(&settings(&endpoint, &missing)).unwrap();
    let err = dest.list("").await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("NoSuchBucket"), "{text}");
    assert!(err.hint().unwrap().contains("bucket_name"), "{text}");
    // Deleting there is fine: nothing is there.
    dest.delete("a.json").await.unwrap();
}

#[test]
fn debug_output_has_no_credentials() {
    let dest = S3Destination::new(&settings("http://127.0.0.1:9", "b")).unwrap();
    let text = format!("{dest:?}");
    assert!(!text.contains(SECRET) && !text.contains(KEY_ID), "{text}");
    assert!(text.contains("127.0.0.1:9"), "{text}");
}

/// The network is lost mid-upload, so even the abort cannot reach the store: what remains
/// is an incomplete multipart upload, invisible to list and get, which a prune (with
/// `ListBucketMultipartUploads` and `AbortMultipartUpload`) finds and removes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_leaves_only_an_invisible_upload_that_a_prune_removes() {
    let endpoint = env("SB_TEST_S3_ENDPOINT");
    let bucket = unique("lost");
    let direct = S3Destination::new(&settings(&endpoint, &bucket)).unwrap();
    direct.put("marker", Bytes::new()).await.unwrap();

    let relay = Relay::raw(port_of(&endpoint));
    let through = S3Destination::new(&settings(&relay.url(""), &bucket)).unwrap();
    let mut upload = through.put_multipart("p/x.tar.gz.enc").await.unwrap();
    for i in 0..17 {
        upload.write(block(i)).await.unwrap();
    }
    // Let the parts in flight arrive, so that the store holds an upload with parts.
    let deadline = Instant::now() + Duration::from_secs(30);
    while direct.incomplete_uploads("p/").await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no multipart upload started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    relay.cut();
    let mut failed = false;
    for i in 0..40 {
        if let Err(e) = upload.write(block(i)).await {
            assert!(
                e.to_string().contains(&format!("s3 bucket {bucket}")),
                "{e}"
            );
            assert_no_secret(&e);
            failed = true;
            break;
        }
    }
    if !failed {
        upload.complete().await.unwrap_err();
    }

    assert!(direct.list("p/").await.unwrap().is_empty());
    assert_eq!(
        direct.get("p/x.tar.gz.enc").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let stale = direct.incomplete_uploads("p/").await.unwrap();
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].key, "p/x.tar.gz.enc");
    direct.abort_incomplete(&stale[0]).await.unwrap();
    assert!(direct.incomplete_uploads("p/").await.unwrap().is_empty());
    assert!(direct.list("p/").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_never_answers_fails_in_bounded_time() {
    let port = silent_port();
    let bucket = unique("silent");
    let mut s = settings(&format!("http://127.0.0.1:{port}"), &bucket);
    s.request_timeout = Duration::from_secs(1);
    let dest = S3Destination::new(&s).unwrap();
    let started = Instant::now();
    let err = dest.list("").await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&format!("s3 bucket {bucket}")), "{text}");
    assert!(text.contains("did not answer within 1 s"), "{text}");
    assert!(err.is_temporary(), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_no_secret(&err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_error_answer_is_read_only_in_part() {
    let (port, sent) = service_backup_testkit::endless_error_server();
    let dest =
        S3Destination::new(&settings(&format!("http://127.0.0.1:{port}"), "hostile")).unwrap();
    let started = Instant::now();
    let err = dest.list("").await.unwrap_err();
    let took = started.elapsed();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
    assert!(text.contains("s3 bucket hostile"), "{text}");
    // Without a bound the client reads the 2 GB announced (tens of seconds, gigabytes held).
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        text.len() < 1000,
        "{} characters: {}…",
        text.len(),
        &text[..200]
    );
    // What the socket buffers hold on top of the few KiB read, for each of the 3 attempts.
    std::thread::sleep(Duration::from_millis(500));
    let accepted = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(accepted < 64 * 1024 * 1024, "{accepted} bytes accepted");
}
