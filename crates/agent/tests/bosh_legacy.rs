//! The 2016 single-destination shape of the BOSH job (`service-backup.destination.s3`,
//! `.scp`, `.azure`, releases v8 to v14 of the original), rendered as the director renders
//! it (`tests/bosh/render.rb`): it becomes the one entry of the destinations list, with
//! the list's required keys and messages; both shapes at once, two destinations in the
//! single shape and an unknown type fail the render, with nothing written. The original's
//! own example manifest of that shape, pasted as it is with its placeholders filled,
//! renders, validates and backs up to moto.

mod common;

use common::bosh::{MESSAGE, expect_refused, render, render_with};
use common::{run, sample_tree, server_env, tree, unique};
use serde_norway::Value;

fn get<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(value, |v, key| v.get(key).unwrap_or(&Value::Null))
}

/// Properties with the 2016 `destination` block `block` (YAML lines at 4 spaces).
fn legacy(block: &str) -> String {
    format!(
        "service-backup:\n  destination:\n{block}  source_folder: /var/vcap/store/dump\n  \
         cron_schedule: \"0 3 * * *\"\n  missing_properties_message: {MESSAGE}\n"
    )
}

const S3: &str = "    s3:\n      bucket_name: b\n      bucket_path: p\n      access_key_id: AKIA\n      \
                  secret_access_key: S3-SECRET\n";
const SCP: &str = "    scp:\n      user: backup\n      server: 10.0.0.5\n      destination: /srv\n      \
                   key: SCP-SECRET\n";
const AZURE: &str = "    azure:\n      storage_account: acct\n      storage_access_key: AZ-SECRET\n      \
                     container: c\n      path: p\n";

#[test]
fn each_2016_destination_renders_as_the_one_destination_and_validates() {
    for (block, kind) in [(S3, "s3"), (SCP, "scp"), (AZURE, "azure")] {
        let rendered = render(&legacy(block));
        rendered.expect_rendered();
        rendered.validate().expect(0);
        let config: Value = rendered.config();
        let destinations = config["destinations"].as_sequence().unwrap();
        assert_eq!(destinations.len(), 1, "{kind}: {destinations:?}");
        assert_eq!(destinations[0]["type"], kind);
        assert_eq!(rendered.check_scripts(), 11);
    }

    // The spec's defaults: Amazon's endpoint is left to the agent, port 22 and the
    // public Azure cloud's base domain pass through; a value given wins.
    let s3 = render(&legacy(S3)).config();
    let s3 = &s3["destinations"][0]["config"];
    assert!(s3.get("endpoint_url").is_none(), "{s3:?}");
    assert_eq!(s3["secret_access_key"], "S3-SECRET");
    let minio = render(&legacy(&format!(
        "{S3}      endpoint_url: https://minio.internal:9000\n"
    )))
    .config();
    assert_eq!(
        minio["destinations"][0]["config"]["endpoint_url"],
        "https://minio.internal:9000"
    );
    let scp = render(&legacy(SCP)).config();
    assert_eq!(scp["destinations"][0]["config"]["port"], 22);
    let azure = render(&legacy(&format!(
        "{AZURE}      blob_store_base_url: core.chinacloudapi.cn\n"
    )))
    .config();
    assert_eq!(
        azure["destinations"][0]["config"]["blob_store_base_url"],
        "core.chinacloudapi.cn"
    );
    // The rest of the configuration is rendered as for the list shape.
    assert_eq!(get(&azure, "missing_properties_message"), MESSAGE);
    assert_eq!(get(&azure, "source_folder"), "/var/vcap/store/dump");
}

/// Bad input, one row each: the message, the render's exit code 1 (the director's
/// "Error filling in template", so `bosh deploy` fails before any VM changes) and
/// nothing rendered.
#[test]
fn the_2016_shape_refuses_missing_keys_both_shapes_two_destinations_and_unknown_types() {
    // Each required key of each type, with the list shape's message.
    let required: [(&str, &str, &[&str]); 3] = [
        (
            S3,
            "s3",
            &[
                "access_key_id",
                "secret_access_key",
                "bucket_name",
                "bucket_path",
            ],
        ),
        (SCP, "scp", &["server", "user", "destination", "key"]),
        (
            AZURE,
            "azure",
            &["storage_account", "storage_access_key", "container", "path"],
        ),
    ];
    for (block, kind, keys) in required {
        for key in keys {
            let without: String = block
                .lines()
                .filter(|line| !line.trim_start().starts_with(&format!("{key}:")))
                .map(|line| format!("{line}\n"))
                .collect();
            expect_refused(
                &legacy(&without),
                &format!("Missing values for {kind}: {key}"),
            );
        }
    }
    // Only an optional key set still names the destination, with what it lacks.
    expect_refused(
        &legacy("    s3:\n      endpoint_url: https://minio.internal\n"),
        "Missing values for s3: access_key_id, secret_access_key, bucket_name, bucket_path",
    );
    // Both shapes at once: which to keep.
    expect_refused(
        &legacy(S3).replace(
            "  source_folder:",
            "  destinations:\n  - {type: local, config: {path: /mnt/nfs}}\n  source_folder:",
        ),
        "service-backup.destination (the 2016 single destination) and \
         service-backup.destinations are both set: keep service-backup.destinations and move \
         the s3 destination into that list, or remove service-backup.destinations",
    );
    // Two destinations in the single shape.
    expect_refused(
        &legacy(&format!("{S3}{SCP}")),
        "service-backup.destination sets s3 and scp, and it takes one destination: keep one, \
         or list them all under service-backup.destinations",
    );
    // An unknown type, in the single shape and in the list.
    expect_refused(
        &legacy("    ftp:\n      server: 10.0.0.5\n"),
        "Unknown destination type: ftp",
    );
    expect_refused(
        &legacy(S3).replace(
            "  destination:\n",
            "  destinations:\n  - {type: sftp, config: {server: x}}\n  destination:\n",
        ),
        "Unknown destination type: sftp",
    );
}

