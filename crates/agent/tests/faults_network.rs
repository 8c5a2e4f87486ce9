//! The fault matrix, network and server side (issue 9, part 1): the real binary against
//! real servers, with faults made by killing servers of the test's own or by the fault
//! relay of `service_backup_testkit::relay` (the proxy below). Every row checks: exit code
//! 1 and a message naming what failed, with no panic and no secret; no backup of the
//! failed run in `list` or `list --all`; a restore target that holds its old content (no
//! staging folder left); the task failed with its reason; and, the fault gone, a backup
//! that is listed, verifies and restores to the source tree.
//!
//! | fault | how it is made | what the agent must do | test |
//! | --- | --- | --- | --- |
//! | S3 server killed mid-upload | a private moto, SIGKILL once 12 MiB went up through the proxy; started again on its port | exit 1 naming the destination and "unreachable"; `list` fails while it is down; nothing listed; task failed; the next backup succeeds | `s3_server_killed_mid_upload_and_mid_restore` |
//! | S3 server killed mid-restore | the same moto, SIGKILL once 2 MiB of the archive came down | exit 1 naming the destination; target keeps its old content; restore task failed; restore after the restart succeeds | `s3_server_killed_mid_upload_and_mid_restore` |
//! | connection reset mid-part, once | the proxy cuts the first connection that passes 1 MiB up (inside the first 6 MiB part) | the part is retried (logged); the backup succeeds, is listed, verifies, restores; task done | `s3_connection_reset_once_mid_part_is_retried` |
//! | connection reset mid-part, always | the proxy cuts every connection at 1 MiB up | exit 1 naming the destination and bucket after bounded retries; nothing listed; the multipart upload aborted (none left in the bucket); task failed; next run succeeds | `s3_connection_reset_on_every_connection_fails_cleanly` |
//! | Azure block list commit refused | the proxy answers `PUT …?comp=blocklist` itself: 500 (retried), then 403 | exit 1 naming the destination; no blob listed; task failed; next run succeeds | `azure_block_list_commit_refused` |
//! | sshd stopped mid-transfer | a private sshd and its sessions killed (SIGKILL) once 4 MiB went up through the proxy; started again | exit 1 naming the destination; `list` fails while it is down; only a hidden temporary file remains, nothing listed; task failed; next run succeeds | `sshd_stopped_mid_transfer` |
//! | corrupt object on read | the proxy flips one byte in the middle of every GET body of a `.tar.gz.enc`, on S3, then on Azure, beside a sound copy in the other | `verify`/`restore --destination BAD` exit 1 naming the backup and the destination; target untouched; restore task failed; `restore` without `--destination` takes the same backup from the sound destination and logs the damaged copy | `corrupt_object_on_read` |
//! | connection cut at 90 % of a restore | the proxy resets the connection whose answer passes 90 % of the archive's bytes, once | the restore succeeds and restores the exact tree; the relay shows under 15 % of the archive downloaded again (only what was in flight); task done | `s3_connection_cut_at_90_percent_of_a_restore_resumes` |
//! | restore killed (SIGKILL) at 75 %, then restored again | the proxy holds every answer past 75 % of the archive; once the restore wrote a checkpoint it is killed; the proxy healed | the target is left as it was (empty); the next `restore` of the same backup into the same target logs that it resumes from the checkpoint, downloads only from the checkpoint's block on (what it downloads is under the archive less the checkpoint's offset, plus 2 MiB), restores the exact tree (folders' modes and symlinks before the checkpoint included); checkpoint and staging folder gone; task done | `restore_killed_at_75_percent_resumes_from_its_checkpoint` |
//! | store down when the backup starts | an S3 endpoint where nothing listens yet | exit 1 quickly, naming the destination, "unreachable" and `endpoint_url`; a restore fails with the target untouched; nothing listed once it is up; next run succeeds | `s3_server_down_at_start` |
//!
//! Covered elsewhere: one of three destinations down (`fanout.rs`), SIGTERM and SIGKILL
//! mid-upload (`faults_host.rs`, `fanout.rs`, `daemon.rs`); refused connections, a store
//! that never answers and a paused sshd at destination level (each destination crate's
//! `tests/faults.rs`).

mod common;

use std::io::Write as _;
use std::time::Duration;

use common::{Env, Run, server_env, tree, unique};
use serde_json::Value;
use service_backup_testkit::{Faults, Relay, ServerProcess, Sshd, files_below, moto, request};

const S3_SECRET: &str = "netfaults-s3-secret-access-key";
const MIB: u64 = 1024 * 1024;

// --- destinations, configuration and the five checks ---------------------------------

