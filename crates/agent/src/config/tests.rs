mod alerts;
mod attacks;
mod azure;
mod cloud_credentials;
mod every_key;
mod health;
mod immutability;
mod platform;
mod problems;
mod retention;
mod timing;
mod unknown_keys;

use std::path::{Path, PathBuf};

use service_backup_core::compression::Algorithm;

use super::{DestinationConfig, DestinationKind, S3Credentials, Secret, load, parse};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/config");
pub(super) const MSG: &str = "Provide these missing fields in your manifest.";

pub(super) fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

pub(super) fn problems(yaml: &str) -> Vec<String> {
    match parse(yaml) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().to_vec(),
    }
}

pub(super) const S3_OK: &str = "
destinations:
- type: s3
  name: primary
  config: {bucket_name: b, bucket_path: p, access_key_id: AKIA1, secret_access_key: S3SECRETVALUE}
source_folder: /var/vcap/store/backups
cron_schedule: '0 3 * * *'
";

#[test]
fn every_valid_fixture_parses() {
    let mut seen = 0;
    let entries = std::fs::read_dir(FIXTURES).expect("the configuration fixtures");
    for entry in entries {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("valid_") && name.ends_with(".yml") {
            if let Err(e) = load(&path) {
                panic!("{name}:\n{e}");
            }
            seen += 1;
        }
    }
    assert!(seen >= 6, "only {seen} valid fixtures found");
}

