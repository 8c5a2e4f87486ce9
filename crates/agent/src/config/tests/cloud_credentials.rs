//! `credentials_source`, `server_side_encryption` and `kms_key_id` of `s3`,
//! `credentials_source` and `ca_cert` of `gcs`: what they read as, and what is refused.

use super::{MSG, parse, problems};
use crate::config::{DestinationKind, S3Config, S3Credentials, ServerSideEncryption};

fn s3(settings: &str) -> Result<S3Config, Vec<String>> {
    let yaml = format!(
        "destinations:\n- type: s3\n  config: {{bucket_name: b, bucket_path: p, {settings}}}\nsource_folder: /s\ncron_schedule: '@daily'\n"
    );
    match parse(&yaml) {
        Ok(config) => match &config.destinations[0].kind {
            DestinationKind::S3(s3) => Ok(s3.clone()),
            other => panic!("not s3: {other:?}"),
        },
        Err(_) => Err(problems(&yaml)),
    }
}

#[test]
fn s3_credentials_are_static_unless_the_environment_is_asked_for() {
    let keys = s3("access_key_id: a, secret_access_key: s").unwrap();
    assert!(matches!(keys.credentials, S3Credentials::Static { .. }));
    let keys = s3("credentials_source: static, access_key_id: a, secret_access_key: s").unwrap();
    assert!(matches!(keys.credentials, S3Credentials::Static { .. }));
    let vm = s3("credentials_source: env_or_instance_profile").unwrap();
    assert!(matches!(
        vm.credentials,
        S3Credentials::EnvOrInstanceProfile
    ));
    // Static stays the default, with the original's message for missing keys.
    assert_eq!(
        s3("region: r").unwrap_err(),
        [format!(
            "Invalid config - Missing values for s3: access_key_id, secret_access_key. {MSG}"
        )]
    );
    let both = s3("credentials_source: env_or_instance_profile, secret_access_key: S3SECRETVALUE")
        .unwrap_err();
    assert_eq!(both.len(), 1, "{both:?}");
    assert!(
        both[0].contains("s3 destination 1: secret_access_key comes with credentials_source env_or_instance_profile")
            && both[0].contains("remove secret_access_key, or set credentials_source: static"),
        "{both:?}"
    );
    assert!(!both[0].contains("S3SECRETVALUE"));
    let odd = s3("credentials_source: [static]").unwrap_err();
    assert!(
        odd[0].contains("credentials_source must be static or env_or_instance_profile, not a list"),
        "{odd:?}"
    );
}

#[test]
fn s3_server_side_encryption_reads_as_sse_s3_or_sse_kms() {
    let keys = "access_key_id: a, secret_access_key: s";
    assert_eq!(s3(keys).unwrap().server_side_encryption, None);
    assert_eq!(
        s3(&format!("{keys}, server_side_encryption: AES256"))
            .unwrap()
            .server_side_encryption,
        Some(ServerSideEncryption::Aes256)
    );
    assert_eq!(
        s3(&format!("{keys}, server_side_encryption: aws:kms"))
            .unwrap()
            .server_side_encryption,
        Some(ServerSideEncryption::Kms { key_id: None })
    );
    assert_eq!(
        s3(&format!(
            "{keys}, server_side_encryption: aws:kms, kms_key_id: ' alias/backups '"
        ))
        .unwrap()
        .server_side_encryption,
        Some(ServerSideEncryption::Kms {
            key_id: Some("alias/backups".into())
        })
    );
    for (settings, expected) in [
        (
            "kms_key_id: k",
            "kms_key_id needs server_side_encryption: aws:kms",
        ),
        (
            "server_side_encryption: AES256, kms_key_id: k",
            "kms_key_id needs server_side_encryption: aws:kms, not AES256",
        ),
        (
            "server_side_encryption: kms",
            "server_side_encryption must be AES256 or aws:kms, not \"kms\"",
        ),
    ] {
        let refused = s3(&format!("{keys}, {settings}")).unwrap_err();
        assert!(
            refused.len() == 1 && refused[0].contains(expected),
            "{settings}: {refused:?}"
        );
    }
}

#[test]
fn gcs_tokens_come_from_the_key_unless_the_metadata_server_is_asked_for() {
    let gcs = |settings: &str| {
        let yaml = format!(
            "destinations:\n- type: gcs\n  config: {{project_id: p, bucket_name: b, {settings}}}\nsource_folder: /s\ncron_schedule: '@daily'\n"
        );
        match parse(&yaml) {
            Ok(config) => match &config.destinations[0].kind {
                DestinationKind::Gcs(gcs) => Ok(gcs.clone()),
                other => panic!("not gcs: {other:?}"),
            },
            Err(_) => Err(problems(&yaml)),
        }
    };
    let metadata = gcs("credentials_source: metadata").unwrap();
    assert!(metadata.service_account_json.is_none());
    let key = gcs("service_account_json: '{}'").unwrap();
    assert!(key.service_account_json.is_some());
    assert_eq!(
        gcs("endpoint: https://e").unwrap_err(),
        [format!(
            "Invalid config - Missing values for gcs: service_account_json. {MSG}"
        )]
    );
    let pem = include_str!("fixture-ca.pem");
    let with_ca = gcs(&format!("credentials_source: metadata, ca_cert: {pem:?}")).unwrap();
    assert_eq!(with_ca.ca_cert.as_deref(), Some(pem));
    // Markers around garbage were accepted before; the TLS stack's parser refuses them now.
    let garbage = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n";
    let refused = gcs(&format!(
        "credentials_source: metadata, ca_cert: {garbage:?}"
    ))
    .unwrap_err();
    assert!(
        refused[0].contains(
            "gcs destination 1: ca_cert is not a usable certificate: its PEM does not parse"
        ),
        "{refused:?}"
    );
    let refused = gcs("credentials_source: metadata, ca_cert: not-pem").unwrap_err();
    assert!(
        refused[0].contains("ca_cert must be a PEM certificate"),
        "{refused:?}"
    );
    let refused = gcs("credentials_source: vm").unwrap_err();
    assert!(
        refused[0]
            .contains("credentials_source must be service_account_json or metadata, not \"vm\""),
        "{refused:?}"
    );
}
