//! The fault matrix, host side: disks, signals, clocks and concurrency, each through the
//! real binary against real servers and real processes (issue 9, part 1).
//!
//! Every row checks the five points: a clear error (exit code, what failed named, no
//! panic, no secret: the run helpers record output for tests/run.sh's secrets check); no
//! partial backup listed in any destination; no half-written restore target; the task
//! state; and a backup after the fault that is listed, verifies and restores the source.
//!
//! | fault | how it is made | what the agent must do | test |
//! | --- | --- | --- | --- |
//! | disk full in the restore target | a 2 MiB tmpfs as the target, holding old content, and a 6 MiB backup | exit 1 naming the target and "No space left"; staging folder removed, old content intact; restore task failed; once the disk is larger the restore completes | `disk_full_in_the_restore_target_keeps_the_old_content` |
//! | disk full in `state_dir` | a 1 MiB tmpfs as `state_dir`, filled up | exit 1, "database or disk is full" with the database's path, nothing uploaded; the task database intact; once space is freed backups work again | `disk_full_in_the_state_dir_is_named_and_the_database_survives` |
//! | disk full in a `local` destination | one of two local destinations on a 2 MiB tmpfs | exit 1 naming that destination and "No space left"; no temporary file left there; the other destination gets the backup; task failed naming the destination | `disk_full_in_one_local_destination_leaves_the_other_one_complete` |
//! | SIGTERM mid-upload (daemon) | daemon uploading to S3 (moto) and a local folder, frozen with SIGSTOP once 1 MiB is written, then SIGTERM | exit 0 within 15 s, "All backup processes terminated. Exiting"; only the backup made before listed, no temporary file, no multipart upload left; task failed "terminated" | `sigterm_mid_upload_daemon_and_one_shot` |
//! | SIGTERM mid-upload (one-shot `backup`) | the same with `service-backup backup` | exit 1, "stopped" on stderr; the same checks | `sigterm_mid_upload_daemon_and_one_shot` |
//! | SIGKILL mid-upload, then restart | daemon frozen once 17 MiB reached the local folder (S3 has a multipart upload open), SIGKILL | only the backup made before listed; after restart the task is failed "interrupted"; the next backup succeeds; a prune a day later (libfaketime) removes the temporary file and the multipart upload | `sigkill_mid_upload_then_restart_recovers_and_prune_cleans_up` |
//! | restart with queued tasks | daemon with the API; `POST /backups` three times while a dump blocks; SIGTERM; restart | the running task failed "terminated", the queued one failed "terminated" (never stuck queued or running); the next API backup is done | `restart_with_queued_tasks_records_them_and_runs_the_next` |
//! | two agents, one prefix | two processes, same S3 bucket and prefix, their dumps meeting at a barrier; two instance ids, then the same | both exit 0 with distinct names; both listed, both verify and restore their own source | `two_agents_writing_one_prefix_at_once` |
//! | clock set back a day | daemon with libfaketime, `FAKETIME_TIMESTAMP_FILE` changed from `+0` to `-1d` while a `* * * * * *` schedule runs | backups go on every second (no stall, no burst), names stay distinct, all listed and restorable | `clock_set_back_a_day_keeps_the_schedule_firing` |
//! | a source file changing while read | the dump starts a writer that, once the agent has the 64 MiB file open, cuts it to 1 MB and appends 1 MiB | warning naming the file; the backup completes and verifies; the next one restores exactly | `a_file_changing_while_read_is_recorded_and_the_archive_verifies` |

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::host::{
    Agent, Tmpfs, files, listed, next_backup_restores, no_panic, random_file, script, state, task,
    tasks, temp_files, wait_until,
};
use common::{Env, server_env, tree, unique};
use serde_json::Value;
use service_backup_testkit::free_port;

const S3_SECRET: &str = "hostfaults-s3-secret-value";
const MIB: usize = 1024 * 1024;

/// `config.yml` with `destinations` (YAML list items) and `extra` lines.
fn write_config(env: &Env, destinations: &str, extra: &str) {
    let d = env.dir.path().display();
    let schedule = if extra.contains("cron_schedule:") {
        ""
    } else {
        "cron_schedule: \"0 0 1 1 *\"\n"
    };
    let yaml = format!(
        "destinations:\n{destinations}source_folder: {d}/source\n{schedule}\
         encryption:\n  key_file: {d}/backup.key\n{extra}"
    );
    std::fs::write(env.path("config.yml"), yaml).unwrap();
}

/// A `local` destination item.
fn local(name: &str, path: &Path) -> String {
    format!(
        "- type: local\n  name: {name}\n  config:\n    path: {}\n",
        path.display()
    )
}

/// An `s3` destination item on the shared moto server, in `bucket` under `prefix`.
fn s3(name: &str, bucket: &str, prefix: &str) -> String {
    common::secret(S3_SECRET);
    format!(
        "- type: s3\n  name: {name}\n  config:\n    bucket_name: {bucket}\n    bucket_path: {prefix}\n    \
         access_key_id: hostfaults-key-id\n    secret_access_key: {S3_SECRET}\n    endpoint_url: {}\n",
        server_env("SB_TEST_S3_ENDPOINT")
    )
}

/// The lines `prune --dry-run` shows for incomplete uploads, run `shift` later than now
/// (libfaketime's `FAKETIME` offset, such as `+2d`), so that fresh leftovers count as stale.
fn incomplete_uploads(env: &Env, shift: &str) -> Vec<String> {
    let out = faked(env, shift, &["prune", "config.yml", "--dry-run"]);
    out.expect(0);
    out.stdout
        .lines()
        .filter(|l| l.contains("(incomplete upload)"))
        .map(str::to_string)
        .collect()
}

