//! One backup to S3, Azure and SFTP at once, through the real binary and real servers:
//! all up, one down, and SIGTERM in the middle.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, server_env, tree, unique};
use serde_json::Value;

const S3_SECRET: &str = "fanout-secret-key-value";

/// `config.yml` with three destinations; `azure_endpoint` replaces Azurite's address.
fn write_config(env: &Env, azure_endpoint: Option<&str>, extra: &str) {
    common::secret(S3_SECRET);
    let d = env.dir.path().display();
    let ssh_key: String = std::fs::read_to_string(server_env("SB_TEST_SCP_KEY"))
        .unwrap()
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    let azure = azure_endpoint.map_or_else(|| server_env("SB_TEST_AZURE_ENDPOINT"), str::to_string);
    let remote = format!("{}/{}", server_env("SB_TEST_SCP_DIR"), unique("fan"));
    let yaml = format!(
        "destinations:\n\
         - type: s3\n  name: objects\n  config:\n    bucket_name: {bucket}\n    bucket_path: fan\n    \
         access_key_id: fanout-key-id\n    secret_access_key: {S3_SECRET}\n    endpoint_url: {s3}\n\
         - type: azure\n  name: blobs\n  config:\n    storage_account: {account}\n    storage_access_key: {azure_key}\n    \
         container: {container}\n    path: fan\n    endpoint: {azure}\n\
         - type: scp\n  name: ssh\n  config:\n    server: 127.0.0.1\n    port: {port}\n    user: {user}\n    \
         destination: {remote}\n    fingerprint: \"{fingerprint}\"\n    key: |\n{ssh_key}\
         source_folder: {d}/source\ncron_schedule: \"* * * * * *\"\nstate_dir: {d}/state\n\
         encryption:\n  key_file: {d}/backup.key\n{extra}",
        bucket = unique("fan").to_lowercase(),
        s3 = server_env("SB_TEST_S3_ENDPOINT"),
        account = server_env("SB_TEST_AZURE_ACCOUNT"),
        azure_key = server_env("SB_TEST_AZURE_KEY"),
        container = unique("fan").to_lowercase(),
        port = server_env("SB_TEST_SCP_PORT"),
        user = server_env("SB_TEST_SCP_USER"),
        fingerprint = server_env("SB_TEST_SCP_FINGERPRINT"),
    );
    std::fs::write(env.path("config.yml"), yaml).unwrap();
}

fn listed(env: &Env) -> Vec<Value> {
    let out = env.run(&["list", "config.yml", "--json"]);
    serde_json::from_str(&out.stdout).unwrap_or_else(|_| panic!("{}", out.all()))
}

fn assert_no_secret(env: &Env, output: &str) {
    let secrets = [
        S3_SECRET.to_string(),
        server_env("SB_TEST_AZURE_KEY"),
        env.key_text(),
    ];
    for s in &secrets {
        assert!(
            !output.contains(s.as_str()),
            "a secret leaked into: {output}"
        );
    }
    let ssh = std::fs::read_to_string(server_env("SB_TEST_SCP_KEY")).unwrap();
    for line in ssh.lines().filter(|l| l.len() > 20) {
        assert!(!output.contains(line), "the SSH key leaked");
    }
}

#[test]
fn one_backup_reaches_three_destinations_and_restores_from_each() {
    let env = Env::new();
    write_config(&env, None, "");
    let out = env.run(&["backup", "config.yml"]);
    out.expect(0);
    assert_no_secret(&env, &out.all());
    let done: Vec<String> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| common::action(v) == "Upload backup completed successfully")
        .map(|v| v["data"]["destination_name"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = done.clone();
    sorted.sort();
    assert_eq!(sorted, ["blobs", "objects", "ssh"]);

    let items = listed(&env);
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(
        items.iter().all(|i| i["name"] == items[0]["name"]),
        "one backup, three copies"
    );
    for dest in ["objects", "blobs", "ssh"] {
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
        assert_no_secret(&env, &out.all());
        assert_eq!(
            tree(&env.path("source")),
            tree(&env.path(&target)),
            "{dest}"
        );
    }
}

#[test]
fn one_destination_down_does_not_stop_the_other_two() {
    let env = Env::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let dead = format!(
        "http://127.0.0.1:{port}/{}",
        server_env("SB_TEST_AZURE_ACCOUNT")
    );
    write_config(&env, Some(&dead), "");
    let started = Instant::now();
    let out = env.run(&["backup", "config.yml"]);
    out.expect(1);
    assert!(started.elapsed() < Duration::from_mins(1));
    assert!(out.stderr.contains("destination blobs"), "{}", out.stderr);
    assert_no_secret(&env, &out.all());
    let failed: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| common::action(v) == "Upload backup completed with error")
        .collect();
    assert_eq!(failed.len(), 1, "{}", out.stdout);
    assert_eq!(failed[0]["data"]["destination_name"], "blobs");
    assert_eq!(failed[0]["log_level"], 2);
    for dest in ["objects", "ssh"] {
        let out = env.run(&["list", "config.yml", "--destination", dest, "--json"]);
        out.expect(0);
        let items: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(items.len(), 1, "{dest}: {items:?}");
    }
    let t = env.run(&["tasks", "config.yml", "--json"]);
    let tasks: Vec<Value> = serde_json::from_str(&t.stdout).unwrap();
    assert_eq!(tasks[0]["status"], "failed");
    assert!(tasks[0]["reason"].as_str().unwrap().contains("blobs"));
}

#[test]
fn sigterm_mid_upload_leaves_nothing_in_any_destination() {
    let env = Env::new();
    let big = env.path("source/big.bin");
    let made = Command::new("sh")
        .args([
            "-c",
            &format!("head -c 400000000 /dev/urandom > {}", big.display()),
        ])
        .status()
        .unwrap();
    assert!(made.success());
    write_config(&env, None, "");
    let log = env.path("daemon.log");
    let mut child = Command::new(common::binary())
        .args(["run", "config.yml"])
        .current_dir(env.dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let count = |m: &str| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches(m)
            .count()
    };
    let start = Instant::now();
    while count(".Upload backup started\"") < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "uploads did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        count("Upload backup completed successfully"),
        0,
        "an upload finished too soon to test"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let stop = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            stop.elapsed() < Duration::from_secs(15),
            "no exit within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("All backup processes terminated. Exiting")
    );
    assert!(listed(&env).is_empty(), "a partial backup is visible");
    assert_no_secret(&env, &std::fs::read_to_string(&log).unwrap());
}
