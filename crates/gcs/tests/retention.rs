//! Immutability on GCS (object retention) against fake-gcs-server: what the emulator
//! supports of it. The request bodies the destination sends are pinned by the unit tests
//! of `src/retention.rs`.

mod common;

use bytes::Bytes;
use service_backup_core::destination::{Destination, Immutability, LockMode, get_small};
use service_backup_gcs::GcsDestination;

use common::settings;
use service_backup_testkit::unique;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_objects_are_written_and_read_back() {
    let bucket = unique("retained");
    let mut s = settings(&bucket);
    s.immutability = Some(Immutability {
        mode: LockMode::Governance,
        days: 1,
    });
    s.chunk_size = service_backup_gcs::CHUNK_GRANULARITY;
    let endpoint = s.endpoint.clone().unwrap();
    let dest = GcsDestination::new(s).unwrap();
    let before = chrono::Utc::now();
    assert_eq!(dest.immutability().map(|i| i.days), Some(1));
    // A manifest (one chunk: sent through a session, which carries the retention) and an
    // archive of several chunks.
    dest.put("p/2026/12/06/x.json", Bytes::from_static(b"{}\n"))
        .await
        .unwrap();
    let big = Bytes::from(vec![7u8; 3 * service_backup_gcs::CHUNK_GRANULARITY + 5]);
    let mut upload = dest.put_multipart("p/2026/12/06/x.tar.gz").await.unwrap();
    upload.write(big.clone()).await.unwrap();
    upload.complete().await.unwrap();
    assert_eq!(
        get_small(&dest, "p/2026/12/06/x.json", 64).await.unwrap(),
        b"{}\n"
    );
    assert_eq!(
        get_small(&dest, "p/2026/12/06/x.tar.gz", big.len())
            .await
            .unwrap(),
        big.to_vec()
    );
    for key in [
        "p%2F2026%2F12%2F06%2Fx.json",
        "p%2F2026%2F12%2F06%2Fx.tar.gz",
    ] {
        let text = reqwest::get(format!("{endpoint}/storage/v1/b/{bucket}/o/{key}"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let meta: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(meta["retention"]["mode"], "Unlocked", "{key}: {meta}");
        let until = meta["retention"]["retainUntilTime"].as_str().unwrap();
        let until = chrono::DateTime::parse_from_rfc3339(until)
            .unwrap()
            .with_timezone(&chrono::Utc);
        let expected = before + chrono::Duration::days(1);
        assert!(
            (until - expected).num_seconds().abs() < 60,
            "{key}: retained until {until}, expected about {expected}"
        );
    }
    // fake-gcs-server records the retention but does not enforce it: the delete goes
    // through (Google Cloud Storage answers 403, which the unit tests map to a lock). When
    // this fails, the emulator enforces retention: test the refusal here instead.
    dest.delete("p/2026/12/06/x.json").await.unwrap();
}
