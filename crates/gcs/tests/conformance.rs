//! The destination conformance suite and the read/list behaviour, against fake-gcs-server
//! with the token endpoint of tests/servers/gcs.sh.

mod common;

use bytes::Bytes;
use service_backup_core::ErrorKind;
use service_backup_core::destination::{Destination, conformance, get_small};
use service_backup_gcs::{CHUNK_GRANULARITY, GcsDestination};

use common::{destination, key_json, key_material, settings};
use service_backup_testkit::unique;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    let dest = destination();
    conformance::run_all(&dest, &unique("run")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite_with_many_small_chunks() {
    let mut s = settings(&unique("small-chunks"));
    s.chunk_size = CHUNK_GRANULARITY;
    let dest = GcsDestination::new(s).unwrap();
    conformance::run_all(&dest, "many/chunks").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describes_itself_without_the_key() {
    let bucket = unique("describe");
    let s = settings(&bucket);
    let dest = GcsDestination::new(s.clone()).unwrap();
    assert_eq!(dest.describe(), format!("gcs bucket {bucket}"));
    let material = key_material(&key_json());
    for text in [format!("{dest:?}"), format!("{s:?}")] {
        assert!(!text.contains(&material), "the key is in {text}");
        assert!(!text.contains("PRIVATE KEY"), "the key is in {text}");
        assert!(text.contains(&bucket), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_every_page() {
    let mut s = settings(&unique("pages"));
    s.list_page_size = 2;
    let dest = GcsDestination::new(s).unwrap();
    conformance::lists_every_page(&dest, &unique("pages")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_by_page() {
    // Pages of 3 asked, the service's pages of 2: two of them make one of 4.
    let mut s = settings(&unique("paged-2"));
    s.list_page_size = 2;
    let dest = GcsDestination::new(s).unwrap();
    conformance::lists_page_by_page(&dest, &unique("paged-2"), 3, 4).await;
    // The default page size: pages of exactly 3.
    conformance::lists_page_by_page(&destination(), &unique("paged"), 3, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_stream_and_stop_when_dropped() {
    conformance::reads_stream_and_stop_when_dropped(&destination(), "big.bin", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_create_the_bucket() {
    let bucket = unique("absent");
    let dest = GcsDestination::new(settings(&bucket)).unwrap();
    let err = dest.get("a/b.json").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = dest.list("a/").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "gcs bucket {bucket}: cannot list \"a/\": the bucket does not exist"
        )),
        "{text}"
    );
    assert!(text.contains("a backup creates a missing bucket"), "{text}");
    dest.delete("a/b.json").await.unwrap();
    assert!(dest.list("").await.is_err(), "still absent");
    dest.put("a/b.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(dest.list("").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_spaces_and_unicode_round_trip() {
    let dest = destination();
    let key = "dir with space/été+plus.json";
    dest.put(key, Bytes::from_static(b"1")).await.unwrap();
    assert_eq!(get_small(&dest, key, 16).await.unwrap(), b"1".to_vec());
    let listed = dest.list("dir with space/").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, key);
    dest.delete(key).await.unwrap();
    assert!(dest.list("").await.unwrap().is_empty());
}
