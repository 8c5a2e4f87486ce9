//! The BOSH job (`jobs/service-backup/`) rendered as the director renders it, by
//! `tests/bosh/render.rb` (ERB, `p`, `if_p`, `spec`, spec defaults merged with the
//! manifest's properties): every rendered config must pass `service-backup validate` and
//! every rendered script `bash -n`; a manifest missing a required property must fail to
//! render with the original's message and write nothing. Ruby comes from
//! `tests/servers/ruby.sh` (`SB_TEST_RUBY`).

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Run, fixtures, run, server_env};
use serde_norway::{Mapping, Value};

const MESSAGE: &str = "Ask the platform team for the backup settings.";
/// A key as `service-backup keygen` prints it (32 bytes in base64).
const KEY: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn job_dir() -> PathBuf {
    repo().join("jobs/service-backup")
}

/// What rendering a manifest gave: the exit code, stderr, and the job's rendered files.
struct Rendered {
    dir: tempfile::TempDir,
    code: i32,
    stderr: String,
}

impl Rendered {
    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn file(&self, rel: &str) -> String {
        std::fs::read_to_string(self.out().join(rel))
            .unwrap_or_else(|e| panic!("rendered {rel}: {e}"))
    }

    fn expect_rendered(&self) -> &Self {
        assert_eq!(self.code, 0, "render failed:\n{}", self.stderr);
        self
    }

    /// `service-backup validate` on the rendered config, from the rendered job's folder.
    fn validate(&self) -> Run {
        let config = self.out().join("config/backup.yml");
        run(self.dir.path(), &["validate", config.to_str().unwrap()])
    }

    /// The rendered config as YAML.
    fn config(&self) -> Value {
        serde_norway::from_str(&self.file("config/backup.yml")).expect("rendered YAML parses")
    }

    /// `bash -n` on every rendered script; returns how many were checked.
    fn check_scripts(&self) -> usize {
        let mut checked = 0;
        for entry in std::fs::read_dir(self.out().join("bin")).expect("rendered bin/") {
            let path = entry.unwrap().path();
            let out = Command::new("bash")
                .arg("-n")
                .arg(&path)
                .output()
                .expect("bash runs");
            assert!(
                out.status.success(),
                "bash -n {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
        checked
    }
}

/// Renders the job for `manifest` (a deployment manifest or a bare properties mapping).
fn render(manifest: &str) -> Rendered {
    let ruby = server_env("SB_TEST_RUBY");
    let dir = tempfile::tempdir().unwrap();
    let manifest_path = dir.path().join("manifest.yml");
    std::fs::write(&manifest_path, manifest).unwrap();
    let out = Command::new(&ruby)
        .arg(repo().join("tests/bosh/render.rb"))
        .arg(job_dir())
        .arg(&manifest_path)
        .arg(dir.path().join("out"))
        .output()
        .unwrap_or_else(|e| panic!("{ruby} does not run: {e}"));
    Rendered {
        dir,
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).unwrap()
}

fn get<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(value, |v, key| v.get(key).unwrap_or(&Value::Null))
}

/// A self-signed certificate and its key, PEM, made by openssl.
fn certificate(dir: &Path) -> (String, String) {
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "tls.key",
            "-out",
            "tls.crt",
        ])
        .current_dir(dir)
        .output()
        .expect("openssl is needed (apt-get install -y openssl)");
    assert!(status.status.success(), "{status:?}");
    (
        std::fs::read_to_string(dir.join("tls.crt")).unwrap(),
        std::fs::read_to_string(dir.join("tls.key")).unwrap(),
    )
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

