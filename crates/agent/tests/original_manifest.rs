//! The done-means of the gcs issue: a manifest written with the original release's keys
//! only, with all four of its destination types (s3, azure, gcs, scp), backs up to all
//! four at once against the real servers, and restores from each. No key of ours is used
//! but the gcs `endpoint` that reaches the emulator; without an `encryption` section the
//! archives are plain `.tar.gz`, as the original's were.

mod common;

use common::{Env, server_env, tree, unique};
use serde_json::Value;

const S3_SECRET: &str = "original-manifest-secret-key";

/// The private key lines of the test service account, for leak checks.
fn gcs_key_lines(json: &str) -> Vec<String> {
    let value: Value = serde_json::from_str(json).unwrap();
    value["private_key"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_string)
        .collect()
}

/// Indents every line of `text` by `spaces`, for a YAML block scalar.
fn indented(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.trim().lines().map(|l| format!("{pad}{l}\n")).collect()
}

fn write_config(env: &Env, gcs_json: &str) {
    let d = env.dir.path().display();
    let ssh_key = std::fs::read_to_string(server_env("SB_TEST_SCP_KEY")).unwrap();
    let remote = format!("{}/{}", server_env("SB_TEST_SCP_DIR"), unique("orig"));
    let yaml = format!(
        "---\n\
destinations:\n\
- type: s3\n  name: s3_destination\n  config:\n    endpoint_url: {s3}\n    bucket_name: {bucket}\n    \
bucket_path: original/s3\n    access_key_id: ORIGINALKEYID\n    secret_access_key: {S3_SECRET}\n\
- type: azure\n  name: azure_destination\n  config:\n    storage_account: {account}\n    \
storage_access_key: {azure_key}\n    container: {container}\n    path: original/azure\n    endpoint: {azure}\n\
- type: gcs\n  name: google_cloud_destination\n  config:\n    service_account_json: |\n{gcs_json}    \
project_id: {project}\n    bucket_name: {gcs_bucket}\n    endpoint: {gcs}\n\
- type: scp\n  name: scp_destination\n  config:\n    user: {user}\n    server: 127.0.0.1\n    \
destination: {remote}\n    fingerprint: \"{fingerprint}\"\n    key: |\n{ssh_key}    port: {port}\n\
source_folder: {d}/source\n\
source_executable: true\n\
cron_schedule: \"*/5 * * * * *\"\n\
cleanup_executable: true\n\
missing_properties_message: custom message\n\
exit_if_in_progress: true\n\
service_identifier_executable: echo original-instance\n\
deployment_name: deployment-name\n\
add_deployment_name_to_backup_path: true\n\
aws_cli_path: path/to/aws_cli\n\
azure_cli_path: path/to/blobxfer\n\
backup_user: vcap\n",
        s3 = server_env("SB_TEST_S3_ENDPOINT"),
        bucket = unique("orig").to_lowercase(),
        account = server_env("SB_TEST_AZURE_ACCOUNT"),
        azure_key = server_env("SB_TEST_AZURE_KEY"),
        container = unique("orig").to_lowercase(),
        azure = server_env("SB_TEST_AZURE_ENDPOINT"),
        gcs_json = indented(gcs_json, 6),
        project = server_env("SB_TEST_GCS_PROJECT"),
        gcs_bucket = unique("orig").to_lowercase(),
        gcs = server_env("SB_TEST_GCS_ENDPOINT"),
        user = server_env("SB_TEST_SCP_USER"),
        fingerprint = server_env("SB_TEST_SCP_FINGERPRINT"),
        ssh_key = indented(&ssh_key, 6),
        port = server_env("SB_TEST_SCP_PORT"),
    );
    std::fs::write(env.path("config.yml"), yaml).unwrap();
}

fn assert_no_secret(gcs_json: &str, output: &str) {
    assert!(
        !output.contains(S3_SECRET),
        "the S3 secret leaked: {output}"
    );
    assert!(
        !output.contains(&server_env("SB_TEST_AZURE_KEY")),
        "the Azure key leaked: {output}"
    );
    let ssh = std::fs::read_to_string(server_env("SB_TEST_SCP_KEY")).unwrap();
    for line in ssh.lines().filter(|l| l.len() > 20) {
        assert!(!output.contains(line), "the SSH key leaked: {output}");
    }
    for line in gcs_key_lines(gcs_json) {
        assert!(!output.contains(&line), "the GCS key leaked: {output}");
    }
}

#[test]
fn a_manifest_of_the_original_backs_up_to_s3_azure_gcs_and_scp_and_restores_from_each() {
    let env = Env::new();
    let gcs_json = std::fs::read_to_string(server_env("SB_TEST_GCS_KEY_FILE")).unwrap();
    write_config(&env, &gcs_json);
    env.run(&["validate", "config.yml"]).expect(0);

    let out = env.run(&["backup", "config.yml"]);
    out.expect(0);
    assert_no_secret(&gcs_json, &out.all());
    let mut done: Vec<String> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| common::action(v) == "Upload backup completed successfully")
        .map(|v| v["data"]["destination_name"].as_str().unwrap().to_string())
        .collect();
    done.sort();
    let names = [
        "azure_destination",
        "google_cloud_destination",
        "s3_destination",
        "scp_destination",
    ];
    assert_eq!(done, names, "{}", out.stdout);
    // multiple_destinations_integration_test.go waits for "s3 completed" and "scp
    // completed", the original's s3 and scp uploaders' last lines.
    for (word, name) in [("s3", "s3_destination"), ("scp", "scp_destination")] {
        let line = out
            .stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| common::action(v) == format!("{word} completed"))
            .unwrap_or_else(|| panic!("no \"{word} completed\": {}", out.stdout));
        assert_eq!(line["data"]["destination_name"], name);
    }

    let list = env.run(&["list", "config.yml", "--json"]);
    list.expect(0);
    let items: Vec<Value> = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(items.len(), 4, "{items:?}");
    assert!(
        items.iter().all(|i| i["name"] == items[0]["name"]),
        "one backup, four copies: {items:?}"
    );
    for item in &items {
        let key = item["key"].as_str().unwrap();
        assert!(key.ends_with(".tar.gz"), "plain archives: {key}");
        assert!(key.contains("deployment-name/"), "{key}");
    }
    let gcs_key = items
        .iter()
        .find(|i| i["destination"] == "google_cloud_destination")
        .unwrap()["key"]
        .as_str()
        .unwrap();
    assert!(
        gcs_key.starts_with("deployment-name/"),
        "no bucket_path: {gcs_key}"
    );

    for dest in names {
        let target = format!("restored-{dest}");
        let out = env.run(&[
            "restore",
            "config.yml",
            "--destination",
            dest,
            "--target",
            &target,
        ]);
        out.expect(0);
        assert_no_secret(&gcs_json, &out.all());
        assert_eq!(
            tree(&env.path("source")),
            tree(&env.path(&target)),
            "{dest}"
        );
    }
}
