//! The destination conformance suite and the read/list behaviour, against Azurite.

mod common;

use std::num::NonZeroU32;

use bytes::Bytes;
use futures::StreamExt as _;
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
    for i in 0..7 {
        dest.put(&format!("p/{i}/m.json"), Bytes::from(vec![b'x'; i]))
            .await
            .unwrap();
    }
    dest.put("q/other.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let mut listed = dest.list("p/").await.unwrap();
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    let keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        (0..7).map(|i| format!("p/{i}/m.json")).collect::<Vec<_>>()
    );
    assert_eq!(listed[5].size, 5);
    assert!(listed.iter().all(|o| o.last_modified.is_some()));
    assert_eq!(dest.list("").await.unwrap().len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_stream_range_by_range_and_stop_when_dropped() {
    let dest = destination();
    // Not a multiple of the 4 MiB range, with a tail smaller than one range.
    let data: Vec<u8> = (0..9 * 1024 * 1024 + 123)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut upload = dest.put_multipart("big.bin").await.unwrap();
    for chunk in data.chunks(1024 * 1024) {
        upload.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    upload.complete().await.unwrap();

    let object = dest.get("big.bin").await.unwrap();
    assert_eq!(object.size, Some(data.len() as u64));
    let chunks: Vec<Bytes> = object.chunks.map(Result::unwrap).collect().await;
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    assert!(chunks.iter().all(|c| c.len() <= 4 * 1024 * 1024));
    assert!(chunks.concat() == data, "the content differs");

    // A reader that stops early: the stream is dropped without harm.
    let mut object = dest.get("big.bin").await.unwrap();
    let first = object.chunks.next().await.unwrap().unwrap();
    assert_eq!(&first[..], &data[..first.len()]);
    drop(object);
    assert_eq!(
        get_small(&dest, "big.bin", 1024).await.unwrap_err().kind(),
        ErrorKind::Corrupt,
        "a limit still applies"
    );
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
