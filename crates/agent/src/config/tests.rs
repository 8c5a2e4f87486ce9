use std::path::{Path, PathBuf};

use super::{DestinationKind, load, parse};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/original-release"
);
const MSG: &str = "Provide these missing fields in your manifest.";

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

fn problems(yaml: &str) -> Vec<String> {
    match parse(yaml) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().to_vec(),
    }
}

const S3_OK: &str = "
destinations:
- type: s3
  name: primary
  config: {bucket_name: b, bucket_path: p, access_key_id: AKIA1, secret_access_key: S3SECRETVALUE}
source_folder: /var/vcap/store/backups
cron_schedule: '0 3 * * *'
";

#[test]
fn every_valid_fixture_of_the_original_parses() {
    let mut seen = 0;
    let entries = std::fs::read_dir(FIXTURES).expect("shared/ fixtures beside the repository");
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
    assert!(seen >= 4, "only {seen} valid fixtures found");
}

#[test]
fn the_optional_fields_fixture_reads_as_the_original_meant() {
    let path = fixture("valid_config_with_optional_fields.yml");
    let config = load(&path).expect("valid");
    assert_eq!(config.destinations.len(), 1);
    let destination = &config.destinations[0];
    assert_eq!(destination.display_name(), "s3_destination");
    let DestinationKind::S3(s3) = &destination.kind else {
        panic!("not s3: {destination:?}");
    };
    assert_eq!(s3.endpoint_url.as_deref(), Some("https://www.s3.com"));
    assert_eq!(s3.bucket_name, "a_bucket");
    assert_eq!(
        s3.secret_access_key.expose(),
        "ASCDMIACDNI@UD937e9237aSCDAS"
    );
    assert_eq!(config.source_folder.as_deref(), Some(Path::new(".")));
    assert_eq!(config.source_executable.as_deref(), Some("ls"));
    assert_eq!(config.cron_schedule.as_deref(), Some("*/5 * * * * *"));
    assert!(config.schedule.is_some());
    assert_eq!(config.missing_properties_message, "custom message");
    assert!(config.exit_if_in_progress);
    assert_eq!(
        config.service_identifier_executable.as_deref(),
        Some("whoami")
    );
    assert_eq!(config.deployment_name.as_deref(), Some("deployment-name"));
    assert!(config.add_deployment_name_to_backup_path);
    assert_eq!(config.ignored_keys, ["aws_cli_path", "alerts"]);
    assert_eq!(config.source_path.as_deref(), Some(path.as_path()));
    assert_eq!(config.compression_level, 6);
    assert!(config.keyring.is_none() && config.api.is_none());
    let shown = format!("{config:?}");
    assert!(!shown.contains("ASCDMIACDNI@UD937e9237aSCDAS"), "{shown}");
    assert!(!shown.contains("password"), "alerts are not kept: {shown}");
}

#[test]
fn the_gcs_fixture_needs_only_the_presence_of_the_service_account() {
    let config = load(&fixture("valid_gcs_config_with_required_fields.yml")).expect("valid");
    let DestinationKind::Gcs(gcs) = &config.destinations[0].kind else {
        panic!("not gcs");
    };
    assert_eq!(
        gcs.service_account_json.expose().trim(),
        "{\"key\":\"value\"}"
    );
    assert_eq!(gcs.project_id, "my_google_project");
    assert!(gcs.bucket_path.is_none());
}

#[test]
fn the_invalid_fixture_is_refused() {
    let err = load(&fixture("invalid_config.yml")).expect_err("invalid");
    assert_eq!(
        err.problems(),
        [format!(
            "Invalid config - destinations must be a list of destinations, not a string. {MSG}"
        )]
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
        .map(|d| d.display_name())
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
    assert_eq!(api.bearer_tokens_file, Path::new("tokens"));
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
        dir.path().join("tokens")
    );
    // Original keys keep their meaning: relative to the working directory.
    assert_eq!(config.source_folder.as_deref(), Some(Path::new("rel")));
}