/// YAML of an `s3` destination named `name` at `endpoint`.
fn s3_dest(name: &str, endpoint: &str, bucket: &str) -> String {
    common::secret(S3_SECRET);
    format!(
        "- type: s3\n  name: {name}\n  config:\n    bucket_name: {bucket}\n    bucket_path: net\n    \
         access_key_id: netfaults-key-id\n    secret_access_key: {S3_SECRET}\n    endpoint_url: {endpoint}\n"
    )
}

/// YAML of an `azure` destination named `name` at the blob `endpoint`.
fn azure_dest(name: &str, endpoint: &str) -> String {
    format!(
        "- type: azure\n  name: {name}\n  config:\n    storage_account: {account}\n    storage_access_key: {key}\n    \
         container: {container}\n    path: net\n    endpoint: {endpoint}\n",
        account = server_env("SB_TEST_AZURE_ACCOUNT"),
        key = server_env("SB_TEST_AZURE_KEY"),
        container = unique("net").to_lowercase(),
    )
}

/// YAML of an `scp` destination named `name` on `port`, writing into `remote`.
fn scp_dest(name: &str, port: u16, remote: &std::path::Path) -> String {
    let key: String = std::fs::read_to_string(server_env("SB_TEST_SCP_KEY"))
        .unwrap()
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    format!(
        "- type: scp\n  name: {name}\n  config:\n    server: 127.0.0.1\n    port: {port}\n    user: {user}\n    \
         destination: {remote}\n    fingerprint: \"{fingerprint}\"\n    key: |\n{key}",
        user = server_env("SB_TEST_SCP_USER"),
        remote = remote.display(),
        fingerprint = server_env("SB_TEST_SCP_FINGERPRINT"),
    )
}

/// Writes `config.yml` with `destinations`, the sample source, a key and a `state_dir`.
fn write_config(env: &Env, destinations: &[String]) {
    let d = env.dir.path().display();
    let yaml = format!(
        "destinations:\n{}source_folder: {d}/source\ncron_schedule: \"0 3 * * *\"\n\
         state_dir: {d}/state\nencryption:\n  key_file: {d}/backup.key\n",
        destinations.concat()
    );
    std::fs::write(env.path("config.yml"), yaml).unwrap();
}

/// A bucket name of this test's own.
fn bucket(what: &str) -> String {
    unique(what).to_lowercase()
}

/// Adds `len` bytes of incompressible data to the source, so that a transfer takes a
/// while and spans several parts or blocks.
fn add_noise(env: &Env, len: u64) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(env.path("source/noise.bin")).unwrap());
    for _ in 0..len / 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        file.write_all(&x.to_le_bytes()).unwrap();
    }
    file.flush().unwrap();
}

/// Asserts that no configured secret shows in `text`.
fn assert_no_secret(env: &Env, text: &str) {
    for s in [
        S3_SECRET.to_string(),
        server_env("SB_TEST_AZURE_KEY"),
        env.key_text(),
    ] {
        assert!(!text.contains(&s), "a secret leaked into: {text}");
    }
    let ssh = std::fs::read_to_string(server_env("SB_TEST_SCP_KEY")).unwrap();
    for line in ssh.lines().filter(|l| l.len() > 20) {
        assert!(!text.contains(line), "the SSH key leaked into: {text}");
    }
}

/// Check 1: the run failed with exit code 1, named `names` on stderr, and printed no
/// panic and no secret.
fn assert_failed(env: &Env, out: &Run, names: &[&str]) {
    out.expect(1);
    for name in names {
        assert!(
            out.stderr.contains(name),
            "{name:?} not named in: {}",
            out.stderr
        );
    }
    assert!(!out.all().contains("panicked"), "{}", out.all());
    assert_no_secret(env, &out.all());
}

