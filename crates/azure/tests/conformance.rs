//! The destination conformance suite and the read/list behaviour, against Azurite.

mod common;

use std::num::NonZeroU32;

use bytes::Bytes;
use service_backup_azure::{AzureDestination, AzureSettings};
use service_backup_core::ErrorKind;
use service_backup_core::destination::{Destination, conformance, get_small};

use common::{destination, key, settings};
use service_backup_testkit::{env, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    let dest = destination();
    conformance::run_all(&dest, &unique("run")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describes_itself_without_the_key() {
    let container = unique("describe");
    let s = settings(&container);
    let dest = AzureDestination::new(s.clone()).unwrap();
    assert_eq!(
        dest.describe(),
        format!("azure {}/{container}", env("SB_TEST_AZURE_ACCOUNT"))
    );
    for text in [format!("{dest:?}"), format!("{s:?}")] {
        assert!(!text.contains(&key()), "the key is in {text}");
        assert!(text.contains(&container), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_every_page() {
    let dest = destination().with_list_page_size(NonZeroU32::new(2).unwrap());
    conformance::lists_every_page(&dest, &unique("pages")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_by_page() {
    // Pages of 3 asked, the service's pages of 2: two of them make one of 4.
    let dest = destination().with_list_page_size(NonZeroU32::new(2).unwrap());
    conformance::lists_page_by_page(&dest, &unique("paged-2"), 3, 4).await;
    // Pages of 3 asked, and answered. Azurite does not know `startFrom`: a listing after a
    // key that ends no page it handed out starts at the beginning, the keys before the
    // start are dropped, and the first page may then hold up to 3 + 3 - 1 keys.
    conformance::lists_page_by_page(&destination(), &unique("paged"), 3, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_stream_range_by_range_and_stop_when_dropped() {
    // Ranges of 4 MiB: three for 9 MiB.
    conformance::reads_stream_and_stop_when_dropped(&destination(), "big.bin", Some(4 << 20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_create_the_container() {
    let container = unique("absent");
    let dest = AzureDestination::new(settings(&container)).unwrap();
    let err = dest.get("a/b.json").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = dest.list("a/").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("the container {container} does not exist")),
        "{text}"
    );
    assert!(
        text.contains("a backup creates a missing container"),
        "{text}"
    );
    dest.delete("a/b.json").await.unwrap();
    // Still absent: the first write creates it.
    assert!(dest.list("").await.is_err());
    dest.put("a/b.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(dest.list("").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_with_a_trailing_slash_works() {
    let mut s: AzureSettings = settings(&unique("slash"));
    s.endpoint.push('/');
    let dest = AzureDestination::new(s).unwrap();
    dest.put("x/y.json", Bytes::from_static(b"1"))
        .await
        .unwrap();
    assert_eq!(
        get_small(&dest, "x/y.json", 16).await.unwrap(),
        b"1".to_vec()
    );
}