#[test]
fn bad_configs_give_the_expected_lines() {
    let with_s3 = |extra: &str| format!("{S3_OK}{extra}");
    let table: Vec<(String, Vec<String>)> = vec![
        (
            "destinations:\n- type: s3\n  config: {bucket_name: b, access_key_id: a, secret_access_key: s}\n\
             source_folder: /s\ncron_schedule: '@daily'\nmissing_properties_message: custom message\n"
                .into(),
            vec!["Invalid config - Missing values for s3: bucket_path. custom message".into()],
        ),
        (
            "destinations:\n- type: ftp\n  config: {}\nsource_folder: /s\ncron_schedule: '@daily'\n".into(),
            vec![format!("Invalid config - Unknown destination type: ftp. {MSG}")],
        ),
        (
            "destinations:\n- type: local\n  config: {path: /x}\n".into(),
            vec![format!(
                "Invalid config - Missing values for service_backup: source_folder, cron_schedule. {MSG}"
            )],
        ),
        (
            "destinations:\n- type: local\n  config: {path: /x}\nsource_folder: ''\ncron_schedule: '@daily'\n".into(),
            vec![format!("Invalid config - Missing values for service_backup: source_folder. {MSG}")],
        ),
        (
            "destinations:\n- type: azure\n".into(),
            vec![
                format!("Invalid config - Missing values for azure: storage_account, storage_access_key, container, path. {MSG}"),
                format!("Invalid config - Missing values for service_backup: source_folder, cron_schedule. {MSG}"),
            ],
        ),
        (
            "destinations:\n- type: scp\n  config: {server: s, key: k}\nsource_folder: /s\ncron_schedule: '@daily'\n".into(),
            vec![format!("Invalid config - Missing values for scp: user, destination. {MSG}")],
        ),
        (
            "destinations:\n- type: gcs\n  config: {bucket_name: b}\nsource_folder: /s\ncron_schedule: '@daily'\n".into(),
            vec![format!("Invalid config - Missing values for gcs: service_account_json, project_id. {MSG}")],
        ),
        (
            "destinations:\n- config: {path: /x}\nsource_folder: /s\ncron_schedule: '@daily'\n".into(),
            vec![format!("Invalid config - destination 1 has no type (use s3, azure, scp, gcs or local). {MSG}")],
        ),
        (
            "destinations:\n- local\nsource_folder: /s\ncron_schedule: '@daily'\n".into(),
            vec![format!("Invalid config - destination 1 must be a mapping with type and config, not a string. {MSG}")],
        ),
        (
            "destinations:\n- type: local\n  config: /x\nsource_folder: /s\ncron_schedule: '@daily'\n".into(),
            vec![format!("Invalid config - local destination 1: config must be a mapping of settings, not a string. {MSG}")],
        ),
        (
            with_s3("cron_schedule: '61 * * * *'\n").replace("cron_schedule: '0 3 * * *'\n", ""),
            vec![format!(
                "Invalid config - cron_schedule \"61 * * * *\" is not a valid schedule: minute field \"61\": 61 is above the maximum 59. {MSG}"
            )],
        ),
        (
            with_s3("compression_level: 12\n"),
            vec![format!("Invalid config - compression_level must be a whole number from 1 to 9, not 12. {MSG}")],
        ),
        (
            with_s3("compression_level: fast\n"),
            vec![format!("Invalid config - compression_level must be a whole number from 1 to 9, not \"fast\". {MSG}")],
        ),
        (
            "api: {tls: {cert_file: c}}\n".into(),
            vec![
                format!("Invalid config - Missing values for api: listen, bearer_tokens_file. {MSG}"),
                format!("Invalid config - Missing values for api.tls: key_file. {MSG}"),
            ],
        ),
        (
            "api: {listen: 8443, bearer_tokens_file: t}\n".into(),
            vec![format!("Invalid config - api.listen must be an address and port such as 127.0.0.1:8443, not \"8443\". {MSG}")],
        ),
        (
            "exit_if_in_progress: maybe\n".into(),
            vec![format!("Invalid config - exit_if_in_progress must be true or false, not \"maybe\". {MSG}")],
        ),
        (
            "add_deployment_name_to_backup_path: true\n".into(),
            vec![format!("Invalid config - add_deployment_name_to_backup_path is true but deployment_name is not set. {MSG}")],
        ),
        (
            "instance_id: a/b\n".into(),
            vec![format!("Invalid config - instance_id \"a/b\" may contain only letters, digits, '.', '_' and '-' (at most 128). {MSG}")],
        ),
        (
            "source_folder: [a, b]\nrestore: yes\n".into(),
            vec![
                format!("Invalid config - source_folder must be a string, not a list. {MSG}"),
                format!("Invalid config - restore must be a mapping of settings, not a string. {MSG}"),
            ],
        ),
        (
            "destinations:\n- type: scp\n  name: box\n  config: {server: s, user: u, destination: /d, key: k, port: 70000}\nsource_folder: /s\ncron_schedule: '@daily'\n".into(),
            vec![format!("Invalid config - scp destination \"box\": port must be a number from 1 to 65535, not 70000. {MSG}")],
        ),
        (
            "destinations:\n- type: s3\n  config: {bucket_name: b, bucket_path: p, access_key_id: a, secret_access_key: s, endpoint_url: 'ftp://x'}\nsource_folder: /s\ncron_schedule: '@daily'\n".into(),
            vec![format!("Invalid config - s3 destination 1: endpoint_url must be an http:// or https:// URL. {MSG}")],
        ),
        (
            "destinations:\n- {type: local, name: a, config: {path: /x}}\n- {type: local, name: a, config: {path: /y}}\nsource_folder: /s\ncron_schedule: '@daily'\n".into(),
            vec![format!("Invalid config - two destinations are named \"a\"; give each a different name. {MSG}")],
        ),
        (
            "- just\n- a list\n".into(),
            vec![format!("Invalid config - the configuration must be a mapping of settings, not a list. {MSG}")],
        ),
        (
            "missing_properties_message: [x]\n".into(),
            vec![format!("Invalid config - missing_properties_message must be a string, not a list. {MSG}")],
        ),
    ];
    for (yaml, want) in table {
        assert_eq!(problems(&yaml), want, "{yaml}");
    }
}