/// Runs the binary with libfaketime preloaded and `FAKETIME=shift`.
fn faked(env: &Env, shift: &str, args: &[&str]) -> common::Run {
    let lib = server_env("SB_TEST_LIBFAKETIME");
    let out = std::process::Command::new(common::binary())
        .args(args)
        .current_dir(env.dir.path())
        .env("LD_PRELOAD", &lib)
        .env("FAKETIME", shift)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .output()
        .unwrap();
    let run = common::Run::from(out);
    no_panic(&run);
    run
}

/// The first line of the error output mentioning `needle` (case-insensitive).
fn error_line<'a>(run: &'a common::Run, needle: &str) -> &'a str {
    let lower = needle.to_lowercase();
    run.stderr
        .lines()
        .find(|l| l.to_lowercase().contains(&lower))
        .unwrap_or_else(|| panic!("no error line names {needle:?}:\n{}", run.all()))
}

#[test]
fn disk_full_in_the_restore_target_keeps_the_old_content() {
    let env = Env::new();
    random_file(&env.path("source/big.bin"), 6 * MIB);
    let item = env.backup();
    let name = item["name"].as_str().unwrap().to_string();

    let target = env.path("target");
    let disk = Tmpfs::mount(&target, "2m");
    std::fs::write(target.join("old.txt"), "the old content\n").unwrap();
    std::fs::create_dir(target.join("old-dir")).unwrap();
    std::fs::write(target.join("old-dir/keep"), "kept\n").unwrap();
    let before = tree(&target);

    let out = env.restore_into(&name, &target, &["--force"]);
    // 1. A clear error: exit 1, the target and the lack of space named.
    out.expect(1);
    no_panic(&out);
    let line = error_line(&out, "no space left");
    assert!(line.contains(target.to_str().unwrap()), "{line}");
    // 3. The old content, whole, and no staging folder.
    assert_eq!(tree(&target), before, "the target changed");
    // 2. Nothing new listed.
    assert_eq!(listed(&env, &[]).len(), 1);
    // 4. The restore task failed with the reason.
    let t = tasks(&env);
    let restore = t.iter().rev().find(|t| t["kind"] == "restore").unwrap();
    let (status, reason) = state(restore);
    assert_eq!(status, "failed", "{t:?}");
    assert!(reason.contains("No space left"), "{reason}");

    // 5. With room, the same restore completes and the backups still restore.
    disk.resize("32m");
    let out = env.restore_into(&name, &target, &["--force"]);
    out.expect(0);
    assert_eq!(tree(&target), tree(&env.path("source")));
    next_backup_restores(&env, &[]);
    drop(disk);
}

#[test]
fn disk_full_in_the_state_dir_is_named_and_the_database_survives() {
    let env = Env::new();
    let state_dir = env.path("state");
    let disk = Tmpfs::mount(&state_dir, "1m");
    // A tmpfs is mode 1777; a state_dir others may write is refused.
    std::fs::set_permissions(
        &state_dir,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700),
    )
    .unwrap();
    env.write_config(&format!("state_dir: {}\n", state_dir.display()));
    let first = env.backup();
    let filler = disk.fill();

    let out = env.run(&["backup", "config.yml"]);
    // 1. Exit 1, SQLite's message with the database's path.
    out.expect(1);
    no_panic(&out);
    let line = error_line(&out, "database or disk is full");
    assert!(
        line.contains(state_dir.join("service-backup.sqlite3").to_str().unwrap()),
        "{line}"
    );
    // 2. Nothing was uploaded by the failed run.
    let items = listed(&env, &[]);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["name"], first["name"]);

    // 4. Space freed: the database is intact, with the first backup's task done and none
    // left running or queued.
    std::fs::remove_file(&filler).unwrap();
    let t = tasks(&env);
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(state(&t[0]).0, "done");
    assert_eq!(t[0]["backup_name"], first["name"]);

    // 5. Backups work again and are recorded.
    let name = next_backup_restores(&env, &[]);
    let t: Vec<Value> = tasks(&env)
        .into_iter()
        .filter(|t| t["kind"] == "backup")
        .collect();
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!(
        (state(&t[1]).0.as_str(), t[1]["backup_name"].as_str()),
        ("done", Some(name.as_str()))
    );
    drop(disk);
}

#[test]
fn disk_full_in_one_local_destination_leaves_the_other_one_complete() {
    let env = Env::new();
    random_file(&env.path("source/big.bin"), 6 * MIB);
    let small = env.path("small");
    let disk = Tmpfs::mount(&small, "2m");
    let roomy = env.path("roomy");
    write_config(
        &env,
        &format!("{}{}", local("full", &small), local("roomy", &roomy)),
        "",
    );

    let out = env.run(&["backup", "config.yml"]);
    // 1. Exit 1; the error names the destination and the lack of space.
    out.expect(1);
    no_panic(&out);
    let line = error_line(&out, "no space left");
    assert!(
        line.contains("full") && line.contains(small.to_str().unwrap()),
        "{line}"
    );
    // 2. Nothing (not even a temporary file) in the full one; the other one complete.
    assert!(listed(&env, &["--destination", "full"]).is_empty());
    assert_eq!(files(&small), Vec::<std::path::PathBuf>::new());
    let roomy_items = listed(&env, &["--destination", "roomy"]);
    assert_eq!(roomy_items.len(), 1);
    let v = env.run(&[
        "verify",
        "config.yml",
        "--backup",
        roomy_items[0]["name"].as_str().unwrap(),
    ]);
    v.expect(0);
    // 4. The task failed, naming the destination.
    let t = tasks(&env);
    let (status, reason) = state(&t[0]);
    assert_eq!(status, "failed");
    assert!(
        reason.contains("full") && reason.contains("No space left"),
        "{reason}"
    );

    // 5. With room, the next backup reaches both.
    disk.resize("32m");
    let name = next_backup_restores(&env, &["--destination", "full"]);
    assert!(
        listed(&env, &["--destination", "roomy"])
            .iter()
            .any(|i| i["name"] == name.as_str())
    );
    drop(disk);
}