#[test]
fn the_optional_fields_fixture_reads_as_the_original_meant() {
    let path = fixture("valid_every_optional_field.yml");
    let config = load(&path).expect("valid");
    assert_eq!(config.destinations.len(), 1);
    let destination = &config.destinations[0];
    assert_eq!(destination.display_name(), "offsite-objects");
    let DestinationKind::S3(s3) = &destination.kind else {
        panic!("not s3: {destination:?}");
    };
    // The original's fixture has `endpoint_url: www.s3.com`: https is meant.
    assert_eq!(
        s3.endpoint_url.as_deref(),
        Some("https://objects.example.net")
    );
    assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
    assert_eq!(s3.bucket_name, "nightly-dumps");
    let S3Credentials::Static {
        secret_access_key, ..
    } = &s3.credentials
    else {
        panic!("not static: {s3:?}");
    };
    assert_eq!(secret_access_key.expose(), "fixture-s3-secret-optional");
    assert!(s3.server_side_encryption.is_none());
    assert_eq!(
        config.source_folder.as_deref(),
        Some(Path::new("/var/vcap/store/rabbitmq-dump"))
    );
    assert_eq!(
        config.source_executable.as_deref(),
        Some("/var/vcap/jobs/rabbitmq/bin/dump --all-vhosts")
    );
    assert_eq!(
        config.cleanup_executable.as_deref(),
        Some("/var/vcap/jobs/rabbitmq/bin/clear-dump")
    );
    assert_eq!(config.cron_schedule.as_deref(), Some("15 */10 * * * *"));
    assert!(config.schedule.is_some());
    assert_eq!(
        config.missing_properties_message,
        "Ask the data services team for the backup settings."
    );
    assert!(config.exit_if_in_progress);
    assert_eq!(
        config.service_identifier_executable.as_deref(),
        Some("/var/vcap/jobs/rabbitmq/bin/instance-name")
    );
    assert_eq!(config.deployment_name.as_deref(), Some("rabbitmq-staging"));
    assert!(config.add_deployment_name_to_backup_path);
    assert_eq!(
        config.ignored_keys,
        ["aws_cli_path", "azure_cli_path", "backup_user"]
    );
    assert_eq!(config.source_path.as_deref(), Some(path.as_path()));
    assert_eq!(config.compression, Algorithm::Gzip);
    assert_eq!(config.compression_level, 6);
    assert!(config.keyring.is_none() && config.api.is_none());
    let shown = format!("{config:?}");
    for secret in [
        "fixture-s3-secret-optional",
        "fixture-cc-password",
        "fixture-uaa-secret",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[test]
fn the_gcs_fixture_needs_only_the_presence_of_the_service_account() {
    let config = load(&fixture("valid_gcs_required_fields_only.yml")).expect("valid");
    let DestinationKind::Gcs(gcs) = &config.destinations[0].kind else {
        panic!("not gcs");
    };
    assert_eq!(
        gcs.service_account_json.as_ref().map(Secret::expose),
        Some("{\"placeholder\": true}")
    );
    assert_eq!(gcs.project_id, "fixture-project");
    assert!(gcs.bucket_path.is_none() && gcs.endpoint.is_none());
}

#[test]
fn the_fixture_of_every_type_reads_each_destination() {
    let config = load(&fixture("valid_every_destination_type.yml")).expect("valid");
    let kinds: Vec<(&str, String)> = config
        .destinations
        .iter()
        .map(|d| (d.kind.type_word(), d.display_name()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("s3", "objects".to_string()),
            ("azure", "blobs".to_string()),
            ("azure", "blobs-by-endpoint".to_string()),
            ("scp", "archive-host".to_string()),
            ("gcs", "google".to_string()),
            ("local", "nfs".to_string()),
        ]
    );
    let DestinationKind::Azure(azure) = &config.destinations[1].kind else {
        panic!("not azure");
    };
    assert_eq!(
        azure.blob_endpoint(),
        "https://fixtureaccount.blob.core.chinacloudapi.cn"
    );
    let DestinationKind::Scp(scp) = &config.destinations[3].kind else {
        panic!("not scp");
    };
    assert_eq!(
        (scp.port, scp.server.as_str()),
        (2222, "archive.example.net")
    );
    assert!(scp.fingerprint.is_some());
    let deployment = load(&fixture("valid_deployment_name_not_in_path.yml")).expect("valid");
    assert!(!deployment.add_deployment_name_to_backup_path);
    assert_eq!(deployment.deployment_name.as_deref(), Some("redis-shared"));
    let alerts = load(&fixture("valid_alerts_of_release_17_2.yml")).expect("valid");
    assert!(alerts.ignored_keys.is_empty());
    let n = alerts
        .alerts
        .and_then(|a| a.notifications)
        .expect("notifications");
    assert_eq!(n.uaa_url.as_deref(), Some("https://uaa.sys.example.net"));
}

#[test]
fn the_invalid_fixture_is_refused() {
    let err = load(&fixture("invalid_destinations_not_a_list.yml")).expect_err("invalid");
    assert_eq!(
        err.problems(),
        ["Invalid config - destinations must be a list of destinations, not a string."]
    );
}

#[test]
fn no_destinations_means_backups_disabled() {
    for yaml in ["", "---\n", "destinations: []\n", "destinations:\n", "{}"] {
        let config = parse(yaml).unwrap_or_else(|e| panic!("{yaml:?}: {e}"));
        assert!(!config.backups_enabled());
        assert!(config.source_folder.is_none() && config.schedule.is_none());
        assert_eq!(config.missing_properties_message, MSG);
    }
}

#[test]
fn every_destination_type_reads_with_its_defaults() {
    let yaml = "
destinations:
- type: azure
  config: {storage_account: acct, storage_access_key: AZKEY, container: c, path: p}
- type: azure
  name: private
  config: {storage_account: acct, storage_access_key: AZKEY, container: c, path: p, endpoint: 'http://127.0.0.1:10000/devstoreaccount1/'}
- type: azure
  config: {storage_account: acct, storage_access_key: AZKEY, container: c, path: p, blob_store_base_url: core.chinacloudapi.cn}
- type: scp
  config: {server: 10.0.0.5, user: backup, destination: /srv, key: SSHKEY}
- type: scp
  config: {server: h, user: u, destination: /d, key: SSHKEY, port: '2222', fingerprint: 'SHA256:abc'}
- type: local
  config: {path: /mnt/backups}
- type: S3
  config: {bucket_name: b, bucket_path: p, access_key_id: a, secret_access_key: s, endpoint_url: 'http://127.0.0.1:9000/', region: eu-central-1}
source_folder: /src
cron_schedule: '@daily'
";
    let config = parse(yaml).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = config
        .destinations
        .iter()
        .map(DestinationConfig::display_name)
        .collect();
    assert_eq!(
        names,
        ["azure", "private", "azure", "scp", "scp", "local", "s3"]
    );
    let kinds = &config.destinations;
    let DestinationKind::Azure(a) = &kinds[0].kind else {
        panic!()
    };
    assert_eq!(a.blob_endpoint(), "https://acct.blob.core.windows.net");
    let DestinationKind::Azure(a) = &kinds[1].kind else {
        panic!()
    };
    assert_eq!(a.blob_endpoint(), "http://127.0.0.1:10000/devstoreaccount1");
    let DestinationKind::Azure(a) = &kinds[2].kind else {
        panic!()
    };
    assert_eq!(a.blob_endpoint(), "https://acct.blob.core.chinacloudapi.cn");
    let DestinationKind::Scp(s) = &kinds[3].kind else {
        panic!()
    };
    assert_eq!((s.port, s.fingerprint.as_deref()), (22, None));
    let DestinationKind::Scp(s) = &kinds[4].kind else {
        panic!()
    };
    assert_eq!(
        (s.port, s.fingerprint.as_deref()),
        (2222, Some("SHA256:abc"))
    );
    let DestinationKind::Local(l) = &kinds[5].kind else {
        panic!()
    };
    assert_eq!(l.path, Path::new("/mnt/backups"));
    let DestinationKind::S3(s3) = &kinds[6].kind else {
        panic!()
    };
    assert_eq!(s3.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(s3.region.as_deref(), Some("eu-central-1"));
}

#[test]
fn new_settings_read_with_their_defaults() {
    let yaml = "
compression_level: 9
state_dir: /var/vcap/store/service-backup
instance_id: b02f4682-1
restore: {target_folder: /restore, restore_executable: /bin/restore --now}
api:
  listen: '[::1]:8443'
  bearer_tokens_file: tokens
  tls: {cert_file: /c.pem, key_file: k.pem}
exit_if_in_progress: 'yes'
";
    let config = parse(yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.compression_level, 9);
    let zstd = parse("compression: zstd\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (zstd.compression, zstd.compression_level),
        (Algorithm::Zstd, 3)
    );
    let zstd =
        parse("compression: zstd\ncompression_level: 19\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (zstd.compression, zstd.compression_level),
        (Algorithm::Zstd, 19)
    );
    let gzip = parse("compression: gzip\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (gzip.compression, gzip.compression_level),
        (Algorithm::Gzip, 6)
    );
    assert_eq!(
        config.state_dir.as_deref(),
        Some(Path::new("/var/vcap/store/service-backup"))
    );
    assert_eq!(config.instance_id.as_deref(), Some("b02f4682-1"));
    assert_eq!(
        config.restore.target_folder.as_deref(),
        Some(Path::new("/restore"))
    );
    assert_eq!(
        config.restore.restore_executable.as_deref(),
        Some("/bin/restore --now")
    );
    let api = config.api.expect("api");
    assert_eq!(api.listen, "[::1]:8443");
    assert_eq!(api.bearer_tokens_file.as_deref(), Some(Path::new("tokens")));
    let tls = api.tls.expect("tls");
    assert_eq!(
        (tls.cert_file.as_path(), tls.key_file.as_path()),
        (Path::new("/c.pem"), Path::new("k.pem"))
    );
    assert!(config.exit_if_in_progress);
}

#[test]
fn api_files_resolve_against_the_config_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("backup.yml");
    std::fs::write(
        &path,
        "api: {listen: '127.0.0.1:8443', bearer_tokens_file: tokens}\nsource_folder: rel\n",
    )
    .expect("write");
    let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.api.expect("api").bearer_tokens_file,
        Some(dir.path().join("tokens"))
    );
    // Original keys keep their meaning: relative to the working directory.
    assert_eq!(config.source_folder.as_deref(), Some(Path::new("rel")));
}

#[test]
fn a_remote_destination_is_refused_by_a_build_without_its_feature() {
    let shown = problems(S3_OK);
    if cfg!(feature = "s3") {
        assert!(shown.is_empty(), "{shown:?}");
    } else {
        assert_eq!(
            shown,
            [
                "Invalid config - s3 destination \"primary\": this build of service-backup has \
              no s3 destination."
            ]
        );
    }
}