/// The backups `list` shows (`args` added), which must succeed.
fn listed(env: &Env, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["list", "config.yml", "--json"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    out.expect(0);
    assert_no_secret(env, &out.all());
    serde_json::from_str(&out.stdout).unwrap_or_else(|_| panic!("{}", out.all()))
}

/// Check 2: neither `list` nor `list --all` shows a backup.
fn assert_nothing_listed(env: &Env) {
    assert_eq!(
        listed(env, &[]),
        Vec::<Value>::new(),
        "a backup of the failed run is listed"
    );
    assert_eq!(
        listed(env, &["--all"]),
        Vec::<Value>::new(),
        "list --all shows one"
    );
}

/// The tasks recorded, oldest first.
fn tasks(env: &Env) -> Vec<Value> {
    let out = env.run(&["tasks", "config.yml", "--json"]);
    out.expect(0);
    serde_json::from_str(&out.stdout).unwrap()
}

/// Check 4: the newest task of `kind` is `failed` with a reason containing each of `names`.
fn assert_task_failed(env: &Env, kind: &str, names: &[&str]) -> String {
    let all = tasks(env);
    let task = all
        .iter()
        .filter(|t| t["kind"] == kind)
        .max_by_key(|t| t["id"].as_i64())
        .unwrap_or_else(|| panic!("no {kind} task: {all:?}"));
    assert_eq!(task["status"], "failed", "{task}");
    let reason = task["reason"].as_str().unwrap_or_default().to_string();
    for name in names {
        assert!(
            reason.contains(name),
            "{name:?} not in the task's reason: {reason}"
        );
    }
    reason
}

/// A restore target holding older content; returns its tree.
fn old_target(env: &Env, name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = env.path(name);
    std::fs::create_dir_all(dir.join("keep")).unwrap();
    std::fs::write(dir.join("keep/old.txt"), "the content before the restore\n").unwrap();
    tree(&dir)
}

/// Check 3: `target` holds `before` exactly: no new file, no staging folder left.
fn assert_untouched(env: &Env, target: &str, before: &[(String, Vec<u8>)]) {
    assert_eq!(
        tree(&env.path(target)),
        before,
        "the restore target changed"
    );
}

/// Restores the newest backup from `dest` into `target` (replacing it) and checks that it
/// holds the source tree, and nothing else.
fn assert_restores(env: &Env, dest: &str, target: &str) {
    let out = env.run(&[
        "restore",
        "config.yml",
        "--destination",
        dest,
        "--target",
        target,
        "--force",
    ]);
    out.expect(0);
    assert_no_secret(env, &out.all());
    assert_eq!(tree(&env.path("source")), tree(&env.path(target)), "{dest}");
}

/// Check 5: with the fault gone, a backup succeeds, is listed in `dests`, verifies and
/// restores from each.
fn assert_next_run_succeeds(env: &Env, dests: &[&str]) {
    let before = listed(env, &[]).len();
    let out = env.run(&["backup", "config.yml"]);
    out.expect(0);
    assert_no_secret(env, &out.all());
    let items = listed(env, &[]);
    assert_eq!(items.len(), before + dests.len(), "{items:?}");
    let last = tasks(env)
        .into_iter()
        .rfind(|t| t["kind"] == "backup")
        .unwrap();
    assert_eq!(last["status"], "done", "{last}");
    for dest in dests {
        let out = env.run(&["verify", "config.yml", "--destination", dest]);
        out.expect(0);
        let target = format!("next-{dest}");
        assert_restores(env, dest, &target);
    }
}

/// Runs the binary with `args` in the background.
fn spawn(env: &Env, args: &[&str]) -> std::process::Child {
    std::process::Command::new(common::binary())
        .args(args)
        .current_dir(env.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// What a background run printed once it ended.
fn finish(child: std::process::Child) -> Run {
    Run::from(child.wait_with_output().unwrap())
}

// --- servers (those of a test's own, to kill, are service_backup_testkit's) -------------

/// The port of the shared server at `SB_TEST_*` endpoint `var`.
fn port_of(var: &str) -> u16 {
    service_backup_testkit::port_of(&server_env(var))
}

// --- rows ------------------------------------------------------------------------------

/// The bucket at `endpoint`, without the agent.
fn direct(endpoint: &str, bucket: &str) -> service_backup_s3::S3Destination {
    let mut settings = service_backup_s3::S3Settings::new(
        bucket,
        "netfaults-key-id",
        service_backup_core::secret::Secret::new(S3_SECRET),
    );
    settings.endpoint_url = Some(endpoint.to_string());
    service_backup_s3::S3Destination::new(&settings).unwrap()
}

/// Creates `bucket` in a (re)started moto, which keeps nothing across restarts, with a
/// marker object outside the backups' path.
fn create_bucket(moto: &ServerProcess, bucket: &str) {
    use service_backup_core::destination::Destination as _;
    let dest = direct(&format!("http://127.0.0.1:{}", moto.port), bucket);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(dest.put("marker", bytes::Bytes::new()))
        .unwrap();
}

/// Row 1: moto killed mid-upload, then mid-restore download.
#[test]
fn s3_server_killed_mid_upload_and_mid_restore() {
    let env = Env::new();
    add_noise(&env, 24 * MIB);
    let mut moto = moto();
    moto.start();
    let proxy = Relay::start(moto.port);
    let bucket = bucket("killed");
    write_config(&env, &[s3_dest("objects", &proxy.url(""), &bucket)]);

    let child = spawn(&env, &["backup", "config.yml"]);
    proxy.wait_for("12 MiB up", Duration::from_mins(2), |c| c.up >= 12 * MIB);
    moto.kill();
    let out = finish(child);
    assert_failed(&env, &out, &["destination objects", "unreachable"]);
    // While the store is down, list says so rather than "no backups".
    let down = env.run(&["list", "config.yml"]);
    assert_failed(&env, &down, &["destination objects"]);
    moto.start();
    create_bucket(&moto, &bucket);
    assert_nothing_listed(&env);
    assert_task_failed(&env, "backup", &["destination objects"]);
    assert_next_run_succeeds(&env, &["objects"]);

    // Mid-restore: the target keeps its old content, no staging folder is left.
    let before = old_target(&env, "target");
    let down_before = proxy.counts().down;
    let child = spawn(
        &env,
        &["restore", "config.yml", "--target", "target", "--force"],
    );
    proxy.wait_for("2 MiB down", Duration::from_mins(2), |c| {
        c.down >= down_before + 2 * MIB
    });
    moto.kill();
    let out = finish(child);
    assert_failed(&env, &out, &["destination objects"]);
    assert_untouched(&env, "target", &before);
    assert_task_failed(&env, "restore", &["destination objects"]);
    // moto keeps its objects in memory: the restarted one is empty, so the next run is
    // a new backup, restored over the old content.
    moto.start();
    create_bucket(&moto, &bucket);
    assert_nothing_listed(&env);
    assert_next_run_succeeds(&env, &["objects"]);
    assert_restores(&env, "objects", "target");
}

/// Row 2a: one connection reset mid-part: the retry makes the backup succeed.
#[test]
fn s3_connection_reset_once_mid_part_is_retried() {
    let env = Env::new();
    add_noise(&env, 12 * MIB);
    let proxy = Relay::start(port_of("SB_TEST_S3_ENDPOINT"));
    write_config(
        &env,
        &[s3_dest("objects", &proxy.url(""), &bucket("reset-once"))],
    );
    proxy.set(Faults {
        cut_after: Some(MIB),
        cut_times: Some(1),
        ..Faults::default()
    });
    let out = env.run(&["backup", "config.yml"]);
    out.expect(0);
    assert_no_secret(&env, &out.all());
    assert_eq!(proxy.counts().cuts, 1, "{:?}", proxy.counts());
    assert!(
        out.stdout.contains("retrying after a temporary failure"),
        "no retry logged: {}",
        out.stdout
    );
    let items = listed(&env, &[]);
    assert_eq!(items.len(), 1, "{items:?}");
    let last = &tasks(&env)[0];
    assert_eq!(last["status"], "done", "{last}");
    let verify = env.run(&["verify", "config.yml"]);
    verify.expect(0);
    assert_restores(&env, "objects", "restored");
    assert_next_run_succeeds(&env, &["objects"]);
}

/// Row: the connection cut once 90 % of the archive came down: the restore resumes where
/// it stopped instead of downloading the archive again.
#[test]
fn s3_connection_cut_at_90_percent_of_a_restore_resumes() {
    let env = Env::new();
    add_noise(&env, 40 * MIB);
    let proxy = Relay::start(port_of("SB_TEST_S3_ENDPOINT"));
    write_config(
        &env,
        &[s3_dest("objects", &proxy.url(""), &bucket("cut-90"))],
    );
    env.run(&["backup", "config.yml"]).expect(0);
    let items = listed(&env, &[]);
    let stored = items[0]["stored_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("{items:?}"));
    assert!(stored > 40 * MIB, "{stored}");

    let down_before = proxy.counts().down;
    proxy.set(Faults {
        reset_answers_at: Some(down_before + stored * 9 / 10),
        ..Faults::default()
    });
    let out = env.run(&["restore", "config.yml", "--target", "restored"]);
    out.expect(0);
    assert_no_secret(&env, &out.all());
    assert_eq!(proxy.counts().resets, 1, "{:?}", proxy.counts());
    assert_eq!(tree(&env.path("source")), tree(&env.path("restored")));
    let last = tasks(&env)
        .into_iter()
        .rfind(|t| t["kind"] == "restore")
        .unwrap();
    assert_eq!(last["status"], "done", "{last}");
    // Everything that came down during the restore: the archive once, the listing and
    // the manifest, and what was in flight when the connection was cut.
    let down = proxy.counts().down - down_before;
    let again = down.saturating_sub(stored);
    assert!(
        again * 100 < stored * 15,
        "{again} bytes downloaded again for an archive of {stored} ({down} in all)"
    );
}

/// The checkpoint a restore keeps in the env's `state_dir`, if any.
fn checkpoint(env: &Env) -> Option<Value> {
    std::fs::read_dir(env.path("state"))
        .ok()?
        .filter_map(Result::ok)
        .find(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("restore-") && name.ends_with(".json")
        })
        .and_then(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
}

/// The staging folders of restores left beside the env's targets.
fn staging_folders(env: &Env) -> Vec<String> {
    std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".service-backup-restore-"))
        .collect()
}

/// Row: a restore killed once it wrote a checkpoint goes on from it the next time.
#[test]
fn restore_killed_at_75_percent_resumes_from_its_checkpoint() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = Env::new();
    // Folders, a file and symlinks first in the archive: a folder's mode and the symlinks
    // are made at the end of a restore, so the resumed run makes them from the index.
    std::fs::create_dir_all(env.path("source/aaa/conf")).unwrap();
    std::fs::write(env.path("source/aaa/conf/main.conf"), "port = 5432\n").unwrap();
    std::os::unix::fs::symlink("../noise.bin", env.path("source/aaa/latest")).unwrap();
    std::os::unix::fs::symlink("/var/log", env.path("source/aaa/logs")).unwrap();
    std::fs::set_permissions(
        env.path("source/aaa/conf"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    add_noise(&env, 96 * MIB);
    let proxy = Relay::start(port_of("SB_TEST_S3_ENDPOINT"));
    write_config(
        &env,
        &[s3_dest("objects", &proxy.url(""), &bucket("killed-75"))],
    );
    env.run(&["backup", "config.yml"]).expect(0);
    let items = listed(&env, &[]);
    let name = items[0]["name"].as_str().unwrap().to_string();
    let stored = items[0]["stored_bytes"].as_u64().unwrap();

    let target = env.path("restored");
    let down_before = proxy.counts().down;
    proxy.set(Faults {
        pause_answers_at: Some(down_before + stored * 3 / 4),
        ..Faults::default()
    });
    let args = [
        "restore",
        "config.yml",
        "--backup",
        &name,
        "--target",
        target.to_str().unwrap(),
    ];
    let restore = common::host::Agent::start(&env, "restore", &args, &[]);
    let started = std::time::Instant::now();
    while checkpoint(&env).is_none() {
        assert!(
            started.elapsed() < Duration::from_mins(2),
            "no checkpoint written: {:?}\n{:?}\n{:?}\n{}",
            proxy.counts(),
            restore.lines(),
            staging_folders(&env)
                .iter()
                .map(|f| files_below(&env.path(f)))
                .collect::<Vec<_>>(),
            std::fs::read_to_string(env.path("restore.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    restore.kill();
    let mark = checkpoint(&env).unwrap();
    assert_eq!(mark["backup"], name, "{mark}");
    let at = mark["tar_offset"].as_u64().unwrap();
    assert!(at >= 32 * MIB && at < stored * 3 / 4, "{mark}");
    // The target holds nothing yet; the staging folder beside it is kept for the next run.
    assert!(files_below(&target).is_empty());
    assert_eq!(staging_folders(&env).len(), 1);

    proxy.heal();
    let down_before = proxy.counts().down;
    // `-v`: the line saying the restore resumes is an informational one.
    let out = env.run(&[
        "-v",
        "restore",
        "config.yml",
        "--backup",
        &name,
        "--target",
        "restored",
    ]);
    out.expect(0);
    assert_no_secret(&env, &out.all());
    let all = out.all();
    let resumed = all
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("resuming the restore where it stopped"))
        })
        .unwrap_or_else(|| panic!("the restore did not resume:\n{}", out.all()));
    assert_eq!(
        resumed["data"]["tar_offset"].as_u64(),
        Some(at),
        "{resumed}"
    );
    // From the block holding the checkpoint on (random data: the tar stream is about as
    // long as the archive), with the listing, the manifest, the header and the index.
    let down = proxy.counts().down - down_before;
    assert!(
        down < stored - at + 2 * MIB,
        "{down} bytes downloaded to resume at {at} of {stored}"
    );
    assert_eq!(tree(&env.path("source")), tree(&target));
    let conf = std::fs::metadata(target.join("aaa/conf")).unwrap();
    assert_eq!(conf.permissions().mode() & 0o777, 0o750);
    assert_eq!(
        std::fs::read_link(target.join("aaa/logs")).unwrap(),
        std::path::Path::new("/var/log")
    );
    assert!(checkpoint(&env).is_none(), "the checkpoint was left");
    assert!(
        staging_folders(&env).is_empty(),
        "{:?}",
        staging_folders(&env)
    );
    let last = tasks(&env)
        .into_iter()
        .rfind(|t| t["kind"] == "restore")
        .unwrap();
    assert_eq!(last["status"], "done", "{last}");
}

/// Row 2b: every connection reset mid-part: bounded retries, a clear error, nothing
/// listed and no incomplete multipart upload left behind.
#[test]
fn s3_connection_reset_on_every_connection_fails_cleanly() {
    let env = Env::new();
    add_noise(&env, 12 * MIB);
    let proxy = Relay::start(port_of("SB_TEST_S3_ENDPOINT"));
    let bucket = bucket("reset-all");
    write_config(&env, &[s3_dest("objects", &proxy.url(""), &bucket)]);
    proxy.set(Faults {
        cut_after: Some(MIB),
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let out = env.run(&["backup", "config.yml"]);
    assert_failed(
        &env,
        &out,
        &["destination objects", &format!("s3 bucket {bucket}")],
    );
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "{:?}",
        started.elapsed()
    );
    assert!(proxy.counts().cuts > 1, "{:?}", proxy.counts());
    proxy.heal();
    assert_nothing_listed(&env);
    // The agent aborted its multipart upload: nothing waits in the bucket either.
    let stale = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(direct(&server_env("SB_TEST_S3_ENDPOINT"), &bucket).incomplete_uploads(""))
        .unwrap();
    assert!(stale.is_empty(), "incomplete uploads left: {stale:?}");
    assert_task_failed(&env, "backup", &["destination objects"]);
    assert_next_run_succeeds(&env, &["objects"]);
}

/// Row 3: Azure refuses the block list commit (500, then 403).
#[test]
fn azure_block_list_commit_refused() {
    for (status, code) in [(500, "InternalError"), (403, "AuthorizationFailure")] {
        let env = Env::new();
        add_noise(&env, 10 * MIB);
        let proxy = Relay::start(port_of("SB_TEST_AZURE_ENDPOINT"));
        let account = server_env("SB_TEST_AZURE_ACCOUNT");
        write_config(
            &env,
            &[azure_dest("blobs", &proxy.url(&format!("/{account}")))],
        );
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>refused by the test</Message></Error>"
        );
        proxy.set(Faults {
            answer: Some((request("PUT", "comp=blocklist"), status, body)),
            ..Faults::default()
        });
        let out = env.run(&["backup", "config.yml"]);
        assert_failed(&env, &out, &["destination blobs"]);
        assert!(
            proxy.counts().answered >= 1,
            "{status}: {:?}",
            proxy.counts()
        );
        proxy.heal();
        assert_nothing_listed(&env);
        assert_task_failed(&env, "backup", &["destination blobs"]);
        assert_next_run_succeeds(&env, &["blobs"]);
    }
}

/// Row 4: sshd killed mid-transfer (with the sessions it serves), then started again.
#[test]
fn sshd_stopped_mid_transfer() {
    let env = Env::new();
    add_noise(&env, 24 * MIB);
    let mut sshd = Sshd::start();
    let proxy = Relay::raw(sshd.port);
    let remote = std::path::PathBuf::from(server_env("SB_TEST_SCP_DIR")).join(unique("netfaults"));
    write_config(&env, &[scp_dest("ssh", proxy.port, &remote)]);

    let child = spawn(&env, &["backup", "config.yml"]);
    proxy.wait_for("4 MiB up", Duration::from_mins(2), |c| c.up >= 4 * MIB);
    sshd.kill();
    let out = finish(child);
    assert_failed(&env, &out, &["destination ssh"]);
    let down = env.run(&["list", "config.yml"]);
    assert_failed(&env, &down, &["destination ssh"]);
    sshd.start();
    assert_nothing_listed(&env);
    // Only the hidden temporary file may be left: never an archive or manifest under its
    // own name.
    let visible: Vec<String> = files_below(&remote)
        .into_iter()
        .filter(|f| !f.rsplit('/').next().unwrap().starts_with('.'))
        .collect();
    assert!(visible.is_empty(), "{visible:?}");
    assert_task_failed(&env, "backup", &["destination ssh"]);
    assert_next_run_succeeds(&env, &["ssh"]);
}

/// Row 5: a store that returns corrupt archives on read (S3, then Azure), beside one that
/// does not.
#[test]
fn corrupt_object_on_read() {
    let env = Env::new();
    add_noise(&env, 6 * MIB);
    let s3 = Relay::start(port_of("SB_TEST_S3_ENDPOINT"));
    let azure = Relay::start(port_of("SB_TEST_AZURE_ENDPOINT"));
    let account = server_env("SB_TEST_AZURE_ACCOUNT");
    write_config(
        &env,
        &[
            s3_dest("objects", &s3.url(""), &bucket("corrupt")),
            azure_dest("blobs", &azure.url(&format!("/{account}"))),
        ],
    );
    env.run(&["backup", "config.yml"]).expect(0);
    let items = listed(&env, &[]);
    assert_eq!(items.len(), 2, "{items:?}");
    let name = items[0]["name"].as_str().unwrap().to_string();

    for (bad, good, proxy) in [("objects", "blobs", &s3), ("blobs", "objects", &azure)] {
        proxy.set(Faults {
            corrupt: Some(request("GET", ".tar.gz.enc")),
            ..Faults::default()
        });
        let verify = env.run(&["verify", "config.yml", "--destination", bad]);
        assert_failed(&env, &verify, &[&name, &format!("destination {bad}")]);
        let before = old_target(&env, "target");
        let restore = env.run(&[
            "restore",
            "config.yml",
            "--destination",
            bad,
            "--target",
            "target",
            "--force",
        ]);
        assert_failed(&env, &restore, &[&name, &format!("destination {bad}")]);
        assert_untouched(&env, "target", &before);
        assert_task_failed(&env, "restore", &[&name, &format!("destination {bad}")]);
        assert!(proxy.counts().corrupted >= 2, "{:?}", proxy.counts());

        // Without --destination, verify reports the damaged copy it read first...
        if bad == "objects" {
            let verify = env.run(&["verify", "config.yml"]);
            assert_failed(&env, &verify, &[&name, "destination objects"]);
        }
        // ...and a restore takes the same backup from the destination whose copy is
        // sound, saying which copy was damaged.
        let restore = env.run(&["restore", "config.yml", "--target", "target", "--force"]);
        restore.expect(0);
        assert_no_secret(&env, &restore.all());
        if bad == "objects" {
            assert!(
                restore.all().contains("destination objects") && restore.all().contains("damaged"),
                "the damaged copy is not reported: {}",
                restore.all()
            );
        }
        assert!(restore.stderr.contains(&name), "{}", restore.stderr);
        assert_eq!(
            tree(&env.path("source")),
            tree(&env.path("target")),
            "restored from {good}"
        );
        std::fs::remove_dir_all(env.path("target")).unwrap();
        proxy.heal();
    }
    for dest in ["objects", "blobs"] {
        env.run(&["verify", "config.yml", "--destination", dest])
            .expect(0);
    }
    assert_next_run_succeeds(&env, &["objects", "blobs"]);
}

/// Row 6: the store is down when the backup starts, and comes up afterwards.
#[test]
fn s3_server_down_at_start() {
    let env = Env::new();
    let mut moto = moto();
    let bucket = bucket("down");
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    write_config(&env, &[s3_dest("objects", &endpoint, &bucket)]);
    let started = std::time::Instant::now();
    let out = env.run(&["backup", "config.yml"]);
    assert_failed(
        &env,
        &out,
        &["destination objects", "unreachable", "endpoint_url"],
    );
    assert!(
        started.elapsed() < Duration::from_mins(1),
        "{:?}",
        started.elapsed()
    );
    let before = old_target(&env, "target");
    let restore = env.run(&["restore", "config.yml", "--target", "target", "--force"]);
    assert_failed(&env, &restore, &["destination objects"]);
    assert_untouched(&env, "target", &before);
    assert_task_failed(&env, "restore", &["destination objects"]);
    moto.start();
    create_bucket(&moto, &bucket);
    assert_nothing_listed(&env);
    assert_task_failed(&env, "backup", &["destination objects"]);
    assert_next_run_succeeds(&env, &["objects"]);
}

// --- issue 20, finding 4: an SSH server that presents another host key -------------------
//
// | fault | how it is made | what the agent must do | test |
// | --- | --- | --- | --- |
// | changed SSH host key, no `fingerprint` | a private sshd whose host key is recorded by a first backup, restarted with a new ed25519 key, then with an RSA key only | exit 1 naming the destination, the recorded and the presented fingerprints, and the `ssh-keygen -R` command; no login, nothing written on the server, known_hosts unchanged; `list` refused too; task failed; after the `ssh-keygen -R` of the message (or with `fingerprint` set to the new key) the next run succeeds | `changed_ssh_host_key_is_refused_before_login` |

/// An sshd of the test's own with a single host key of its own, which the test replaces.
struct KeyedSshd {
    port: u16,
    sshd: Sshd,
    keys: u32,
}

impl KeyedSshd {
    /// Starts one with a new ed25519 host key; fails (never skips) without sshd.
    fn start() -> Self {
        let sshd = Sshd::stopped();
        let mut keyed = Self {
            port: sshd.port,
            sshd,
            keys: 0,
        };
        keyed.new_host_key("ed25519");
        keyed.sshd.start();
        keyed
    }

    /// Makes a new host key of `key_type` the server's only one (it takes effect at the
    /// next start); returns its fingerprint as `ssh-keygen -l` prints it.
    fn new_host_key(&mut self, key_type: &str) -> String {
        self.keys += 1;
        let key = self.sshd.dir().join(format!("host_key_{}", self.keys));
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", key_type, "-N", "", "-C", "test-host", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen runs");
        assert!(made.success(), "ssh-keygen -t {key_type} failed");
        self.sshd.set_host_keys([key.as_path()]);
        let shown = std::process::Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(key.with_extension("pub"))
            .output()
            .expect("ssh-keygen runs");
        let text = String::from_utf8(shown.stdout).unwrap();
        let fingerprint = text.split_whitespace().nth(1).unwrap().to_string();
        assert!(fingerprint.starts_with("SHA256:"), "{text}");
        fingerprint
    }

    /// Replaces the host key with a new one of `key_type`: stopped, then started again.
    fn change_host_key(&mut self, key_type: &str) -> String {
        self.sshd.kill();
        let fingerprint = self.new_host_key(key_type);
        self.sshd.start();
        fingerprint
    }

    /// How many logins the server accepted so far (from its log).
    fn logins(&self) -> usize {
        std::fs::read_to_string(self.sshd.dir().join("sshd.log"))
            .unwrap_or_default()
            .matches("Accepted publickey")
            .count()
    }
}

/// Row (issue 20, finding 4): with no `fingerprint`, the host key of the first connection
/// is recorded; a server that later presents another key (a machine in the middle, or a
/// reinstalled server) is refused before the agent logs in or writes anything.
#[test]
fn changed_ssh_host_key_is_refused_before_login() {
    let env = Env::new();
    let mut sshd = KeyedSshd::start();
    let port = sshd.port;
    let remote = std::path::PathBuf::from(server_env("SB_TEST_SCP_DIR")).join(unique("hostkey"));
    let pinned = scp_dest("ssh", port, &remote);
    let unpinned = pinned.replace(
        &format!(
            "    fingerprint: \"{}\"\n",
            server_env("SB_TEST_SCP_FINGERPRINT")
        ),
        "",
    );
    assert_ne!(pinned, unpinned);
    write_config(&env, std::slice::from_ref(&unpinned));
    env.run(&["backup", "config.yml"]).expect(0);
    let known_hosts = env.path("state/known_hosts");
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(
        recorded.starts_with(&format!("[127.0.0.1]:{port} ssh-ed25519 AAAA")),
        "{recorded}"
    );
    let first = files_below(&remote);
    assert_eq!(first.len(), 2, "{first:?}");

    // The server now presents another ed25519 key.
    let old_key = recorded_fingerprint(&known_hosts);
    let new_key = sshd.change_host_key("ed25519");
    let logins = sshd.logins();
    let remove = format!(
        "ssh-keygen -R '[127.0.0.1]:{port}' -f {}",
        known_hosts.display()
    );
    let out = env.run(&["backup", "config.yml"]);
    assert_failed(
        &env,
        &out,
        &[
            "destination ssh",
            "has changed",
            &old_key,
            &new_key,
            &remove,
            "`fingerprint`",
        ],
    );
    assert_eq!(files_below(&remote), first, "something was written");
    assert_eq!(sshd.logins(), logins, "the agent logged in");
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), recorded);
    let listing = env.run(&["list", "config.yml"]);
    assert_failed(&env, &listing, &["destination ssh", &old_key, &new_key]);
    assert_task_failed(&env, "backup", &["destination ssh", &old_key, &new_key]);

    // As the message says: delete the old key, and the next run records the new one.
    let removed = std::process::Command::new("sh")
        .arg("-c")
        .arg(&remove)
        .output()
        .expect("sh runs");
    assert!(removed.status.success(), "{removed:?}");
    assert_next_run_succeeds(&env, &["ssh"]);
    assert_eq!(recorded_fingerprint(&known_hosts), new_key);
    assert!(sshd.logins() > logins, "the agent did not log in again");

    // A key of another type only: refused as well (the recorded type is not offered).
    let rsa_key = sshd.change_host_key("rsa");
    let stored = files_below(&remote);
    let out = env.run(&["backup", "config.yml"]);
    assert_failed(&env, &out, &["destination ssh", &new_key, &rsa_key]);
    assert_eq!(files_below(&remote), stored, "something was written");
    // The other way the message gives: `fingerprint` set to the new key wins.
    write_config(
        &env,
        &[pinned.replace(&server_env("SB_TEST_SCP_FINGERPRINT"), &rsa_key)],
    );
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    env.run(&["backup", "config.yml"]).expect(0);
    assert_eq!(files_below(&remote).len(), stored.len() + 2);
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), recorded);
}

/// The fingerprint of the only key in a `known_hosts` file, as `ssh-keygen -l` prints it.
fn recorded_fingerprint(known_hosts: &std::path::Path) -> String {
    let shown = std::process::Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(known_hosts)
        .output()
        .expect("ssh-keygen runs");
    let text = String::from_utf8(shown.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    text.split_whitespace().nth(1).unwrap().to_string()
}