/// Config for the mid-upload rows: S3 (moto) and a local folder, with a 48 MiB source.
fn mid_upload_env() -> (Env, String) {
    let env = Env::new();
    let bucket = unique("hostfaults").to_lowercase();
    write_config(
        &env,
        &format!(
            "{}{}",
            s3("objects", &bucket, "mid"),
            local("disk", &env.path("backups"))
        ),
        "cron_schedule: \"* * * * * *\"\nretention: {keep_last: 10}\n",
    );
    // A first backup creates the bucket; the one cut short comes after it.
    env.run(&["backup", "config.yml"]).expect(0);
    random_file(&env.path("source/big.bin"), 48 * MIB);
    (env, bucket)
}

/// Bytes of the local destination's temporary upload file.
fn uploaded(env: &Env) -> u64 {
    temp_files(&env.path("backups"))
        .iter()
        .map(|(_, n)| *n)
        .sum()
}

/// Points 2 and 4 after a stopped upload: nothing but the first backup listed anywhere, no temporary file, no
/// multipart upload left, the task failed with `reason`.
fn nothing_left(env: &Env, reason: &str) {
    let items = listed(env, &[]);
    assert_eq!(items.len(), 2, "only the first backup, in both: {items:?}");
    assert!(
        temp_files(&env.path("backups")).is_empty(),
        "temporary files left"
    );
    assert!(
        incomplete_uploads(env, "+2d").is_empty(),
        "an incomplete upload was left"
    );
    let t = tasks(env);
    assert_eq!(
        state(t.last().unwrap()),
        ("failed".to_string(), reason.to_string()),
        "{t:?}"
    );
}

