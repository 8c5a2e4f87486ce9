//! Immutability on S3 (Object Lock), against a moto of the test's own. moto enforces
//! Object Lock the way S3 does for what is tested here: a locked version cannot be
//! deleted (`DeleteObject` with its `VersionId` answers `AccessDenied`); a write over its
//! key adds a version and leaves the locked one as it was; a delete without a `VersionId` only
//! adds a delete marker. moto 5.2.6 drops the lock of a multipart upload: the moto of
//! `tests/servers/s3.sh` carries `tests/servers/moto-object-lock.patch`, and the first
//! test fails, saying so, on a moto without it.

mod common;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::types::{ObjectLockEnabled, ObjectLockMode};
use bytes::Bytes;
use chrono::{Duration, Utc};
use common::{KEY_ID, SECRET, block, settings};
use service_backup_core::ErrorKind;
use service_backup_core::destination::{Destination, Immutability, LockMode};
use service_backup_s3::S3Destination;
use service_backup_testkit::{moto, unique};

/// A plain client with the agent's own credentials: what an attacker on the VM holds.
fn raw_client(endpoint: &str) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(KEY_ID, SECRET, None, None, "test"))
        .build();
    Client::from_conf(config)
}

fn locked_for(days: u32) -> Immutability {
    Immutability {
        mode: LockMode::Compliance,
        days,
    }
}

/// The body of version `version` of `key`.
async fn version_body(client: &Client, bucket: &str, key: &str, version: &str) -> Vec<u8> {
    client
        .get_object()
        .bucket(bucket)
        .key(key)
        .version_id(version)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_and_manifests_are_written_locked_and_cannot_be_deleted_or_overwritten() {
    let server = moto().started();
    let endpoint = server.url("");
    let bucket = unique("locked");
    let mut s = settings(&endpoint, &bucket);
    s.immutability = Some(locked_for(1));
    let dest = S3Destination::new(&s).unwrap();
    let before = Utc::now();

    // The multipart path (an archive of 12 MiB: parts of 8 MiB) and the single PUT path.
    let archive = "pg/2026/12/06/20261206T080000Z-a-0000abcd.tar.gz.enc";
    let mut upload = dest.put_multipart(archive).await.unwrap();
    for i in 0..12 {
        upload.write(block(i)).await.unwrap();
    }
    upload.complete().await.unwrap();
    let manifest = "pg/2026/12/06/20261206T080000Z-a-0000abcd.json";
    dest.put(manifest, Bytes::from_static(b"{}\n"))
        .await
        .unwrap();

    let client = raw_client(&endpoint);
    let config = client
        .get_object_lock_configuration()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(
        config
            .object_lock_configuration()
            .and_then(|c| c.object_lock_enabled()),
        Some(&ObjectLockEnabled::Enabled),
        "the agent creates its bucket with Object Lock"
    );
    for key in [archive, manifest] {
        let head = client
            .head_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.object_lock_mode(),
            Some(&ObjectLockMode::Compliance),
            "{key} carries no lock: a moto without tests/servers/moto-object-lock.patch drops the lock of a multipart upload (tests/servers/s3.sh applies it)"
        );
        let until = head.object_lock_retain_until_date().unwrap().secs();
        let expected = (before + Duration::days(1)).timestamp();
        assert!(
            (expected - 5..=expected + 60).contains(&until),
            "{key}: retained until {until}, expected about {expected}"
        );
    }

    // The attacker, with the agent's credentials: the locked version cannot be deleted.
    let original = head_version(&client, &bucket, archive).await;
    let refused = client
        .delete_object()
        .bucket(&bucket)
        .key(archive)
        .version_id(&original)
        .send()
        .await
        .unwrap_err();
    let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&refused.into_service_error())
        .map(str::to_string);
    assert_eq!(code.as_deref(), Some("AccessDenied"));
    // Nor overwritten: a write adds a version, the locked one keeps its bytes.
    let expected: Vec<u8> = (0..12).flat_map(|i| block(i).to_vec()).collect();
    client
        .put_object()
        .bucket(&bucket)
        .key(archive)
        .body(Bytes::from_static(b"ransom note").into())
        .send()
        .await
        .unwrap();
    assert_eq!(
        version_body(&client, &bucket, archive, &original).await,
        expected
    );
    // A delete without a version only hides it behind a delete marker.
    client
        .delete_object()
        .bucket(&bucket)
        .key(archive)
        .send()
        .await
        .unwrap();
    assert_eq!(
        version_body(&client, &bucket, archive, &original).await,
        expected
    );

    // The destination's own delete (what prune does) is refused as a lock, with its date.
    let err = dest.delete(manifest).await.unwrap_err();
    let ErrorKind::Locked { until } = err.kind() else {
        panic!("not a lock: {err:?}")
    };
    let until = until.expect("the date of the lock");
    assert!(until > before + Duration::hours(23), "{until}");
    assert!(err.to_string().contains("is locked until"), "{err}");
    let err = dest.delete(archive).await.unwrap_err();
    assert!(err.locked_until().is_some(), "{err:?}");
    assert_eq!(
        version_body(&client, &bucket, archive, &original).await,
        expected
    );
}

/// The version id of the current version of `key`.
async fn head_version(client: &Client, bucket: &str, key: &str) -> String {
    client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap()
        .version_id()
        .expect("a versioned bucket")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_without_object_lock_is_refused_before_anything_is_written() {
    let server = moto().started();
    let endpoint = server.url("");
    let bucket = unique("unlocked");
    let client = raw_client(&endpoint);
    client.create_bucket().bucket(&bucket).send().await.unwrap();
    let mut s = settings(&endpoint, &bucket);
    s.immutability = Some(locked_for(3));
    let dest = S3Destination::new(&s).unwrap();

    let expected = format!(
        "s3 bucket {bucket} has no Object Lock: immutability needs a bucket created with Object Lock enabled"
    );
    let err = dest.check_immutability().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().starts_with(&expected), "{err}");
    let err = match dest.put_multipart("pg/2026/12/06/x.tar.gz").await {
        Err(e) => e,
        Ok(mut upload) => {
            let written = upload.write(block(1)).await;
            match written {
                Err(e) => e,
                Ok(()) => upload.complete().await.unwrap_err(),
            }
        }
    };
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains(&expected), "{err}");
    let err = dest
        .put("pg/2026/12/06/x.json", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&expected), "{err}");
    // Nothing partial: no object, no upload started.
    let listed = client
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert!(listed.contents().is_empty(), "{listed:?}");
    let uploads = client
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{uploads:?}");
    // Without immutability the same bucket takes backups as before.
    let plain = S3Destination::new(&settings(&endpoint, &bucket)).unwrap();
    plain.check_immutability().await.unwrap();
    plain
        .put("pg/2026/12/06/y.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
}
