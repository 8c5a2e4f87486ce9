//! Disaster recovery drill with the real binary and an `scp` destination on the sshd that
//! tests/run.sh starts: back up, then list, restore and verify from a fresh folder that
//! holds nothing but the configuration and the key.

mod common;

use std::path::Path;

use common::{run, sample_tree, tree};
use service_backup_testkit::{env, files_below, unique};

/// The SSH private key of the tests (a secret of the configuration).
fn ssh_key() -> String {
    std::fs::read_to_string(env("SB_TEST_SCP_KEY")).unwrap()
}

/// A directory on the test server unique to this run.
fn remote_dir(test: &str) -> String {
    format!(
        "{}/{}",
        env("SB_TEST_SCP_DIR"),
        unique(&format!("dr-{test}"))
    )
}

/// A configuration whose only destination is the test server; paths are relative (the
/// key file to the configuration, the source to the working folder).
fn config(port: &str, destination: &str, fingerprint: Option<&str>) -> String {
    let key: String = ssh_key().lines().map(|l| format!("      {l}\n")).collect();
    let fingerprint = fingerprint
        .map(|f| format!("    fingerprint: \"{f}\"\n"))
        .unwrap_or_default();
    format!(
        "destinations:\n- type: scp\n  name: ssh\n  config:\n    server: 127.0.0.1\n    \
         port: {port}\n    user: {user}\n    destination: {destination}\n{fingerprint}    \
         key: |\n{key}\
         source_folder: source\ncron_schedule: \"*/5 * * * *\"\ndeployment_name: redis-prod\n\
         add_deployment_name_to_backup_path: true\nencryption:\n  key_file: backup.key\n",
        user = env("SB_TEST_SCP_USER"),
    )
}

/// Asserts that neither the SSH key nor the encryption key appears in `output`.
fn assert_no_secret(output: &str, dir: &Path) {
    for line in ssh_key().lines().filter(|l| l.len() >= 16) {
        assert!(!output.contains(line), "the SSH key leaked: {output}");
    }
    let key = std::fs::read_to_string(dir.join("backup.key")).unwrap();
    assert!(!output.contains(key.trim()), "the encryption key leaked");
}

#[test]
fn backup_then_list_restore_verify_on_a_fresh_vm() {
    let vm = tempfile::tempdir().unwrap();
    let destination = remote_dir("drill");
    sample_tree(&vm.path().join("source"));
    std::fs::write(
        vm.path().join("config.yml"),
        config(
            &env("SB_TEST_SCP_PORT"),
            &destination,
            Some(&env("SB_TEST_SCP_FINGERPRINT")),
        ),
    )
    .unwrap();
    run(vm.path(), &["keygen", "--output", "backup.key"]).expect(0);
    let backup = run(vm.path(), &["backup", "config.yml"]);
    backup.expect(0);
    assert_no_secret(&backup.all(), vm.path());
    // Only the archive and its manifest are on the server, under deployment/YYYY/MM/DD.
    let stored: Vec<String> = files_below(Path::new(&destination));
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(
        stored
            .iter()
            .all(|f| f.starts_with("redis-prod/") && !f.contains("/.")),
        "{stored:?}"
    );

    // A brand-new VM: the configuration and the key, nothing else.
    let fresh = tempfile::tempdir().unwrap();
    for file in ["config.yml", "backup.key"] {
        std::fs::copy(vm.path().join(file), fresh.path().join(file)).unwrap();
    }
    let list = run(fresh.path(), &["list", "config.yml", "--json"]);
    list.expect(0);
    let items: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(items.len(), 1, "{}", list.stdout);
    assert_eq!(items[0]["destination"], "ssh");
    let key = items[0]["key"].as_str().unwrap();
    assert!(
        key.starts_with("redis-prod/") && key.ends_with(".tar.gz.enc"),
        "{key}"
    );
    assert!(stored.iter().any(|f| f == key), "{key} not in {stored:?}");

    let restore = run(
        fresh.path(),
        &["restore", "config.yml", "--target", "restored"],
    );
    restore.expect(0);
    assert_eq!(
        tree(&fresh.path().join("restored")),
        tree(&vm.path().join("source"))
    );
    let verify = run(fresh.path(), &["verify", "config.yml"]);
    verify.expect(0);
    for out in [&list, &restore, &verify] {
        assert_no_secret(&out.all(), fresh.path());
    }
}