/// The original release's own example manifest of the 2016 shape, as it is in
/// pivotal-cf/service-backup-release, `manifests/bosh-lite-deployment.yml.template`,
/// unchanged from release v8 to v14 (the documentation pages of docs.pivotal.io show the
/// later list shape, which `bosh_job.rs` renders from the README). Only its placeholders
/// (`replace-with-…` and the director uuid the old CLI filled in) are given values.
const DOCUMENTED: &str = r"---
name: service-backup

director_uuid: <%= `bosh status --uuid` %>

releases:
- name: service-backup
  version: latest

properties:
  service-backup:
    destination:
      s3:
        bucket_name: replace-with-bucket-name
        bucket_path: replace-with-bucket-path
        access_key_id: replace-with-access-key
        secret_access_key: replace-with-secret-access-key
    source_folder: replace-with-source-folder-on-local-machine
    source_executable: replace-with-source-executable
    cron_schedule: replace-with-cron-schedule

jobs:
- name: service-backup
  instances: 1
  resource_pool: service-backup
  networks:
  - name: service-backup
  templates:
  - {release: service-backup, name: service-backup}

networks:
- name: service-backup
  subnets:
  - range: 10.244.8.0/30
    reserved: [10.244.8.1]
    cloud_properties: {}
  - range: 10.244.8.4/30
    reserved: [10.244.8.5]
    cloud_properties: {}

resource_pools:
- name: service-backup
  network: service-backup
  cloud_properties: {}
  stemcell:
    name: bosh-warden-boshlite-ubuntu-trusty-go_agent
    version: latest

compilation:
  workers: 1
  network: service-backup
  cloud_properties: {}

update:
  canaries: 1
  max_in_flight: 1
  serial: false
  canary_watch_time: 1000-60000
  update_watch_time: 1000-60000
";

#[test]
fn the_documented_2016_manifest_renders_validates_and_backs_up_to_moto() {
    let endpoint = server_env("SB_TEST_S3_ENDPOINT");
    let bucket = unique("legacy").to_lowercase();
    common::secret("legacy/SECRET/value");
    let vm = tempfile::tempdir().unwrap();
    let source = vm.path().join("source");
    sample_tree(&source);
    // A dump executable that leaves a mark, to show that it ran before the archive.
    let dump = vm.path().join("dump");
    std::fs::write(
        &dump,
        format!("#!/bin/sh\necho dumped > {}/dump.rdb\n", source.display()),
    )
    .unwrap();
    std::fs::set_permissions(&dump, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let manifest = DOCUMENTED
        .replace(
            "<%= `bosh status --uuid` %>",
            "8f3a2c4e-1b5d-4e6f-9a7b-0c1d2e3f4a5b",
        )
        .replace("replace-with-bucket-name", &bucket)
        .replace("replace-with-bucket-path", "redis/prod")
        .replace("replace-with-access-key", "AKIALEGACYTEST000001")
        .replace("replace-with-secret-access-key", "legacy/SECRET/value")
        .replace(
            "replace-with-source-folder-on-local-machine",
            source.to_str().unwrap(),
        )
        .replace("replace-with-source-executable", dump.to_str().unwrap())
        .replace("replace-with-cron-schedule", "\"0 3 * * *\"");
    assert!(!manifest.contains("replace-with"), "{manifest}");

    // As it is: it renders and validates (Amazon S3 itself, no endpoint).
    let rendered = render(&manifest);
    rendered.expect_rendered();
    let validate = rendered.validate();
    validate.expect(0);
    assert!(
        validate.stdout.contains("valid; 1 destination(s)"),
        "{}",
        validate.stdout
    );
    let config = rendered.config();
    assert_eq!(config["destinations"][0]["type"], "s3");
    assert_eq!(get(&config, "deployment_name"), "service-backup");

    // This machine is neither Amazon nor a VM: an ops file, as an operator of a private
    // S3-compatible store would add with `bosh deploy -o`, gives moto's endpoint and a
    // state_dir outside /var/vcap; the documented text stays as it is.
    let state = vm.path().join("state");
    let ops = format!(
        "- type: replace\n  path: /properties/service-backup/destination/s3/endpoint_url?\n  \
         value: {endpoint}\n- type: replace\n  path: /properties/service-backup/state_dir?\n  \
         value: {}\n",
        state.display()
    );
    let rendered = render_with(&common::bosh::job_dir(), &manifest, &[&ops], &[]);
    rendered.expect_rendered();
    rendered.validate().expect(0);
    let config_path = rendered.out().join("config/backup.yml");
    let config = config_path.to_str().unwrap();
    let backup = run(vm.path(), &["backup", config]);
    backup.expect(0);
    assert!(
        !backup.all().contains("legacy/SECRET/value"),
        "{}",
        backup.all()
    );
    let list = run(vm.path(), &["list", config, "--json"]);
    list.expect(0);
    let items: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(items.len(), 1, "{}", list.stdout);
    let key = items[0]["key"].as_str().unwrap();
    assert!(key.starts_with("redis/prod/"), "{key}");

    let restored = vm.path().join("restored");
    run(
        vm.path(),
        &["restore", config, "--target", restored.to_str().unwrap()],
    )
    .expect(0);
    assert_eq!(tree(&restored), tree(&source));
    assert_eq!(
        std::fs::read_to_string(restored.join("dump.rdb")).unwrap(),
        "dumped\n"
    );
}
