//! The BOSH job (`jobs/service-backup/`) rendered as the director renders it, by
//! `tests/bosh/render.rb` (ERB, `p`, `if_p`, `spec`, spec defaults merged with the
//! manifest's properties): every rendered config must pass `service-backup validate` and
//! every rendered script `bash -n`; a manifest missing a required property must fail to
//! render with the original's message and write nothing. Ruby comes from
//! `tests/servers/ruby.sh` (`SB_TEST_RUBY`). `bosh_vm.rs` runs the rendered scripts.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use common::bosh::{
    BLOB, KEY, MESSAGE, expect_refused, install_package, job_dir, render, render_with, repo,
};
use common::config_fixtures;
use serde_norway::{Mapping, Value};

fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).unwrap()
}

fn get<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(value, |v, key| v.get(key).unwrap_or(&Value::Null))
}

/// A self-signed certificate and its key, PEM.
fn certificate(dir: &Path) -> (String, String) {
    let (cert, key) = common::self_signed_certificate(dir);
    (
        std::fs::read_to_string(cert).unwrap(),
        std::fs::read_to_string(key).unwrap(),
    )
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// Every property the original job ever accepted, both manifest shapes, with its default:
/// the project's own list, `tests/fixtures/job/original-properties.yml`.
fn original_properties() -> Mapping {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/job/original-properties.yml");
    let groups = yaml(&std::fs::read_to_string(path).unwrap());
    let mut all = Mapping::new();
    for (_, group) in groups.as_mapping().expect("groups of properties") {
        for (name, definition) in group.as_mapping().expect("properties") {
            assert!(
                all.insert(name.clone(), definition.clone()).is_none(),
                "{name:?} twice"
            );
        }
    }
    all
}

#[test]
fn the_spec_keeps_every_property_of_the_original_with_its_default() {
    let ours = yaml(&std::fs::read_to_string(job_dir().join("spec")).unwrap());
    let ours = ours["properties"].as_mapping().expect("our properties");
    let original = original_properties();
    // 24 of the list-shape releases, 15 of the 2016 single destination.
    assert_eq!(original.len(), 39, "the original job's properties");
    for (name, definition) in &original {
        let ours = ours
            .get(name)
            .unwrap_or_else(|| panic!("property {name:?} of the original is missing"));
        assert_eq!(
            ours.get("default"),
            definition.get("default"),
            "default of {name:?}"
        );
        let description = ours["description"].as_str().unwrap_or_default();
        assert!(
            !description.trim().is_empty(),
            "{name:?} has no description"
        );
    }
}

#[test]
fn a_full_manifest_renders_a_config_that_validate_accepts() {
    let tls = tempfile::tempdir().unwrap();
    let (cert, tls_key) = certificate(tls.path());
    let manifest = format!(
        r#"---
name: redis-prod
instance_groups:
- name: redis-server
  jobs:
  - name: redis-server
    release: redis
  - name: service-backup
    release: service-backup
    properties:
      service-backup:
        destinations:
        - type: s3
          name: primary
          config:
            bucket_name: my-bucket
            bucket_path: redis/prod
            access_key_id: AKIAEXAMPLE
            secret_access_key: S3-SECRET-VALUE
            endpoint_url: https://s3.example.internal
            region: eu-central-1
        - type: azure
          config: {{storage_account: acct, storage_access_key: AZURE-SECRET-VALUE, container: backups, path: redis/prod}}
        - type: scp
          config:
            user: backup
            server: 10.0.0.5
            destination: /srv/backups
            port: 2222
            fingerprint: "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            key: |
              -----BEGIN OPENSSH PRIVATE KEY-----
              SCP-SECRET-VALUE
              -----END OPENSSH PRIVATE KEY-----
        - type: gcs
          config:
            service_account_json: '{{"type": "service_account", "private_key": "GCS-SECRET-VALUE"}}'
            project_id: my-project
            bucket_name: gcs-bucket
        - type: local
          name: nfs
          config: {{path: /var/vcap/store/nfs}}
        source_folder: /var/vcap/store/redis-backups
        source_executable: /var/vcap/jobs/redis-server/bin/dump --fast
        cleanup_executable: /var/vcap/jobs/redis-server/bin/cleanup
        cron_schedule: "*/30 * * * * *"
        backup_user: redis
        missing_properties_message: {MESSAGE}
        service_identifier_executable: /var/vcap/jobs/redis-server/bin/instance-id
        exit_if_in_progress: true
        add_deployment_name_to_backup_path: true
        aws_cli_path: /opt/aws
        alerts:
          product_name: Redis
          config:
            cloud_controller: {{url: https://api.example.com, user: admin, password: CC-SECRET}}
            timeout_seconds: 42
        encryption:
          key: {KEY}
          previous_key_files: []
        compression: zstd
        compression_level: 3
        state_dir: /var/vcap/store/service-backup-state
        instance_id: redis-0
        retention: {{keep_last: 14, keep_daily: 7}}
        restore:
          target_folder: /var/vcap/store/restore
          restore_executable: /var/vcap/jobs/redis-server/bin/restore
        verify_schedule: "0 5 * * 0"
        restore_check_executable: /var/vcap/jobs/redis-server/bin/check-restored --ping
        api:
          listen: 0.0.0.0:8443
          bearer_tokens: [TOKEN-ONE-VALUE, TOKEN-TWO-VALUE]
          tls:
            certificate: |
{cert}            private_key: |
{tls_key}        drain_timeout_seconds: 120
"#,
        cert = indent(&cert, 14),
        tls_key = indent(&tls_key, 14),
    );
    let rendered = render(&manifest);
    rendered.expect_rendered();

    let validate = rendered.validate();
    validate.expect(0);
    assert!(
        validate.stdout.contains("valid; 5 destination(s)"),
        "{}",
        validate.stdout
    );
    assert!(!validate.stdout.contains("warning"), "{}", validate.stdout);

    let config = rendered.config();
    assert_eq!(get(&config, "deployment_name"), "redis-prod");
    assert_eq!(
        get(&config, "add_deployment_name_to_backup_path").as_bool(),
        Some(true)
    );
    assert_eq!(get(&config, "exit_if_in_progress").as_bool(), Some(true));
    assert_eq!(get(&config, "missing_properties_message"), MESSAGE);
    assert_eq!(get(&config, "compression"), "zstd");
    assert_eq!(get(&config, "compression_level"), 3);
    assert_eq!(
        get(&config, "state_dir"),
        "/var/vcap/store/service-backup-state"
    );
    assert_eq!(get(&config, "retention.keep_last"), 14);
    assert_eq!(
        get(&config, "instance_id"),
        "redis-0",
        "an explicit instance_id wins"
    );
    assert_eq!(get(&config, "verify_schedule"), "0 5 * * 0");
    assert_eq!(
        get(&config, "restore_check_executable"),
        "/var/vcap/jobs/redis-server/bin/check-restored --ping"
    );
    assert_eq!(
        get(&config, "restore.target_folder"),
        "/var/vcap/store/restore"
    );
    assert_eq!(get(&config, "encryption.key_file"), "backup.key");
    assert_eq!(get(&config, "api.bearer_tokens_file"), "api-tokens");
    assert_eq!(get(&config, "api.tls.key_file"), "api-tls.key");
    // The a9s namespace's parts from BOSH's spec, where it has them.
    assert_eq!(
        get(&config, "api.metrics.internal_instance_name"),
        "redis-prod"
    );
    assert_eq!(
        get(&config, "api.metrics.internal_service_name"),
        "redis-server"
    );
    assert_eq!(get(&config, "api.metrics.node"), "redis-server-0");
    assert!(get(&config, "api.metrics.org_guid").is_null());
    assert_eq!(
        config["destinations"][2]["config"]["port"], 2222,
        "destination settings pass through"
    );
    for dropped in ["aws_cli_path", "alerts", "backup_user"] {
        assert!(config.get(dropped).is_none(), "{dropped} was rendered");
    }

    // Secrets of the job's own live in their own files, not in the config.
    assert_eq!(rendered.file("config/backup.key").trim(), KEY);
    assert_eq!(
        rendered.file("config/api-tokens"),
        "TOKEN-ONE-VALUE\nTOKEN-TWO-VALUE\n"
    );
    assert_eq!(rendered.file("config/api-tls.crt").trim(), cert.trim());
    assert_eq!(rendered.file("config/api-tls.key").trim(), tls_key.trim());
    let text = rendered.file("config/backup.yml");
    for secret in [KEY, "TOKEN-ONE-VALUE", tls_key.lines().nth(1).unwrap()] {
        assert!(!text.contains(secret), "{secret} in backup.yml");
    }
    // ...and each of those files is made 0600 by the scripts before the agent reads it.
    let helpers = rendered.file("bin/helpers.sh");
    assert!(helpers.contains("BACKUP_USER=redis\n"), "{helpers}");
    assert!(helpers.contains("DRAIN_TIMEOUT=120\n"), "{helpers}");
    assert!(
        helpers.contains("SECRET_FILES=(backup.yml backup.key api-tokens api-tls.key)"),
        "{helpers}"
    );
    assert_eq!(rendered.check_scripts(), 11);
    for script in ["ctl", "manual-backup", "restore", "verify"] {
        let text = rendered.file(&format!("bin/{script}"));
        assert!(
            text.contains("prepare\n"),
            "bin/{script} does not secure the files"
        );
    }
}

#[test]
fn destinations_without_keys_on_the_vm_render_and_validate() {
    let rendered = render(
        "service-backup:\n  destinations:\n  - type: s3\n    config: {bucket_name: b, bucket_path: p, \
         credentials_source: env_or_instance_profile, server_side_encryption: aws:kms, \
         kms_key_id: alias/backups}\n  - type: gcs\n    config: {credentials_source: metadata, \
         project_id: p, bucket_name: b}\n  source_folder: /var/vcap/store/dump\n  \
         cron_schedule: \"0 3 * * *\"\n",
    );
    rendered.expect_rendered();
    rendered.validate().expect(0);
    let config = rendered.config();
    let destinations = get(&config, "destinations");
    assert_eq!(
        destinations[0]["config"]["credentials_source"],
        "env_or_instance_profile"
    );
    assert_eq!(destinations[1]["config"]["credentials_source"], "metadata");
}

#[test]
fn a_minimal_manifest_renders_with_the_spec_defaults() {
    let rendered = render(
        "service-backup:\n  destinations:\n  - type: s3\n    config: {bucket_name: b, bucket_path: p, \
         access_key_id: a, secret_access_key: s}\n  source_folder: /var/vcap/store/dump\n  \
         cron_schedule: \"0 3 * * *\"\n",
    );
    rendered.expect_rendered();
    let validate = rendered.validate();
    validate.expect(0);
    assert!(
        validate.stdout.contains("warning: no encryption key"),
        "{}",
        validate.stdout
    );
    let config = rendered.config();
    assert_eq!(get(&config, "deployment_name"), "test-deployment");
    assert_eq!(get(&config, "exit_if_in_progress").as_bool(), Some(false));
    assert_eq!(
        get(&config, "add_deployment_name_to_backup_path").as_bool(),
        Some(false)
    );
    assert_eq!(
        get(&config, "missing_properties_message"),
        "Provide these missing fields in your manifest."
    );
    assert_eq!(get(&config, "state_dir"), "/var/vcap/store/service-backup");
    // The BOSH instance's id, which a recreated VM keeps (its host name changes).
    assert_eq!(
        get(&config, "instance_id"),
        "b02f4682-6d9e-4c3b-a8d4-7f3c2b1e9a50"
    );
    // gzip at its own default level, 6.
    assert_eq!(get(&config, "compression"), "gzip");
    for absent in [
        "compression_level",
        "encryption",
        "api",
        "restore",
        "retention",
        "cleanup_executable",
    ] {
        assert!(config.get(absent).is_none(), "{absent} was rendered");
    }
    assert!(
        rendered
            .file("bin/helpers.sh")
            .contains("BACKUP_USER=vcap\n")
    );
    assert_eq!(rendered.check_scripts(), 11);
}

#[test]
fn catch_up_the_backup_window_and_the_full_refresh_render_and_the_agent_checks_them() {
    let manifest = |extra: &str| {
        format!(
            "service-backup:\n  destinations:\n  - type: s3\n    config: {{bucket_name: b, bucket_path: p, \
             access_key_id: a, secret_access_key: s}}\n  source_folder: /var/vcap/store/dump\n  \
             cron_schedule: \"0 3 * * *\"\n{extra}"
        )
    };
    // The spec's default: catch-up on, no spread.
    let rendered = render(&manifest(""));
    rendered.expect_rendered();
    let config = rendered.config();
    assert_eq!(get(&config, "catch_up").as_bool(), Some(true));
    assert!(config.get("cron_jitter").is_none());
    assert!(config.get("backup_window").is_none());
    assert!(config.get("catalog_full_refresh").is_none());

    let rendered = render(&manifest("  catch_up: false\n  cron_jitter: 30m\n"));
    rendered.expect_rendered();
    rendered.validate().expect(0);
    let config = rendered.config();
    assert_eq!(get(&config, "catch_up").as_bool(), Some(false));
    assert_eq!(get(&config, "cron_jitter"), "30m");

    let rendered = render(&manifest("  backup_window: \"22:00-06:00\"\n"));
    rendered.expect_rendered();
    rendered.validate().expect(0);
    assert_eq!(get(&rendered.config(), "backup_window"), "22:00-06:00");

    // The catalog's full listings: rendered as given, and checked by the agent.
    let rendered = render(&manifest("  catalog_full_refresh: 24h\n"));
    rendered.expect_rendered();
    rendered.validate().expect(0);
    assert_eq!(get(&rendered.config(), "catalog_full_refresh"), "24h");
    let rendered = render(&manifest("  catalog_full_refresh: 1m\n"));
    rendered.expect_rendered();
    let refused = rendered.validate();
    refused.expect(2);
    assert!(
        refused
            .stderr
            .contains("catalog_full_refresh \"1m\" must be from 5m to 168h"),
        "{}",
        refused.all()
    );

    // Both at once: the agent refuses the configuration with its own message.
    let rendered = render(&manifest(
        "  cron_jitter: 30m\n  backup_window: \"22:00-06:00\"\n",
    ));
    rendered.expect_rendered();
    let refused = rendered.validate();
    refused.expect(2);
    assert!(
        refused
            .stderr
            .contains("Invalid config - cron_jitter and backup_window are both set: keep one"),
        "{}",
        refused.all()
    );
}

#[test]
fn no_destinations_renders_a_config_with_backups_disabled() {
    let rendered = render("{}\n");
    rendered.expect_rendered();
    let validate = rendered.validate();
    validate.expect(0);
    assert!(
        validate.stdout.contains("backups are disabled"),
        "{}",
        validate.stdout
    );
    assert_eq!(
        get(&rendered.config(), "destinations"),
        &Value::Sequence(vec![])
    );
    assert_eq!(rendered.check_scripts(), 11);
}

/// Properties with one destination of `kind` whose settings lack `drop`, with the custom
/// message.
fn without(kind: &str, drop: &str) -> String {
    let settings: &[(&str, &str)] = match kind {
        "s3" => &[
            ("access_key_id", "AKIA"),
            ("secret_access_key", "S3-SECRET"),
            ("bucket_name", "b"),
            ("bucket_path", "p"),
        ],
        "azure" => &[
            ("storage_account", "acct"),
            ("storage_access_key", "AZ-SECRET"),
            ("container", "c"),
            ("path", "p"),
        ],
        "scp" => &[
            ("server", "10.0.0.5"),
            ("user", "backup"),
            ("destination", "/srv"),
            ("key", "SCP-SECRET"),
        ],
        "gcs" => &[
            ("service_account_json", "GCS-SECRET"),
            ("project_id", "p"),
            ("bucket_name", "b"),
        ],
        "local" => &[("path", "/mnt/backups")],
        other => panic!("no such type {other}"),
    };
    let mut config = Mapping::new();
    for (key, value) in settings {
        if *key != drop {
            config.insert((*key).into(), (*value).into());
        }
    }
    let mut destination = Mapping::new();
    destination.insert("type".into(), kind.into());
    destination.insert("config".into(), Value::Mapping(config));
    let mut properties = Mapping::new();
    properties.insert(
        "destinations".into(),
        Value::Sequence(vec![Value::Mapping(destination)]),
    );
    properties.insert("source_folder".into(), "/var/vcap/store/dump".into());
    properties.insert("cron_schedule".into(), "0 3 * * *".into());
    properties.insert("missing_properties_message".into(), MESSAGE.into());
    let mut top = Mapping::new();
    top.insert("service-backup".into(), Value::Mapping(properties));
    serde_norway::to_string(&top).unwrap()
}

#[test]
fn a_manifest_missing_a_required_property_fails_to_render_with_the_message() {
    let required: &[(&str, &[&str])] = &[
        (
            "s3",
            &[
                "access_key_id",
                "secret_access_key",
                "bucket_name",
                "bucket_path",
            ],
        ),
        (
            "azure",
            &["storage_account", "storage_access_key", "container", "path"],
        ),
        ("scp", &["server", "user", "destination", "key"]),
        (
            "gcs",
            &["service_account_json", "project_id", "bucket_name"],
        ),
        ("local", &["path"]),
    ];
    let mut cases = 0;
    for (kind, keys) in required {
        // Complete, each type renders and validates.
        let complete = render(&without(kind, ""));
        complete.expect_rendered();
        complete.validate().expect(0);
        for key in *keys {
            expect_refused(
                &without(kind, key),
                &format!("Missing values for {kind}: {key}"),
            );
            cases += 1;
        }
    }
    assert_eq!(cases, 16);

    let base = without("local", "");
    expect_refused(
        &base.replace("  source_folder: /var/vcap/store/dump\n", ""),
        "Missing values for service_backup: source_folder",
    );
    expect_refused(
        &base.replace("  cron_schedule: 0 3 * * *\n", ""),
        "Missing values for service_backup: cron_schedule",
    );
    expect_refused(
        &base
            .replace("  source_folder: /var/vcap/store/dump\n", "")
            .replace("  cron_schedule: 0 3 * * *\n", ""),
        "Missing values for service_backup: source_folder, cron_schedule",
    );
    expect_refused(
        &base.replace("type: local", "type: ftp"),
        "Unknown destination type: ftp",
    );
    expect_refused(
        &format!(
            "service-backup:\n  destinations:\n  - type: s3\n  missing_properties_message: {MESSAGE}\n"
        ),
        "Missing config for s3",
    );
    // Every problem at once.
    let two = render(&format!(
        "service-backup:\n  destinations:\n  - {{type: s3, config: {{bucket_name: b, access_key_id: a, \
         secret_access_key: S3-SECRET}}}}\n  - {{type: ftp, config: {{}}}}\n  \
         missing_properties_message: {MESSAGE}\n"
    ));
    assert_eq!(two.code, 1);
    for line in [
        "Invalid config - Missing values for s3: bucket_path.",
        "Invalid config - Unknown destination type: ftp.",
        "Invalid config - Missing values for service_backup: source_folder, cron_schedule.",
    ] {
        assert!(two.stderr.contains(line), "{line:?} in {}", two.stderr);
    }
}

#[test]
fn a_bad_key_or_api_without_tokens_fails_to_render_without_quoting_secrets() {
    let base = without("local", "");
    expect_refused(
        &base.replace(
            "service-backup:\n",
            "service-backup:\n  encryption: {key: c2hvcnQtU0VDUkVU}\n",
        ),
        "service-backup.encryption.key is 12 bytes long, not 32 (a key is 32 random bytes in \
         base64, as `service-backup keygen` prints it)",
    );
    expect_refused(
        &base.replace(
            "service-backup:\n",
            "service-backup:\n  encryption: {key: not-base64-SECRET!}\n",
        ),
        "service-backup.encryption.key is not valid base64 (a key is 32 random bytes in \
         base64, as `service-backup keygen` prints it)",
    );
    expect_refused(
        &base.replace(
            "service-backup:\n",
            "service-backup:\n  api: {listen: 0.0.0.0:8443}\n",
        ),
        "Missing values for api: bearer_tokens",
    );
}

/// A write-only agent (issue 25): recipients and no key render to `encryption.recipients`
/// alone, which `validate` accepts.
#[test]
fn recipients_without_a_key_render_a_write_only_agent() {
    const RECIPIENT: &str = "sbrec1vawa2a8dw7ynzzea9emgrumepdrxcaemz5slanek2au4sdc755hsyhl97j";
    let manifest = without("local", "").replace(
        "service-backup:\n",
        &format!("service-backup:\n  encryption: {{recipients: [{RECIPIENT}]}}\n"),
    );
    let rendered = render(&manifest);
    rendered.expect_rendered();
    let validate = rendered.validate();
    validate.expect(0);
    assert!(
        !validate.stdout.contains("no encryption key"),
        "{}",
        validate.stdout
    );
    let config = rendered.config();
    assert_eq!(get(&config, "encryption.recipients")[0], RECIPIENT);
    assert!(get(&config, "encryption.key_file").is_null(), "{config:?}");
}

#[test]
fn platform_tokens_render_without_static_ones() {
    let manifest = without("local", "").replace(
        "service-backup:\n",
        "service-backup:\n  api:\n    listen: 127.0.0.1:8443\n    uaa:\n      \
         token_keys_url: https://uaa.sys.example.com/token_keys\n      \
         issuer: https://uaa.sys.example.com/oauth/token\n    cloud_controller:\n      \
         url: https://api.sys.example.com\n      cache_seconds: 10\n",
    );
    let rendered = render(&manifest);
    rendered.expect_rendered();
    rendered.validate().expect(0);
    let config = rendered.config();
    assert_eq!(
        get(&config, "api.uaa.issuer"),
        "https://uaa.sys.example.com/oauth/token"
    );
    assert_eq!(
        get(&config, "api.cloud_controller.url"),
        "https://api.sys.example.com"
    );
    assert_eq!(get(&config, "api.cloud_controller.cache_seconds"), 10);
    assert!(
        get(&config, "api.bearer_tokens_file").is_null(),
        "{config:?}"
    );
}

#[test]
fn alerts_render_when_they_name_a_target_and_validate() {
    let manifest = without("local", "").replace(
        "service-backup:\n",
        "service-backup:\n  alerts:\n    product_name: Redis\n    webhook:\n      \
         url: https://hooks.example.com/backups\n      \
         headers: {Authorization: Bearer WEBHOOK-SECRET-VALUE}\n      retry_limit: 2\n    \
         config:\n      cloud_controller: {url: https://api.sys.example.com, user: admin, \
         password: CC-SECRET}\n      notifications: {service_url: \
         https://notifications.sys.example.com, cf_org: system, cf_space: alerts, \
         client_id: notifier, client_secret: NOTIFY-SECRET}\n",
    );
    let rendered = render(&manifest);
    rendered.expect_rendered();
    rendered.validate().expect(0);
    let config = rendered.config();
    assert_eq!(get(&config, "alerts.product_name"), "Redis");
    assert_eq!(
        get(&config, "alerts.webhook.url"),
        "https://hooks.example.com/backups"
    );
    assert_eq!(
        get(&config, "alerts.webhook.headers.Authorization"),
        "Bearer WEBHOOK-SECRET-VALUE"
    );
    assert_eq!(get(&config, "alerts.webhook.retry_limit"), 2);
    assert_eq!(
        get(&config, "alerts.config.notifications.cf_space"),
        "alerts"
    );
    assert_eq!(get(&config, "alerts.config.timeout_seconds"), 60);
    // Blank properties of the spec are left out.
    assert!(
        get(&config, "alerts.config.notifications.reply_to").is_null(),
        "{config:?}"
    );
    // Without alerts, nothing is rendered (nor with a cloud_controller alone: the full
    // manifest's test).
    let rendered = render(&without("local", ""));
    rendered.expect_rendered();
    assert!(get(&rendered.config(), "alerts").is_null());
}

#[test]
fn the_original_release_fixtures_render_as_properties_and_validate() {
    let mut seen = 0;
    for entry in std::fs::read_dir(config_fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("valid_") {
            continue;
        }
        let properties = yaml(&std::fs::read_to_string(&path).unwrap());
        let mut top = Mapping::new();
        top.insert("service-backup".into(), properties);
        let rendered = render(&serde_norway::to_string(&top).unwrap());
        assert_eq!(rendered.code, 0, "{name}: {}", rendered.stderr);
        let out = rendered.validate();
        assert_eq!(out.code, 0, "{name}: {}", out.all());
        seen += 1;
    }
    assert!(seen >= 4, "{seen} fixtures");
}

/// The first `yaml` code block of the README's "Deploy with BOSH" section.
fn readme_manifest() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("## Deploy with BOSH")
        .nth(1)
        .expect("README has a \"Deploy with BOSH\" section");
    let block = section
        .split("```yaml\n")
        .nth(1)
        .expect("the section has a yaml block");
    block.split("```").next().unwrap().to_string()
}

#[test]
fn the_readme_manifest_renders_unchanged_and_validates() {
    let manifest = readme_manifest();
    assert!(manifest.contains("instance_groups:"), "{manifest}");
    let rendered = render(&manifest);
    rendered.expect_rendered();
    rendered.validate().expect(0);
    assert_eq!(get(&rendered.config(), "deployment_name"), "redis");
    assert_eq!(rendered.check_scripts(), 11);
}

#[test]
fn the_package_installs_the_release_binary() {
    let spec = yaml(&std::fs::read_to_string(repo().join("packages/service-backup/spec")).unwrap());
    let files: Vec<&str> = spec["files"]
        .as_sequence()
        .expect("files")
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(files, [BLOB]);

    // The packaging script, run as the director's compile step runs it.
    let dir = tempfile::tempdir().unwrap();
    let installed = install_package(&dir.path().join("packages/service-backup"));
    let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    let version = Command::new(&installed).arg("--version").output().unwrap();
    assert!(version.status.success(), "{version:?}");
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("service-backup "));

    let check = Command::new("bash")
        .arg("-n")
        .arg(repo().join("scripts/build-release-binary.sh"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
}

#[test]
fn a_service_identifier_names_the_instance_rather_than_the_bosh_id() {
    let rendered =
        render("service-backup:\n  service_identifier_executable: /var/vcap/jobs/redis/bin/id\n");
    rendered.expect_rendered();
    assert!(
        rendered.config().get("instance_id").is_none(),
        "the agent takes the identifier's output as the instance id"
    );
}

/// Properties for the bpm tests: a dump executable of the colocated job, a local
/// destination inside and one outside bpm's own roots.
const BPM_MANIFEST: &str = "service-backup:
  bpm: {enabled: true}
  destinations:
  - {type: local, config: {path: /var/vcap/store/nfs}}
  - {type: local, config: {path: /mnt/backups}}
  source_folder: /var/vcap/store/redis-dump
  source_executable: /var/vcap/jobs/redis-server/bin/dump --fast
  cron_schedule: \"0 3 * * *\"
  backup_user: redis
  restore: {target_folder: /var/vcap/store/restore, restore_executable: /var/vcap/packages/redis-tools/bin/load}
";

#[test]
fn bpm_mode_gives_the_agent_its_folders_and_the_colocated_executables() {
    let rendered = render(BPM_MANIFEST);
    rendered.expect_rendered();
    let bpm = yaml(&rendered.file("config/bpm.yml"));
    let process = &bpm["processes"][0];
    assert_eq!(process["name"], "service-backup");
    assert_eq!(
        process["executable"],
        "/var/vcap/packages/service-backup/bin/service-backup"
    );
    assert_eq!(
        process["args"],
        yaml("[run, /var/vcap/jobs/service-backup/config/backup.yml]")
    );
    assert_eq!(process["limits"]["open_files"], 65536);
    assert_eq!(process["persistent_disk"].as_bool(), Some(true));
    assert_eq!(
        process["additional_volumes"],
        yaml(
            "[{path: /var/vcap/store/redis-dump, writable: true},
              {path: /var/vcap/store/service-backup, writable: true},
              {path: /var/vcap/store/restore, writable: true},
              {path: /var/vcap/store/nfs, writable: true}]"
        )
    );
    // Paths outside bpm's roots, the colocated job's and package's folders among them.
    assert_eq!(
        process["unrestricted_volumes"],
        yaml(
            "[{path: /mnt/backups, writable: true},
              {path: /var/vcap/jobs/redis-server, allow_executables: true},
              {path: /var/vcap/packages/redis-tools, allow_executables: true}]"
        )
    );
    // monit starts it through bpm, and the scripts work with bpm's user and pid file.
    let monit = rendered.file("monit");
    assert!(
        monit.contains("start program \"/var/vcap/jobs/bpm/bin/bpm start service-backup\""),
        "{monit}"
    );
    assert!(monit.contains("/var/vcap/sys/run/bpm/service-backup/service-backup.pid"));
    let helpers = rendered.file("bin/helpers.sh");
    assert!(helpers.contains("BACKUP_USER=vcap\n"), "{helpers}");
    assert!(
        helpers.contains("PIDFILE=/var/vcap/sys/run/bpm/service-backup/service-backup.pid\n"),
        "{helpers}"
    );
    assert!(rendered.file("bin/pre-start").contains("\nprepare\n"));
    rendered.validate().expect(0);

    // Off (the default): monit runs bin/ctl and bpm.yml holds no process.
    let off = render(&BPM_MANIFEST.replace("bpm: {enabled: true}", "bpm: {enabled: false}"));
    off.expect_rendered();
    let monit = off.file("monit");
    assert!(
        monit.contains("start program \"/var/vcap/jobs/service-backup/bin/ctl start\""),
        "{monit}"
    );
    assert_eq!(yaml(&off.file("config/bpm.yml")), Value::Null);
    let helpers = off.file("bin/helpers.sh");
    assert!(helpers.contains("BACKUP_USER=redis\n"), "{helpers}");
    assert!(
        helpers.contains("PIDFILE=$RUN_DIR/service-backup.pid\n"),
        "{helpers}"
    );
}

/// A dashboard job that consumes the link, as a broker or dashboard release would write it.
fn dashboard_job(dir: &Path) {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("spec"),
        "---\nname: dashboard\ntemplates:\n  backends.erb: config/backends\n\
         consumes:\n- name: backups\n  type: service-backup-api\nproperties: {}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("templates/backends.erb"),
        "<%- api = link('backups') -%>\n\
         <%- port = api.p('service-backup.api.listen').split(':').last -%>\n\
         <%- scheme = api.p('service-backup.api.tls.certificate', nil) ? 'https' : 'http' -%>\n\
         <%- api.instances.each do |instance| -%>\n\
         <%= scheme %>://<%= instance.address %>:<%= port %>\n\
         <%- end -%>\n",
    )
    .unwrap();
}

