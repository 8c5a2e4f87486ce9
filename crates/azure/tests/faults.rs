//! Failures against a real Azurite: the server going away mid-upload, a refused commit,
//! a wrong key, a container that cannot be created, an endpoint nobody listens on. (A
//! commit naming a block that was never uploaded is tested beside the upload code.)

mod common;

use std::sync::Arc;

use bytes::Bytes;
use service_backup_azure::{AzureCredentials, AzureDestination};
use service_backup_core::ErrorKind;
use service_backup_core::destination::{Destination, RetryPolicy, conformance};
use service_backup_core::layout::Layout;
use service_backup_core::secret::Secret;

use common::{key, settings, settings_at};
use service_backup_testkit::{
    StopAt, assert_nothing_left, azurite, azurite_endpoint, backup_into, backup_plan, env,
    free_port, noisy_source, unique,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stopped_mid_upload_leaves_no_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    noisy_source(&source, 24);
    let server = azurite(&tmp.path().join("azurite")).started();
    let endpoint = azurite_endpoint(&server);
    let container = unique("stopped");
    let dest: Arc<dyn Destination> =
        Arc::new(AzureDestination::new(settings_at(&endpoint, &container)).unwrap());
    // The container exists before the stop, so that what remains after it can be listed.
    dest.put("marker.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();

    let stop = Arc::new(StopAt::new(14 * 1024 * 1024, server));
    let plan = backup_plan(&source, "vm-0");
    let layout = Layout::new("svc/prod", None);
    let outcome = backup_into(plan, "blobs", dest.clone(), &layout, stop.clone()).await;
    assert!(stop.stopped(), "the server was not stopped");
    let err = outcome.result.as_ref().unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
    assert!(
        text.contains(&format!("azure devstoreaccount1/{container}")),
        "the error does not name the container: {text}"
    );
    assert!(text.contains("cannot connect"), "{text}");
    assert!(!text.contains(&key()), "{text}");

    // Back up: neither the archive nor a manifest is there.
    stop.server().start();
    assert_nothing_left(&*dest, "svc/", &layout, &outcome.archive_key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_refused_when_the_container_was_deleted() {
    let container = unique("deleted");
    let s = settings(&container);
    let dest = AzureDestination::new(s.clone()).unwrap();
    let mut upload = dest.put_multipart("k/archive.bin").await.unwrap();
    let block = Bytes::from(vec![7u8; 1024 * 1024]);
    for _ in 0..9 {
        upload.write(block.clone()).await.unwrap();
    }
    AzureDestination::new(s.clone())
        .unwrap()
        .delete_container()
        .await
        .unwrap();
    let err = upload.complete().await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("the container {container} does not exist")),
        "{text}"
    );
    assert!(text.contains("k/archive.bin"), "{text}");
    assert_eq!(
        dest.get("k/archive.bin").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_account_key_is_refused_with_a_hint_and_no_secret() {
    let wrong = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk=";
    let mut s = settings(&unique("wrongkey"));
    s.credentials = AzureCredentials::AccessKey(Secret::new(wrong));
    let dest = AzureDestination::new(s).unwrap();
    let put = dest
        .put("a.json", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    let list = dest.list("").await.unwrap_err();
    let get = dest.get("a.json").await.unwrap_err();
    for err in [put, list, get] {
        let text = format!("{err} {err:?}");
        assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
        assert!(!err.is_temporary(), "{text}");
        assert!(text.contains("refused the access key"), "{text}");
        assert!(err.hint().unwrap().contains("storage_access_key"), "{text}");
        assert!(!text.contains(wrong) && !text.contains(&key()), "{text}");
        assert!(!text.contains("V3Jvbmd"), "part of the key in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_container_name_cannot_be_created() {
    let s = settings("Not_A_Valid_Container");
    let dest = AzureDestination::new(s).unwrap();
    let err = dest
        .put("a.json", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
    assert!(
        text.contains("cannot create the container")
            && text.contains("\"Not_A_Valid_Container\" is not valid"),
        "{text}"
    );
    assert!(err.hint().unwrap().contains("lowercase"), "{text}");
    assert!(!text.contains(&key()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_fails_within_seconds() {
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}/{}", env("SB_TEST_AZURE_ACCOUNT"));
    let mut s = settings_at(&endpoint, "backups");
    s.retry = RetryPolicy::default();
    let dest = AzureDestination::new(s).unwrap();
    let err = conformance::unreachable_fails_within_seconds(&dest).await;
    let text = err.to_string();
    assert!(
        text.contains(&format!("cannot connect to {endpoint}")),
        "{text}"
    );
    assert!(err.hint().unwrap().contains("endpoint"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_error_answer_is_read_only_in_part() {
    let (port, sent) = service_backup_testkit::endless_error_server();
    let endpoint = format!("http://127.0.0.1:{port}/{}", env("SB_TEST_AZURE_ACCOUNT"));
    let dest = AzureDestination::new(settings_at(&endpoint, "hostile")).unwrap();
    let started = std::time::Instant::now();
    let err = dest.list("").await.unwrap_err();
    let took = started.elapsed();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Destination, "{text}");
    // Without a bound the SDK collects the 2 GB announced.
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    assert!(text.len() < 1000, "{} characters: {text:.200}", text.len());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let accepted = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(accepted < 64 * 1024 * 1024, "{accepted} bytes accepted");
}
