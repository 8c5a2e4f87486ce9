//! The destination conformance suite against moto (started by `tests/run.sh`), over plain
//! HTTP and over TLS with a private CA, and what an upload in progress leaves visible.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{SECRET, block, settings};
use service_backup_core::ErrorKind;
use service_backup_core::destination::conformance::run_all;
use service_backup_core::destination::{Destination, RetryPolicy, get_small};
use service_backup_s3::S3Destination;
use service_backup_testkit::{env, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_against_moto() {
    let mut s = settings(&env("SB_TEST_S3_ENDPOINT"), &unique("conformance"));
    s.retry = RetryPolicy::default();
    let dest = S3Destination::new(&s).unwrap();
    assert_eq!(dest.describe(), format!("s3 {}", s.bucket_name));
    run_all(&dest, &unique("run")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_by_page_against_moto() {
    let s = settings(&env("SB_TEST_S3_ENDPOINT"), &unique("paged"));
    let dest = S3Destination::new(&s).unwrap();
    service_backup_core::destination::conformance::lists_page_by_page(&dest, "paged", 3, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_is_created_in_its_region() {
    let mut s = settings(&env("SB_TEST_S3_ENDPOINT"), &unique("regional"));
    s.region = Some("eu-central-1".into());
    let dest = S3Destination::new(&s).unwrap();
    dest.put("a/b.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(get_small(&dest, "a/b.json", 16).await.unwrap(), b"{}");
    assert_eq!(dest.list("a/").await.unwrap().len(), 1);
}

/// An upload in progress is invisible; abort and drop remove it; a small one never starts
/// a multipart upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_in_progress_are_invisible_and_aborts_leave_nothing() {
    let dest = S3Destination::new(&settings(
        &env("SB_TEST_S3_ENDPOINT"),
        &unique("in-progress"),
    ))
    .unwrap();
    // The bucket exists before the first multipart upload is listed.
    dest.put("marker", Bytes::new()).await.unwrap();

    let mut upload = dest.put_multipart("p/big.bin").await.unwrap();
    for i in 0..10 {
        upload.write(block(i)).await.unwrap();
    }
    assert!(dest.list("p/").await.unwrap().is_empty());
    assert_eq!(
        dest.get("p/big.bin").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let incomplete = dest.incomplete_uploads("p/").await.unwrap();
    assert_eq!(incomplete.len(), 1, "{incomplete:?}");
    assert_eq!(incomplete[0].key, "p/big.bin");
    upload.abort().await.unwrap();
    assert!(dest.incomplete_uploads("p/").await.unwrap().is_empty());
    assert!(dest.list("p/").await.unwrap().is_empty());

    // Dropped without complete: the abort runs from a task.
    let mut dropped = dest.put_multipart("q/dropped.bin").await.unwrap();
    for i in 0..9 {
        dropped.write(block(i)).await.unwrap();
    }
    assert_eq!(dest.incomplete_uploads("q/").await.unwrap().len(), 1);
    drop(dropped);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dest.incomplete_uploads("q/").await.unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the dropped upload was not aborted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dest.list("q/").await.unwrap().is_empty());

    // Smaller than a part: one PutObject at complete, no multipart upload at all.
    let mut small = dest.put_multipart("r/small.bin").await.unwrap();
    small.write(block(1)).await.unwrap();
    small.write(block(2)).await.unwrap();
    assert!(dest.incomplete_uploads("r/").await.unwrap().is_empty());
    assert!(dest.list("r/").await.unwrap().is_empty());
    small.complete().await.unwrap();
    let listed = dest.list("r/").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, 2 * 1024 * 1024);
}

/// A store whose certificate a private CA signed: trusted with `ca_cert`, refused with a
/// hint without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_ca_over_tls() {
    let endpoint = env("SB_TEST_S3_TLS_ENDPOINT");
    let ca = std::fs::read_to_string(env("SB_TEST_S3_CA_CERT")).unwrap();
    let bucket = unique("tls");

    let mut s = settings(&endpoint, &bucket);
    s.ca_cert = Some(ca);
    let dest = S3Destination::new(&s).unwrap();
    let mut upload = dest.put_multipart("t/archive.bin").await.unwrap();
    for i in 0..9 {
        upload.write(block(i)).await.unwrap();
    }
    upload.complete().await.unwrap();
    dest.put("t/m.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let listed = dest.list("t/").await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(get_small(&dest, "t/m.json", 16).await.unwrap(), b"{}");

    let untrusting = S3Destination::new(&settings(&endpoint, &bucket)).unwrap();
    let started = Instant::now();
    let err = untrusting.list("t/").await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&format!("s3 bucket {bucket}")), "{text}");
    assert!(text.contains("not trusted"), "{text}");
    assert!(err.hint().unwrap().contains("ca_cert"), "{text}");
    assert!(
        !err.is_temporary(),
        "a certificate does not fix itself: {text}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!text.contains(SECRET) && !format!("{err:?}").contains(SECRET));
}

/// Listing goes past S3's page of 1,000 keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_reads_every_page() {
    use futures::StreamExt as _;
    let dest =
        S3Destination::new(&settings(&env("SB_TEST_S3_ENDPOINT"), &unique("pages"))).unwrap();
    dest.put("marker", Bytes::new()).await.unwrap();
    let count = 1003;
    futures::stream::iter(0..count)
        .map(|i| {
            let dest = &dest;
            async move {
                dest.put(&format!("many/{i:04}.json"), Bytes::from_static(b"{}"))
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let mut keys: Vec<String> = dest
        .list("many/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), count);
    assert_eq!(keys[count - 1], format!("many/{:04}.json", count - 1));
}
