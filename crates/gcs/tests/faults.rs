//! Failures against a real fake-gcs-server and the test token endpoint: the emulator going
//! away mid-upload, a key the token endpoint refuses, a bucket that cannot be created, an
//! endpoint nobody listens on, an unusable key.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use service_backup_core::ErrorKind;
use service_backup_core::destination::{Destination, RetryPolicy, conformance};
use service_backup_core::layout::Layout;
use service_backup_core::secret::Secret;
use service_backup_gcs::{CHUNK_GRANULARITY, GcsDestination};

use common::{key_json, key_material, settings, settings_at};
use service_backup_testkit::{
    StopAt, assert_nothing_left, backup_into, backup_plan, env, fake_gcs, free_port, noisy_source,
    unique,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_stopped_mid_upload_leaves_no_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    noisy_source(&source, 24);
    let server = fake_gcs(&tmp.path().join("emulator")).started();
    let endpoint = server.url("");
    let bucket = unique("stopped");
    let mut s = settings_at(&endpoint, &bucket);
    s.chunk_size = 4 * CHUNK_GRANULARITY;
    let dest: Arc<dyn Destination> = Arc::new(GcsDestination::new(s).unwrap());
    // The bucket exists before the stop, so that what remains after it can be listed.
    dest.put("marker.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();

    let stop = Arc::new(StopAt::new(14 * 1024 * 1024, server));
    let plan = backup_plan(&source, "vm-0");
    let layout = Layout::new("svc/prod", None);
    let outcome = backup_into(plan, "google", dest.clone(), &layout, stop.clone()).await;
    assert!(stop.stopped(), "the emulator was not stopped");
    let err = outcome.result.as_ref().unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
    assert!(
        text.contains(&format!("gcs bucket {bucket}: cannot upload chunk ")),
        "{text}"
    );
    assert!(
        text.contains(&format!("cannot connect to {endpoint}")),
        "{text}"
    );
    assert!(!text.contains(&key_material(&key_json())), "{text}");
    assert!(!text.contains("upload_id"), "the session URI is in {text}");
    assert!(!text.contains("os error"), "{text}");

    // Back up: neither the archive nor a manifest is there.
    stop.server().start();
    assert_nothing_left(&*dest, "svc/", &layout, &outcome.archive_key).await;
    assert_eq!(dest.list("").await.unwrap().len(), 1, "only the marker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_token_endpoint_refuses_fails_every_request_without_secrets() {
    let wrong = std::fs::read_to_string(env("SB_TEST_GCS_WRONG_KEY_FILE")).unwrap();
    let bucket = unique("wrongkey");
    let mut s = settings(&bucket);
    s.service_account_json = Some(Secret::new(wrong.clone()));
    let dest = GcsDestination::new(s).unwrap();
    let put = dest
        .put("a.json", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    let list = dest.list("").await.unwrap_err();
    let get = dest.get("a.json").await.unwrap_err();
    let delete = dest.delete("a.json").await.unwrap_err();
    for err in [put, list, get, delete] {
        let text = format!("{err} {err:?}");
        assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
        assert!(!err.is_temporary(), "{text}");
        assert!(
            text.starts_with(&format!(
                "gcs bucket {bucket}: cannot get an access token for backup-agent@sb-test-project.iam.gserviceaccount.com from http://127.0.0.1:"
            )),
            "{text}"
        );
        assert!(
            text.contains("the endpoint refused the key (401 invalid_grant)"),
            "{text}"
        );
        assert!(
            err.hint().unwrap().contains("service_account_json"),
            "{text}"
        );
        assert!(!text.contains(&key_material(&wrong)), "{text}");
        assert!(
            !text.contains("Invalid JWT"),
            "the description is in {text}"
        );
    }
    // Nothing was written with the refused key.
    let right = GcsDestination::new(settings(&bucket)).unwrap();
    assert_eq!(
        right.list("").await.unwrap_err().kind(),
        ErrorKind::NotFound,
        "the bucket was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_that_cannot_be_created_fails_the_write() {
    // Too short for a bucket name: the service refuses to create it.
    let dest = GcsDestination::new(settings("x")).unwrap();
    let err = dest
        .put("a.json", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
    assert!(
        text.starts_with(&format!(
            "gcs bucket x: cannot create the bucket in project {}: the service refused it (400): invalid bucket name",
            env("SB_TEST_GCS_PROJECT")
        )),
        "{text}"
    );
    assert!(
        err.hint().unwrap().contains("bucket names are 3 to 63"),
        "{text}"
    );
    assert!(dest.list("").await.is_err(), "no bucket was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_fails_within_seconds() {
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut s = settings_at(&endpoint, "backups");
    s.retry = RetryPolicy::default();
    let dest = GcsDestination::new(s).unwrap();
    let err = conformance::unreachable_fails_within_seconds(&dest).await;
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "gcs bucket backups: cannot read the bucket: cannot connect to {endpoint}"
        )),
        "{text}"
    );
    assert!(err.hint().unwrap().contains("endpoint"), "{text}");
}

#[test]
fn unusable_settings_are_config_errors_without_secrets() {
    let mut s = settings("b");
    s.service_account_json = Some(Secret::new("{\"private_key\": \"SECRETVALUE\""));
    let err = GcsDestination::new(s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("service_account_json is not a JSON key"),
        "{text}"
    );
    assert!(!text.contains("SECRETVALUE"), "{text}");

    let mut s = settings("b");
    s.endpoint = Some("ftp://user:pw@host".into());
    let err = GcsDestination::new(s).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("endpoint is not an http or https URL"),
        "{text}"
    );
    assert!(!text.contains("pw"), "{text}");

    let mut s = settings("b");
    s.chunk_size = CHUNK_GRANULARITY + 1;
    assert!(GcsDestination::new(s).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_mid_body_resumes_where_it_stopped() {
    use futures::StreamExt as _;
    use service_backup_testkit::{Faults, Relay, port_of};
    let endpoint = env("SB_TEST_GCS_ENDPOINT");
    let bucket = unique("reset");
    let direct = GcsDestination::new(settings_at(&endpoint, &bucket)).unwrap();
    let len = 12 * 1024 * 1024 + 777;
    let data: Vec<u8> = (0..len)
        .map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    let mut upload = direct.put_multipart("a.bin").await.unwrap();
    for piece in data.chunks(1024 * 1024) {
        upload.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    upload.complete().await.unwrap();

    let relay = Relay::raw(port_of(&endpoint));
    let through = GcsDestination::new(settings_at(&relay.url(""), &bucket)).unwrap();
    for range in [0..len as u64, 1_000_003..11_000_000] {
        let before = relay.counts().down;
        relay.set(Faults {
            reset_answers_at: Some(before + 5 * 1024 * 1024),
            ..Faults::default()
        });
        let resets = relay.counts().resets;
        let mut object = through.get_range("a.bin", range.clone()).await.unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = object.chunks.next().await {
            got.extend_from_slice(&chunk.expect("the reset was resumed"));
        }
        assert_eq!(relay.counts().resets, resets + 1, "{range:?}: never reset");
        let want =
            &data[usize::try_from(range.start).unwrap()..usize::try_from(range.end).unwrap()];
        assert!(got == want, "{range:?}: the bytes differ after the resume");
        // Not read again from the start: only what was in flight came twice.
        let relayed = relay.counts().down - before;
        let asked = range.end - range.start;
        assert!(
            relayed < asked + 2 * 1024 * 1024,
            "{range:?}: {relayed} bytes relayed for {asked}"
        );
    }
}