#[test]
fn the_link_gives_a_dashboard_the_api_address_port_and_tls() {
    let spec = yaml(&std::fs::read_to_string(job_dir().join("spec")).unwrap());
    assert_eq!(
        spec["provides"],
        yaml(
            "[{name: service-backup-api, type: service-backup-api,
               properties: [service-backup.api.listen, service-backup.api.tls.certificate]}]"
        )
    );
    let dir = tempfile::tempdir().unwrap();
    let dashboard = dir.path().join("dashboard");
    dashboard_job(&dashboard);
    let tls = tempfile::tempdir().unwrap();
    let (cert, _) = certificate(tls.path());
    for (tls, expected) in [
        (String::new(), "http://10.0.16.5:8443\n"),
        (
            format!(
                "          tls:\n            certificate: |\n{}",
                indent(&cert, 14)
            ),
            "https://10.0.16.5:8443\n",
        ),
    ] {
        let manifest = format!(
            "name: redis\ninstance_groups:\n- name: redis-server\n  jobs:\n  - name: dashboard\n  \
             - name: service-backup\n    properties:\n      service-backup:\n        api:\n          \
             listen: 0.0.0.0:8443\n{tls}"
        );
        let rendered = render_with(&dashboard, &manifest, &[], &[&job_dir()]);
        rendered.expect_rendered();
        assert_eq!(rendered.file("config/backends"), expected, "{manifest}");
    }
}