#[test]
fn an_unreachable_server_fails_the_backup_and_names_the_destination() {
    let vm = tempfile::tempdir().unwrap();
    sample_tree(&vm.path().join("source"));
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    std::fs::write(
        vm.path().join("config.yml"),
        config(
            &port,
            &remote_dir("unreachable"),
            Some(&env("SB_TEST_SCP_FINGERPRINT")),
        ),
    )
    .unwrap();
    run(vm.path(), &["keygen", "--output", "backup.key"]).expect(0);
    let backup = run(vm.path(), &["backup", "config.yml"]);
    backup.expect(1);
    let all = backup.all();
    assert!(all.contains("destination ssh"), "{all}");
    assert!(
        all.contains(&format!("127.0.0.1:{port}: connection refused")),
        "{all}"
    );
    assert!(all.contains("Upload backup completed with error"), "{all}");
    assert_no_secret(&all, vm.path());
}

/// With no `fingerprint`, the first connection trusts the server's host key, records it in
/// `state_dir/known_hosts` as OpenSSH would (so `ssh-keygen -F` finds it), and says so at
/// error level; later runs check it silently, and `list` on a fresh VM uses its own record.
#[test]
fn without_a_fingerprint_the_first_key_is_recorded_and_reported() {
    let vm = tempfile::tempdir().unwrap();
    sample_tree(&vm.path().join("source"));
    let port = env("SB_TEST_SCP_PORT");
    std::fs::write(
        vm.path().join("config.yml"),
        config(&port, &remote_dir("unpinned"), None),
    )
    .unwrap();
    run(vm.path(), &["keygen", "--output", "backup.key"]).expect(0);
    let backup = run(vm.path(), &["backup", "config.yml"]);
    backup.expect(0);
    assert_no_secret(&backup.all(), vm.path());
    let first_use = trusted_on_first_use(&backup.stdout);
    assert_eq!(first_use.len(), 1, "{}", backup.all());
    assert_eq!(first_use[0]["log_level"], 2, "{}", first_use[0]);
    let message = first_use[0]["message"].as_str().unwrap();
    let fingerprint = env("SB_TEST_SCP_FINGERPRINT");
    assert!(
        message.contains(&format!("fingerprint: \"{fingerprint}\"")),
        "{message}"
    );
    assert!(
        first_use[0]["data"]["host_key"]
            .as_str()
            .unwrap()
            .starts_with(&fingerprint),
        "{}",
        first_use[0]
    );

    // state_dir defaults to the configuration's folder.
    let known_hosts = vm.path().join("known_hosts");
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    assert_eq!(recorded, format!("{}\n", env("SB_TEST_SCP_KNOWN_HOSTS")));
    assert_eq!(mode(&known_hosts), 0o600);
    let found = std::process::Command::new("ssh-keygen")
        .arg("-F")
        .arg(format!("[127.0.0.1]:{port}"))
        .arg("-f")
        .arg(&known_hosts)
        .output()
        .expect("ssh-keygen runs");
    assert!(found.status.success(), "{found:?}");

    // The next run checks the recorded key: no new record, nothing said.
    let again = run(vm.path(), &["backup", "config.yml"]);
    again.expect(0);
    assert!(
        trusted_on_first_use(&again.stdout).is_empty(),
        "{}",
        again.all()
    );
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), recorded);

    // `list` on a fresh VM keeps its own record in its own state_dir, created 0700.
    let fresh = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(vm.path().join("config.yml")).unwrap();
    std::fs::write(
        fresh.path().join("config.yml"),
        format!("{text}state_dir: state\n"),
    )
    .unwrap();
    std::fs::copy(
        vm.path().join("backup.key"),
        fresh.path().join("backup.key"),
    )
    .unwrap();
    let list = run(fresh.path(), &["list", "config.yml", "--json"]);
    list.expect(0);
    let logged = trusted_on_first_use(&list.stderr);
    assert_eq!(logged.len(), 1, "{}", list.all());
    assert_eq!(logged[0]["log_level"], 2);
    let items: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(items.len(), 2, "{}", list.stdout);
    let state = fresh.path().join("state");
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("known_hosts")), 0o600);
    assert_eq!(
        std::fs::read_to_string(state.join("known_hosts")).unwrap(),
        recorded
    );
}

/// The JSON log lines in `text` that report a host key trusted on first use.
fn trusted_on_first_use(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("trusted on first use"))
        })
        .collect()
}

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