#[test]
fn the_spec_keeps_every_property_of_the_original_with_its_default() {
    let ours = yaml(&std::fs::read_to_string(job_dir().join("spec")).unwrap());
    let original = yaml(&std::fs::read_to_string(fixtures().join("job-spec.yml")).unwrap());
    let ours = ours["properties"].as_mapping().expect("our properties");
    let original = original["properties"]
        .as_mapping()
        .expect("original properties");
    assert_eq!(original.len(), 24, "the original job has 24 properties");
    for (name, definition) in original {
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
        compression_level: 3
        state_dir: /var/vcap/store/service-backup-state
        instance_id: redis-0
        retention: {{keep_last: 14, keep_daily: 7}}
        restore:
          target_folder: /var/vcap/store/restore
          restore_executable: /var/vcap/jobs/redis-server/bin/restore
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
    assert_eq!(get(&config, "compression_level"), 3);
    assert_eq!(
        get(&config, "state_dir"),
        "/var/vcap/store/service-backup-state"
    );
    assert_eq!(get(&config, "retention.keep_last"), 14);
    assert_eq!(
        get(&config, "restore.target_folder"),
        "/var/vcap/store/restore"
    );
    assert_eq!(get(&config, "encryption.key_file"), "backup.key");
    assert_eq!(get(&config, "api.bearer_tokens_file"), "api-tokens");
    assert_eq!(get(&config, "api.tls.key_file"), "api-tls.key");
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
    assert_eq!(rendered.check_scripts(), 6);
    for script in ["ctl", "manual-backup", "restore", "verify"] {
        let text = rendered.file(&format!("bin/{script}"));
        assert!(
            text.contains("prepare\n"),
            "bin/{script} does not secure the files"
        );
    }
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
    for absent in [
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
    assert_eq!(rendered.check_scripts(), 6);
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
    assert_eq!(rendered.check_scripts(), 6);
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

fn expect_refused(manifest: &str, problem: &str) {
    let rendered = render(manifest);
    assert_eq!(rendered.code, 1, "{problem}: rendered anyway:\n{manifest}");
    let line = format!("Invalid config - {problem}. {MESSAGE}");
    assert!(
        rendered.stderr.contains(&line),
        "expected {line:?} in:\n{}",
        rendered.stderr
    );
    assert!(
        rendered
            .stderr
            .contains("Error filling in template 'backup.yml.erb'"),
        "{}",
        rendered.stderr
    );
    for secret in ["SECRET", KEY] {
        assert!(
            !rendered.stderr.contains(secret),
            "a secret leaked: {}",
            rendered.stderr
        );
    }
    assert!(
        !rendered.out().exists(),
        "{problem}: files were written although rendering failed"
    );
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

#[test]
fn the_original_release_fixtures_render_as_properties_and_validate() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
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

/// The first ```yaml block of the README's "Deploy with BOSH" section.
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
    assert_eq!(rendered.check_scripts(), 6);
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
    assert_eq!(files, ["service-backup/service-backup-linux-amd64"]);

    // The packaging script, run as the director's compile VM would: the blob in the
    // working folder, BOSH_INSTALL_TARGET set.
    let dir = tempfile::tempdir().unwrap();
    let compile = dir.path().join("compile");
    std::fs::create_dir_all(compile.join("service-backup")).unwrap();
    std::fs::copy(common::binary(), compile.join(files[0])).unwrap();
    let target = dir.path().join("packages/service-backup");
    let out = Command::new("bash")
        .arg(repo().join("packages/service-backup/packaging"))
        .current_dir(&compile)
        .env("BOSH_INSTALL_TARGET", &target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let installed = target.join("bin/service-backup");
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

/// `/var/vcap` laid out as on a BOSH VM, removed when dropped.
struct VcapLayout;

impl Drop for VcapLayout {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string("/var/vcap/sys/run/service-backup/service-backup.pid");
        if let Ok(pid) = pid {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
        let _ = std::fs::remove_dir_all("/var/vcap");
    }
}

const JOB: &str = "/var/vcap/jobs/service-backup";
const STORE: &str = "/var/vcap/store";

/// Renders the job into /var/vcap/jobs/service-backup with a local destination under
/// /var/vcap/store, as the director and the agent would lay it out.
fn render_onto_vm(drain_timeout: u32, dump_seconds: u32) {
    let manifest = format!(
        "service-backup:\n  destinations:\n  - {{type: local, name: nfs, config: {{path: {STORE}/nfs}}}}\n  \
         source_folder: {STORE}/dump\n  source_executable: {STORE}/dump-tool {dump_seconds}\n  \
         cron_schedule: \"@every 1s\"\n  backup_user: nobody\n  encryption: {{key: {KEY}}}\n  \
         restore: {{target_folder: {STORE}/restored}}\n  drain_timeout_seconds: {drain_timeout}\n"
    );
    let rendered = render(&manifest);
    rendered.expect_rendered();
    std::fs::create_dir_all(JOB).unwrap();
    let status = Command::new("cp")
        .arg("-rT")
        .arg(rendered.out())
        .arg(JOB)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Runs a job script; returns (exit code, stdout, stderr).
fn job_script(script: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(format!("{JOB}/bin/{script}"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn complete_backups() -> usize {
    let out = Command::new(common::binary())
        .args(["list", &format!("{JOB}/config/backup.yml"), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let items: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    items.len()
}

/// Whether a backup holds the agent's lock (as bin/drain asks).
fn backup_running() -> bool {
    let lock = format!("{STORE}/service-backup/backup.lock");
    Path::new(&lock).exists()
        && !Command::new("flock")
            .args(["--nonblock", &lock, "true"])
            .status()
            .unwrap()
            .success()
}

fn wait_for(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} within {seconds} s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `bin/ctl start` as monit runs it; a thread reaps the daemon (ctl execs it) so that an
/// exited daemon does not linger as a zombie that still answers `kill -0`.
fn ctl_start() {
    let mut child = Command::new(format!("{JOB}/bin/ctl"))
        .arg("start")
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::spawn(move || child.wait());
    wait_for("the daemon starts", 30, || {
        std::fs::read_to_string("/var/vcap/sys/log/service-backup/service-backup.stdout.log")
            .is_ok_and(|log| log.contains("Service-backup Started"))
    });
}

fn agent_running() -> bool {
    std::fs::read_to_string("/var/vcap/sys/run/service-backup/service-backup.pid").is_ok_and(
        |pid| {
            Command::new("kill")
                .args(["-0", pid.trim()])
                .status()
                .unwrap()
                .success()
        },
    )
}

#[test]
fn the_rendered_job_runs_on_a_vm_layout_ctl_manual_backup_drain_restore_verify() {
    assert!(
        common::is_root(),
        "this test lays out /var/vcap as on a BOSH VM and runs the job's scripts, which need \
         root, as CI has"
    );
    assert!(
        !Path::new("/var/vcap").exists(),
        "/var/vcap exists on this machine: this test lays out its own and removes it"
    );
    let _layout = VcapLayout;

    // The package, installed by its packaging script, and the data to back up.
    let compile = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(compile.path().join("service-backup")).unwrap();
    std::fs::copy(
        common::binary(),
        compile
            .path()
            .join("service-backup/service-backup-linux-amd64"),
    )
    .unwrap();
    let status = Command::new("bash")
        .arg(repo().join("packages/service-backup/packaging"))
        .current_dir(compile.path())
        .env("BOSH_INSTALL_TARGET", "/var/vcap/packages/service-backup")
        .status()
        .unwrap();
    assert!(status.success());
    common::sample_tree(&Path::new(STORE).join("dump"));
    std::fs::write(format!("{STORE}/dump-tool"), "#!/bin/sh\nsleep \"$1\"\n").unwrap();
    std::fs::set_permissions(
        format!("{STORE}/dump-tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::create_dir_all(format!("{STORE}/nfs")).unwrap();
    assert!(
        Command::new("chown")
            .args(["nobody", &format!("{STORE}/nfs")])
            .status()
            .unwrap()
            .success()
    );

    render_onto_vm(60, 2);
    let config_before = std::fs::metadata(format!("{JOB}/config/backup.yml")).unwrap();
    assert_eq!(config_before.permissions().mode() & 0o777, 0o644);

    // manual-backup: one backup now; the secret files are the backup user's, mode 0600.
    let (code, stdout, stderr) = job_script("manual-backup", &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Upload backup completed successfully"),
        "{stdout}"
    );
    assert_eq!(complete_backups(), 1);
    for file in ["backup.yml", "backup.key", "api-tokens"] {
        let meta = std::fs::metadata(format!("{JOB}/config/{file}")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            65534,
            "{file} belongs to the backup user"
        );
    }

    // ctl start: the daemon runs as the backup user, logs in /var/vcap/sys/log.
    ctl_start();
    assert!(agent_running());
    let (code, _, _) = job_script("ctl", &["start"]);
    assert_eq!(code, 0, "a second start is a no-op");

    // drain while a backup runs: it finishes, then the daemon stops, and only 0 is printed.
    wait_for("a scheduled backup holds the lock", 30, backup_running);
    let before = complete_backups();
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = job_script("drain", &[]);
    assert_eq!((code, stdout.as_str()), (0, "0\n"), "{stderr}");
    assert!(!agent_running(), "the daemon still runs after drain");
    // The running backup, not the ones scheduled after it (every second here).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "drain took {:?}",
        started.elapsed()
    );
    assert!(
        complete_backups() > before,
        "the backup that was running did not complete"
    );
    let drain_log = std::fs::read_to_string("/var/vcap/sys/log/service-backup/ctl.log").unwrap();
    assert!(drain_log.contains("waiting up to 60s"), "{drain_log}");

    // verify and restore (into restore.target_folder), as an operator would on the VM.
    let (code, stdout, stderr) = job_script("verify", &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (code, stdout, stderr) = job_script("restore", &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        common::tree(Path::new("/var/vcap/store/restored")),
        common::tree(&Path::new(STORE).join("dump"))
    );

    // drain with a backup that outlasts the bound: the daemon is stopped, the backup
    // aborted, nothing partial is listed, and 0 is printed.
    render_onto_vm(1, 60);
    ctl_start();
    wait_for("a scheduled backup holds the lock", 30, backup_running);
    let before = complete_backups();
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = job_script("drain", &[]);
    assert_eq!((code, stdout.as_str()), (0, "0\n"), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "drain took {:?}",
        started.elapsed()
    );
    assert!(!agent_running());
    assert_eq!(complete_backups(), before);
    let (code, _, _) = job_script("ctl", &["stop"]);
    assert_eq!(code, 0, "stop without a daemon is a no-op");
}