#[test]
fn sigterm_mid_upload_daemon_and_one_shot() {
    // The daemon.
    let (env, _) = mid_upload_env();
    let daemon = Agent::daemon(&env, "daemon", &[]);
    daemon.freeze_when("1 MiB uploaded", || uploaded(&env) >= MIB as u64);
    daemon.signal("TERM");
    daemon.resume();
    let (run, took) = daemon.wait(Duration::from_secs(20));
    // 1. Exit 0 within 15 s, the original's last words.
    run.expect(0);
    no_panic(&run);
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        run.stdout
            .contains("All backup processes terminated. Exiting"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Upload backup completed with error"));
    // 2, 3 and 4.
    nothing_left(&env, "terminated");
    // 5.
    next_backup_restores(&env, &[]);

    // The one-shot backup.
    let (env, _) = mid_upload_env();
    let backup = Agent::start(&env, "backup", &["backup", "config.yml"], &[]);
    backup.freeze_when("1 MiB uploaded", || uploaded(&env) >= MIB as u64);
    backup.signal("TERM");
    backup.resume();
    let (run, took) = backup.wait(Duration::from_secs(20));
    run.expect(1);
    no_panic(&run);
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let line = error_line(&run, "objects");
    assert!(line.contains("cancel") || line.contains("stop"), "{line}");
    nothing_left(&env, "terminated");
    next_backup_restores(&env, &[]);
}

#[test]
fn sigkill_mid_upload_then_restart_recovers_and_prune_cleans_up() {
    let (env, _) = mid_upload_env();
    let daemon = Agent::daemon(&env, "daemon", &[]);
    // Past two 6 MiB parts on the local side: S3 has a multipart upload open by then.
    daemon.freeze_when("17 MiB uploaded", || uploaded(&env) >= 17 * MIB as u64);
    daemon.kill();

    // 2. Invisible: only the first backup listed; the leftovers exist as hidden work.
    let items = listed(&env, &[]);
    assert_eq!(items.len(), 2, "only the first backup, in both: {items:?}");
    assert_eq!(temp_files(&env.path("backups")).len(), 1);
    let leftovers = incomplete_uploads(&env, "+2d");
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    // A prune now keeps them: they may belong to a backup still running.
    let now = incomplete_uploads(&env, "+0");
    assert!(now.is_empty(), "{now:?}");

    // 4. After a restart the task is failed "interrupted".
    let daemon = Agent::daemon(&env, "restarted", &[]);
    // Without a cleanup executable the original's last line of a successful run.
    daemon.wait_for("Cleanup command not provided", 1, Duration::from_mins(1));
    daemon.signal("TERM");
    let (run, _) = daemon.wait(Duration::from_secs(20));
    run.expect(0);
    let t = tasks(&env);
    assert_eq!(
        state(&t[1]),
        ("failed".to_string(), "interrupted".to_string()),
        "{t:?}"
    );
    assert!(
        t[2..].iter().any(|t| t["status"] == "done"),
        "the restarted daemon backed up: {t:?}"
    );
    // 5. The backup after restart is listed in both destinations and restores.
    let done = t.iter().filter(|t| t["status"] == "done").count();
    assert_eq!(listed(&env, &["--destination", "objects"]).len(), done);
    assert_eq!(listed(&env, &["--destination", "disk"]).len(), done);
    next_backup_restores(&env, &[]);

    // The leftovers go with a prune run a day later (what is older than a day is stale).
    let out = faked(&env, "+2d", &["prune", "config.yml"]);
    out.expect(0);
    assert!(
        out.stdout.contains("discarded 1 incomplete upload(s)"),
        "{}",
        out.stdout
    );
    assert!(temp_files(&env.path("backups")).is_empty());
    assert!(incomplete_uploads(&env, "+2d").is_empty());
}

/// The body of an HTTP response of the daemon's API, as JSON.
async fn api(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
) -> (reqwest::StatusCode, Value) {
    let r = client
        .request(method, url)
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

const API_TOKEN: &str = "hostfaults-api-token-7d1e";

/// Starts the daemon with the API and waits until `/health` answers.
async fn api_daemon(env: &Env, tag: &str, base: &str) -> Agent {
    let daemon = Agent::daemon(env, tag, &[]);
    let client = reqwest::Client::new();
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/health")).send().await
            && r.status().is_success()
        {
            break daemon;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no /health");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The API's task of backup `id`.
async fn api_task(client: &reqwest::Client, base: &str, id: i64) -> Value {
    let (_, body) = api(client, reqwest::Method::GET, format!("{base}/backups")).await;
    body["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .unwrap_or_else(|| panic!("backup {id} not in {body}"))["backup_agent_task"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_queued_tasks_records_them_and_runs_the_next() {
    common::secret(API_TOKEN);
    let env = Env::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    common::write_private(&env.path("tokens"), format!("{API_TOKEN}\n"));
    let go = env.path("go");
    let dump = script(
        &env,
        "dump.sh",
        &format!("while [ ! -e {} ]; do sleep 0.05; done", go.display()),
    );
    let api_yaml = format!(
        "instance_id: inst-q\napi:\n  listen: 127.0.0.1:{port}\n  bearer_tokens_file: {}\n",
        env.path("tokens").display()
    );
    env.write_config(&format!("source_executable: {dump}\n{api_yaml}"));
    let daemon = api_daemon(&env, "daemon", &base).await;
    let client = reqwest::Client::new();
    let post = || api(&client, reqwest::Method::POST, format!("{base}/backups"));
    let (status, first) = post().await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{first}");
    daemon.wait_for("Perform backup started", 1, Duration::from_secs(20));
    let (_, second) = post().await;
    let (_, third) = post().await;
    let (running, queued) = (
        first["id"].as_i64().unwrap(),
        second["id"].as_i64().unwrap(),
    );
    assert_ne!(running, queued);
    assert_eq!(third["id"], second["id"], "waiting requests coalesce");
    assert_eq!(api_task(&client, &base, queued).await["status"], "queued");

    daemon.signal("TERM");
    let (run, took) = daemon.wait(Duration::from_secs(20));
    // 1. A clean stop.
    run.expect(0);
    no_panic(&run);
    assert!(took < Duration::from_secs(15));
    // 2. Nothing listed.
    assert!(listed(&env, &[]).is_empty());
    // 4. Neither task is left queued or running: both failed, with the reason.
    for id in [running, queued] {
        assert_eq!(
            state(&task(&env, id)),
            ("failed".to_string(), "terminated".to_string()),
            "task {id}"
        );
    }

    // After a restart the API shows them failed, and a new backup runs to the end.
    std::fs::write(&go, "").unwrap();
    let daemon = api_daemon(&env, "restarted", &base).await;
    for id in [running, queued] {
        assert_eq!(api_task(&client, &base, id).await["status"], "failed");
    }
    let (status, next) = post().await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{next}");
    let id = next["id"].as_i64().unwrap();
    let start = Instant::now();
    while api_task(&client, &base, id).await["status"] != "done" {
        assert!(start.elapsed() < Duration::from_mins(1), "backup {id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.signal("TERM");
    daemon.wait(Duration::from_secs(20)).0.expect(0);
    // 5.
    let items = listed(&env, &[]);
    assert_eq!(items.len(), 1);
    let name = items[0]["name"].as_str().unwrap();
    env.run(&["verify", "config.yml", "--backup", name])
        .expect(0);
    let out = env.run(&["restore", "config.yml", "--target", "restored"]);
    out.expect(0);
    assert_eq!(tree(&env.path("source")), tree(&env.path("restored")));
}

#[test]
fn two_agents_writing_one_prefix_at_once() {
    for (ids, bucket) in [
        (["inst-a", "inst-b"], unique("two-ids")),
        (["inst-same", "inst-same"], unique("one-id")),
    ] {
        let bucket = bucket.to_lowercase();
        let barrier = tempfile::tempdir().unwrap();
        let agents: Vec<Env> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let env = Env::new();
                random_file(&env.path(&format!("source/agent-{i}.bin")), 3 * MIB);
                // Each dump waits for the other: both uploads start together.
                let b = barrier.path().display();
                let dump = script(
                    &env,
                    "dump.sh",
                    &format!(
                        "touch {b}/ready-{i}\nwhile [ ! -e {b}/ready-0 ] || [ ! -e {b}/ready-1 ]; do sleep 0.01; done"
                    ),
                );
                write_config(
                    &env,
                    &s3("shared", &bucket, "one/prefix"),
                    &format!("instance_id: {id}\nsource_executable: {dump}\n"),
                );
                env
            })
            .collect();
        // The second agent decrypts the first one's backups too: one key for both.
        std::fs::copy(agents[0].path("backup.key"), agents[1].path("backup.key")).unwrap();
        let running: Vec<Agent> = agents
            .iter()
            .map(|env| Agent::start(env, "backup", &["backup", "config.yml"], &[]))
            .collect();
        let mut names = vec![];
        for (env, agent) in agents.iter().zip(running) {
            let (run, _) = agent.wait(Duration::from_mins(1));
            // 1. Both succeed.
            run.expect(0);
            no_panic(&run);
            // 4. Each agent's task is done with its backup's name.
            let t = tasks(env);
            assert_eq!(state(&t[0]).0, "done", "{t:?}");
            names.push(t[0]["backup_name"].as_str().unwrap().to_string());
        }
        assert_ne!(names[0], names[1], "{ids:?}: one name for two backups");
        // 2. Both listed, nothing clobbered: each verifies and restores its own source.
        let all = listed(&agents[0], &["--all-instances"]);
        assert_eq!(all.len(), 2, "{all:?}");
        for (env, name) in agents.iter().zip(&names) {
            assert!(all.iter().any(|i| i["name"] == name.as_str()), "{name}");
            env.run(&["verify", "config.yml", "--backup", name])
                .expect(0);
            let target = env.path("restored");
            env.restore_into(name, &target, &[]).expect(0);
            // 3. The whole tree of the agent that made it.
            assert_eq!(tree(&env.path("source")), tree(&target), "{name}");
        }
        // 5. Each goes on backing up; the barrier is passed once both are there.
        std::fs::write(barrier.path().join("ready-0"), "").unwrap();
        std::fs::write(barrier.path().join("ready-1"), "").unwrap();
        next_backup_restores(&agents[1], &[]);
        assert_eq!(listed(&agents[0], &["--all-instances"]).len(), 3);
    }
}

#[test]
fn clock_set_back_a_day_keeps_the_schedule_firing() {
    let env = Env::new();
    env.write_config("cron_schedule: \"* * * * * *\"\n");
    let clock = env.path("faketime");
    std::fs::write(&clock, "+0\n").unwrap();
    let lib = server_env("SB_TEST_LIBFAKETIME");
    let vars = [
        ("LD_PRELOAD", lib.as_str()),
        ("FAKETIME_TIMESTAMP_FILE", clock.to_str().unwrap()),
        ("FAKETIME_NO_CACHE", "1"),
        // A clock set back moves the wall clock only: CLOCK_MONOTONIC never goes back.
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let daemon = Agent::daemon(&env, "daemon", &vars);
    // No source or cleanup executable: a run starts with the original's "source_executable
    // not provided" line and ends, when it succeeded, with "Cleanup command not provided".
    const RUN_STARTED: &str = "source_executable not provided, skipping performing of backup";
    const RUN_DONE: &str = "Cleanup command not provided";
    daemon.wait_for(RUN_DONE, 2, Duration::from_secs(30));
    let before = daemon.count(RUN_STARTED);
    std::fs::write(&clock, "-1d\n").unwrap();
    let changed = Instant::now();
    // The agent's wall clock is now a day behind: its next backups are dated yesterday.
    let yesterday = (chrono::Local::now() - chrono::Duration::days(1))
        .format("%Y/%m/%d")
        .to_string();
    wait_until("a backup dated yesterday", Duration::from_secs(30), || {
        temp_files(&env.path("backups")).is_empty() && env.path("backups").join(&yesterday).is_dir()
    });
    daemon.wait_for(RUN_DONE, before + 3, Duration::from_secs(30));
    let elapsed = changed.elapsed().as_secs() as usize;
    let started = daemon.count(RUN_STARTED) - before;
    // One a second at most (a backup takes time of its own), not a day's worth at once.
    assert!(
        started <= elapsed + 3,
        "{started} runs in {elapsed} s: a burst"
    );
    daemon.signal("TERM");
    let (run, _) = daemon.wait(Duration::from_secs(20));
    run.expect(0);
    no_panic(&run);

    let items = listed(&env, &[]);
    let mut names: Vec<&str> = items.iter().map(|i| i["name"].as_str().unwrap()).collect();
    let n = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), n, "names repeat");
    let t = tasks(&env);
    let done = t.iter().filter(|t| t["status"] == "done").count();
    assert_eq!(done, n, "{t:?}");
    assert!(
        t.iter()
            .all(|t| t["status"] == "done" || t["reason"] == "terminated"),
        "{t:?}"
    );
    // Every backup of either day restores the source.
    let dated_yesterday: Vec<&Value> = items
        .iter()
        .filter(|i| i["key"].as_str().unwrap().starts_with(&yesterday))
        .collect();
    assert!(!dated_yesterday.is_empty(), "{items:?}");
    for item in [dated_yesterday[0], &items[0]] {
        let name = item["name"].as_str().unwrap();
        let target = env.path(&unique("restored"));
        env.restore_into(name, &target, &[]).expect(0);
        assert_eq!(tree(&env.path("source")), tree(&target), "{name}");
    }
    next_backup_restores(&env, &[]);
}

#[test]
fn a_file_changing_while_read_is_recorded_and_the_archive_verifies() {
    let env = Env::new();
    let big = env.path("source/growing.bin");
    let size = 64 * MIB;
    random_file(&big, size);
    let stopped = env.path("writer-stopped");
    // The writer (its own session: it outlives the dump) waits until the agent, the
    // dump's parent, has the file open, then cuts it to 1 MB and appends 1 MiB: the file
    // shrinks and grows under the reader, whatever the machine's load.
    let dump = script(
        &env,
        "dump.sh",
        &format!(
            "agent=$PPID
             setsid sh -c \"until ls -l /proc/$agent/fd 2>/dev/null | grep -q growing.bin; do sleep 0.005; done; \
             truncate -s 1000000 {big}; head -c 1048576 /dev/urandom >> {big}; touch {stopped}\" \
             </dev/null >/dev/null 2>&1 &",
            stopped = stopped.display(),
            big = big.display(),
        ),
    );
    env.write_config(&format!("source_executable: {dump}\n"));
    let out = env.run(&["backup", "config.yml"]);
    wait_until("the writer is done", Duration::from_secs(30), || {
        stopped.exists()
    });
    // 1. The backup completes and says which file changed.
    out.expect(0);
    no_panic(&out);
    let warning = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("changed") && m.contains("read"))
        })
        .unwrap_or_else(|| panic!("no warning:\n{}", out.stdout));
    assert_eq!(
        warning["data"]["file"],
        big.display().to_string(),
        "{warning}"
    );
    // 2 and 4: listed, done; and the archive verifies.
    let items = listed(&env, &[]);
    assert_eq!(items.len(), 1);
    assert_eq!(state(&tasks(&env)[0]).0, "done");
    let name = items[0]["name"].as_str().unwrap();
    env.run(&["verify", "config.yml", "--backup", name])
        .expect(0);
    // 3. It restores whole: every other file exact, the changed one at its recorded size.
    env.run(&["restore", "config.yml", "--backup", name, "--target", "r1"])
        .expect(0);
    let restored = tree(&env.path("r1"));
    let source = tree(&env.path("source"));
    assert_eq!(
        restored
            .iter()
            .filter(|(p, _)| p != "growing.bin")
            .collect::<Vec<_>>(),
        source
            .iter()
            .filter(|(p, _)| p != "growing.bin")
            .collect::<Vec<_>>()
    );
    let changed = restored.iter().find(|(p, _)| p == "growing.bin").unwrap();
    assert_eq!(changed.1.len(), size, "the size its tar header recorded");
    // 5. With the file at rest, the next backup restores it exactly.
    env.write_config("");
    next_backup_restores(&env, &[]);
}

// Issue 20, findings 8 and 9: restores take the backup lock, and `.service-backup-*`
// folders are never archived; a task whose lock cannot be taken fails with its reason.
//
// | fault | how it is made | what the agent must do | test |
// | --- | --- | --- | --- |
// | a restore (CLI) into the source during a backup | the backup's dump waits for a file; `restore --target source` meanwhile | the restore waits (logged once; SIGINT then: exit 1, task failed "terminated"), the source is not touched until the backup ends, then both succeed; restores' work folders in the source, at any depth, are not archived | `a_cli_restore_waits_for_the_backup_in_progress_and_work_folders_are_never_archived` |
// | an API restore into the source during a backup | the same through `POST /backups/restore` | the restore task stays queued, the source untouched, until the backup is done; then it is done; one waiting when the daemon gets SIGTERM fails "terminated" | `an_api_restore_into_the_source_waits_for_the_backup_in_progress` |
// | the backup lock cannot be opened | `state_dir/backup.lock` is a folder | API backup, API restore, CLI backup and CLI restore: each task ends failed with "cannot open the backup lock … Is a directory", in the API and in `tasks` | `tasks_whose_lock_cannot_be_opened_fail_with_the_reason` |

/// What a restore logs once while a backup holds the lock.
const RESTORE_WAITS: &str =
    "A backup or restore is in progress; this restore waits for it to finish";

/// A dump that waits until the file `go` exists; returns the config line and `go`.
fn waiting_dump(env: &Env) -> (String, std::path::PathBuf) {
    let go = env.path("go");
    let dump = script(
        env,
        "dump.sh",
        &format!("while [ ! -e {} ]; do sleep 0.05; done", go.display()),
    );
    (format!("source_executable: {dump}\n"), go)
}

/// `tree` without restores' work folders.
fn without_work_folders(mut t: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    t.retain(|(p, _)| !p.contains(".service-backup-"));
    t
}

#[test]
fn a_cli_restore_waits_for_the_backup_in_progress_and_work_folders_are_never_archived() {
    let env = Env::new();
    // Work folders of restores in the source, at the top and deeper.
    for dir in [
        ".service-backup-restore-source-0123456789ab",
        "sub/.service-backup-restore-deeper-0123456789ab",
    ] {
        std::fs::create_dir_all(env.path(&format!("source/{dir}"))).unwrap();
        std::fs::write(
            env.path(&format!("source/{dir}/secret")),
            "not for the archive",
        )
        .unwrap();
    }
    let out = env.run(&["backup", "config.yml"]);
    out.expect(0);
    assert!(
        out.stdout.contains("not archiving a restore's work folder"),
        "{}",
        out.stdout
    );
    let first = listed(&env, &[])[0]["name"].as_str().unwrap().to_string();
    env.restore_into(&first, &env.path("plain"), &[]).expect(0);
    let expected = without_work_folders(tree(&env.path("source")));
    assert_eq!(
        tree(&env.path("plain")),
        expected,
        "work folders were archived"
    );

    let (dump, go) = waiting_dump(&env);
    env.write_config(&dump);
    let backup = Agent::start(&env, "backup", &["backup", "config.yml"], &[]);
    backup.wait_for("Perform backup started", 1, Duration::from_secs(20));
    let before = tree(&env.path("source"));
    // The command line logs on stderr.
    let logged = |tag: &str, message: &str| {
        std::fs::read_to_string(env.path(&format!("{tag}.err")))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!("\"message\":\"ServiceBackup.{message}\"")))
            .count()
    };
    // A restore stopped while it waits: exit 1, its task failed "terminated", nothing
    // touched.
    let restore_args = [
        "restore",
        "config.yml",
        "--backup",
        &first,
        "--target",
        "source",
        "--force",
    ];
    let stopped = Agent::start(&env, "stopped", &restore_args, &[]);
    wait_until("the first restore waits", Duration::from_secs(20), || {
        logged("stopped", RESTORE_WAITS) == 1
    });
    stopped.signal("INT");
    let (out, _) = stopped.wait(Duration::from_secs(10));
    out.expect(1);
    assert!(
        out.stderr.contains("stopped while waiting"),
        "{}",
        out.stderr
    );
    let t = tasks(&env);
    let last = t.iter().rev().find(|t| t["kind"] == "restore").unwrap();
    assert_eq!(state(last), ("failed".into(), "terminated".into()), "{t:?}");
    assert_eq!(tree(&env.path("source")), before);

    let around = std::fs::read_dir(env.dir.path()).unwrap().count();
    let restore = Agent::start(&env, "restore", &restore_args, &[]);
    wait_until("the restore waits", Duration::from_secs(20), || {
        logged("restore", RESTORE_WAITS) == 1
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(logged("restore", RESTORE_WAITS), 1, "logged once");
    assert_eq!(logged("restore", "Perform restore started"), 0);
    assert_eq!(
        tree(&env.path("source")),
        before,
        "the source changed mid-backup"
    );
    assert_eq!(
        std::fs::read_dir(env.dir.path()).unwrap().count(),
        around + 2, // the restore's log files, and no staging folder
    );
    std::fs::write(&go, "").unwrap();
    let (b, _) = backup.wait(Duration::from_mins(1));
    b.expect(0);
    let (r, _) = restore.wait(Duration::from_mins(1));
    r.expect(0);
    no_panic(&r);
    // The backup holds the source as it was, without the work folders; the restore came
    // after it, and kept the (not exactly named) work folder a stopped restore left.
    let second = listed(&env, &[])[0]["name"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    env.restore_into(&second, &env.path("during"), &[])
        .expect(0);
    assert_eq!(tree(&env.path("during")), without_work_folders(before));
    assert!(
        env.path("source/.service-backup-restore-source-0123456789ab/secret")
            .exists()
    );
    let t = tasks(&env);
    let restore = t
        .iter()
        .rev()
        .find(|t| t["kind"] == "restore" && t["backup_name"] == first.as_str());
    assert_eq!(state(restore.unwrap()).0, "done", "{t:?}");
}

/// Sends a request with a JSON body to the daemon's API.
async fn api_json(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Value,
) -> (reqwest::StatusCode, Value) {
    let r = client
        .request(method, url)
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The API's task of restore `id`.
async fn api_restore(client: &reqwest::Client, base: &str, id: i64) -> Value {
    let (_, body) = api(client, reqwest::Method::GET, format!("{base}/backups")).await;
    body["restores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("restore {id} not in {body}"))["backup_agent_tasks"][0]
        .clone()
}

/// Waits until the API shows task `id` (of `list`, `backups` or `restores`) ended.
async fn api_ended(client: &reqwest::Client, base: &str, list: &str, id: i64) -> Value {
    let start = Instant::now();
    loop {
        let t = if list == "backups" {
            api_task(client, base, id).await
        } else {
            api_restore(client, base, id).await
        };
        if t["status"] == "done" || t["status"] == "failed" {
            return t;
        }
        assert!(start.elapsed() < Duration::from_mins(1), "{list} {id}: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The daemon's config lines for the API on `port`, as instance `inst-r`.
fn api_yaml(env: &Env, port: u16) -> String {
    common::write_private(&env.path("tokens"), format!("{API_TOKEN}\n"));
    format!(
        "instance_id: inst-r\napi:\n  listen: 127.0.0.1:{port}\n  bearer_tokens_file: {}\n",
        env.path("tokens").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_restore_into_the_source_waits_for_the_backup_in_progress() {
    common::secret(API_TOKEN);
    let env = Env::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let api_lines = api_yaml(&env, port);
    env.write_config(&api_lines);
    env.run(&["backup", "config.yml"]).expect(0);
    let (dump, go) = waiting_dump(&env);
    env.write_config(&format!("{dump}{api_lines}"));
    let daemon = api_daemon(&env, "daemon", &base).await;
    let client = reqwest::Client::new();
    let (_, listing) = api(&client, reqwest::Method::GET, format!("{base}/backups")).await;
    let first = listing["backups"][0]["id"].as_i64().unwrap();
    let (status, running) = api(&client, reqwest::Method::POST, format!("{base}/backups")).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{running}");
    let running = running["id"].as_i64().unwrap();
    daemon.wait_for("Perform backup started", 1, Duration::from_secs(20));
    let before = tree(&env.path("source"));

    let (status, answer) = api_json(
        &client,
        reqwest::Method::POST,
        format!("{base}/backups/restore"),
        serde_json::json!({"instance_id": "inst-r", "backup_id": first}),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{answer}");
    let restore = answer["restore_id"].as_i64().unwrap();
    daemon.wait_for(RESTORE_WAITS, 1, Duration::from_secs(20));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        api_restore(&client, &base, restore).await["status"],
        "queued"
    );
    assert_eq!(daemon.count(RESTORE_WAITS), 1, "logged once");
    assert_eq!(
        tree(&env.path("source")),
        before,
        "the source changed mid-backup"
    );

    std::fs::write(&go, "").unwrap();
    assert_eq!(
        api_ended(&client, &base, "backups", running).await["status"],
        "done"
    );
    let t = api_ended(&client, &base, "restores", restore).await;
    assert_eq!(t["status"], "done", "{t}");
    let newest = listed(&env, &[])[0]["name"].as_str().unwrap().to_string();

    // A restore waiting when the daemon is stopped: its task fails "terminated".
    std::fs::remove_file(&go).unwrap();
    let (status, _) = api(&client, reqwest::Method::POST, format!("{base}/backups")).await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
    daemon.wait_for("Perform backup started", 2, Duration::from_secs(20));
    let (_, answer) = api_json(
        &client,
        reqwest::Method::POST,
        format!("{base}/backups/restore"),
        serde_json::json!({"instance_id": "inst-r", "backup_id": first}),
    )
    .await;
    let waiting = answer["restore_id"].as_i64().unwrap();
    daemon.wait_for(RESTORE_WAITS, 2, Duration::from_secs(20));
    let during = tree(&env.path("source"));
    daemon.signal("TERM");
    daemon.wait(Duration::from_secs(20)).0.expect(0);
    assert_eq!(
        state(&task(&env, waiting)),
        ("failed".to_string(), "terminated".to_string())
    );
    assert_eq!(tree(&env.path("source")), during);
    // The backup made meanwhile is the source as it was, and nothing of the restore.
    env.restore_into(&newest, &env.path("during"), &[])
        .expect(0);
    assert_eq!(tree(&env.path("during")), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_whose_lock_cannot_be_opened_fail_with_the_reason() {
    common::secret(API_TOKEN);
    let env = Env::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let state_dir = env.path("state");
    let api_lines = format!(
        "state_dir: {}\n{}",
        state_dir.display(),
        api_yaml(&env, port)
    );
    env.write_config(&api_lines);
    env.run(&["backup", "config.yml"]).expect(0);
    let name = listed(&env, &[])[0]["name"].as_str().unwrap().to_string();
    let daemon = api_daemon(&env, "daemon", &base).await;
    let client = reqwest::Client::new();
    let (_, listing) = api(&client, reqwest::Method::GET, format!("{base}/backups")).await;
    let first = listing["backups"][0]["id"].as_i64().unwrap();
    // The lock file cannot be opened: a folder took its name.
    std::fs::remove_file(state_dir.join("backup.lock")).unwrap();
    std::fs::create_dir(state_dir.join("backup.lock")).unwrap();
    let reason_ok =
        |r: &str| r.contains("cannot open the backup lock") && r.contains("Is a directory");

    let (status, created) = api(&client, reqwest::Method::POST, format!("{base}/backups")).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{created}");
    let backup = created["id"].as_i64().unwrap();
    let t = api_ended(&client, &base, "backups", backup).await;
    assert_eq!(t["status"], "failed", "{t}");
    assert!(reason_ok(t["reason"].as_str().unwrap()), "{t}");

    let (status, answer) = api_json(
        &client,
        reqwest::Method::POST,
        format!("{base}/backups/restore"),
        serde_json::json!({"instance_id": "inst-r", "backup_id": first}),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{answer}");
    let restore = answer["restore_id"].as_i64().unwrap();
    let t = api_ended(&client, &base, "restores", restore).await;
    assert_eq!(t["status"], "failed", "{t}");
    assert!(reason_ok(t["reason"].as_str().unwrap()), "{t}");
    daemon.signal("TERM");
    daemon.wait(Duration::from_secs(20)).0.expect(0);

    // The same from the command line: exit 1 with the reason, and a failed task each.
    let out = env.run(&["backup", "config.yml"]);
    out.expect(1);
    assert!(reason_ok(&out.stderr), "{}", out.stderr);
    let before = tree(&env.path("source"));
    let out = env.run(&[
        "restore",
        "config.yml",
        "--backup",
        &name,
        "--target",
        "source",
        "--force",
    ]);
    out.expect(1);
    assert!(reason_ok(&out.stderr), "{}", out.stderr);
    assert_eq!(tree(&env.path("source")), before);
    // Every task but the first backup: the API's two and the command line's two.
    let ended: Vec<(String, String)> = tasks(&env)
        .iter()
        .filter(|t| t["status"] != "done")
        .map(state)
        .collect();
    assert_eq!(ended.len(), 4, "{ended:?}");
    assert!(
        ended.iter().all(|(s, r)| s == "failed" && reason_ok(r)),
        "{ended:?}"
    );
    for id in [backup, restore] {
        assert_eq!(state(&task(&env, id)).0, "failed", "task {id}");
    }
    let text = env.run(&["tasks", "config.yml"]);
    assert!(reason_ok(&text.stdout), "{}", text.stdout);
    assert!(!text.stdout.contains("queued"), "{}", text.stdout);
}