#[test]
fn health_renders_with_the_names_bosh_knows() {
    let manifest = without("local", "").replace(
        "service-backup:\n",
        "service-backup:\n  health:\n    kafka: {brokers: ['kafka-0.example.net:9092']}\n    \
         tenant_name: streaming\n    interval: 1m\n    service_instance: {instance_class_name: small}\n",
    );
    let rendered = render(&manifest);
    rendered.expect_rendered();
    rendered.validate().expect(0);
    let config = rendered.config();
    assert_eq!(get(&config, "health.tenant_name"), "streaming");
    assert_eq!(
        get(&config, "health.service_instance.id"),
        "b02f4682-6d9e-4c3b-a8d4-7f3c2b1e9a50"
    );
    assert_eq!(
        get(&config, "health.service_instance.instance_class_name"),
        "small"
    );
    assert!(
        get(&config, "health.service_instance.name")
            .as_str()
            .is_some_and(|n| !n.is_empty()),
        "{config:?}"
    );
    assert!(
        get(&config, "health.cloud_service_name")
            .as_str()
            .is_some_and(|n| !n.is_empty()),
        "{config:?}"
    );
    // Without `health`, nothing is rendered.
    let plain = render(&without("local", ""));
    plain.expect_rendered();
    assert!(get(&plain.config(), "health").is_null());
}