#[test]
fn malformed_yaml_says_where() {
    let got = problems("destinations:\n  - type: s3\n config: x\n");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("Invalid config - the file is not valid YAML: "),
        "{}",
        got[0]
    );
    assert!(got[0].contains("line 3 column"), "{}", got[0]);
    assert!(got[0].ends_with(MSG), "{}", got[0]);
}

#[test]
fn many_problems_are_listed_together() {
    let yaml = "
destinations:
- type: s3
  config: {bucket_name: b}
- type: ftp
- config: {}
- type: local
  config: {path: /x}
cron_schedule: 'every day'
compression_level: 0
encryption: {}
api: {listen: ':80'}
missing_properties_message: Fix the manifest.
";
    let got = problems(yaml);
    let want = [
        "Missing values for s3: bucket_path, access_key_id, secret_access_key",
        "Unknown destination type: ftp",
        "destination 3 has no type (use s3, azure, scp, gcs or local)",
        "Missing values for service_backup: source_folder",
        "cron_schedule \"every day\" is not a valid schedule: expected 5 or 6 fields, found 2",
        "encryption needs key_file (a key file written by `service-backup keygen`) or key (its base64 text)",
        "compression_level must be a whole number from 1 to 9, not 0",
        "Missing values for api: bearer_tokens_file",
        "api.listen must be an address and port such as 127.0.0.1:8443, not \":80\"",
    ]
    .map(|p| format!("Invalid config - {p}. Fix the manifest."));
    assert_eq!(got, want);
}

#[test]
fn secrets_never_appear_in_debug_or_errors() {
    let secrets = [
        "S3SECRETVALUE",
        "AZSECRETVALUE",
        "SSHSECRETVALUE",
        "GCSSECRETVALUE",
    ];
    let good = "
destinations:
- {type: s3, config: {bucket_name: b, bucket_path: p, access_key_id: a, secret_access_key: S3SECRETVALUE}}
- {type: azure, config: {storage_account: a, storage_access_key: AZSECRETVALUE, container: c, path: p}}
- {type: scp, config: {server: s, user: u, destination: /d, key: SSHSECRETVALUE}}
- {type: gcs, config: {service_account_json: GCSSECRETVALUE, project_id: p, bucket_name: b}}
source_folder: /s
cron_schedule: '@hourly'
";
    let config = parse(good).unwrap_or_else(|e| panic!("{e}"));
    let shown = format!("{config:?} {:#?}", config);
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    // The same secrets in configs with problems everywhere around them.
    let bad = good
        .replace("bucket_path: p,", "")
        .replace("container: c,", "")
        .replace("user: u,", "port: [SSHSECRETVALUE],")
        .replace("project_id: p,", "endpoint: 'gopher://GCSSECRETVALUE',")
        .replace("cron_schedule: '@hourly'", "cron_schedule: '@every'")
        + "encryption: {key: AZSECRETVALUE}\nalerts: {config: {cloud_controller: {password: [S3SECRETVALUE]}}}\n";
    let err = parse(&bad).expect_err("invalid");
    assert!(err.problems().len() >= 6, "{err}");
    let text = format!("{err} {err:?}");
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    // A secret of the wrong shape is named, not shown.
    let err = parse("destinations:\n- {type: s3, config: {secret_access_key: [S3SECRETVALUE]}}\n")
        .expect_err("invalid");
    assert!(!err.to_string().contains("S3SECRETVALUE"), "{err}");
    assert!(
        err.to_string()
            .contains("secret_access_key must be a string, not a list"),
        "{err}"
    );
    // YAML syntax errors do not quote what they found.
    let err = parse("secret_access_key: \"S3SECRETVALUE\n  - x: [").expect_err("invalid");
    assert!(!err.to_string().contains("S3SECRETVALUE"), "{err}");
}

#[test]
fn unreadable_config_files_are_one_problem() {
    let err = load(Path::new("/nonexistent/backup.yml")).expect_err("missing");
    assert_eq!(
        err.problems(),
        [format!(
            "Invalid config - cannot read config file /nonexistent/backup.yml: No such file or directory. {MSG}"
        )]
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("binary.yml");
    std::fs::write(&path, [0xff, 0xfe, 0x00]).expect("write");
    let err = load(&path).expect_err("binary");
    assert!(err.to_string().contains("it is not UTF-8 text"), "{err}");
}

#[test]
fn odd_documents_never_panic() {
    for yaml in [
        "!!binary aGVsbG8=",
        "? [a]\n: b\n",
        "destinations: {a: b}",
        "destinations: [[], null, 3, {type: null}, {type: [s3]}, {type: local, config: null}]",
        "&a [*a]",
        "a: &x b\nc: *x\n",
        "destinations: !custom [x]",
        "compression_level: 1.5\nencryption: {previous_key_files: x}",
        "api: {listen: '[::1:80', bearer_tokens_file: t, tls: 3}",
        "\u{feff}source_folder: /x",
        "---\na: 1\n---\nb: 2\n",
    ] {
        let _ = parse(yaml);
    }
}
