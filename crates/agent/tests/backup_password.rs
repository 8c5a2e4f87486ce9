//! Backup passwords for application developers through the real daemon
//! and binary: the password is set over the API, the next backup carries its stanza, a
//! download through the API opens with the password alone (`decrypt --passphrase-fd`),
//! byte for byte as with the operator's key; a backup made before the password and a wrong
//! password each give their message, exit code 1 and no output file; and the password
//! appears nowhere in the agent's log or its state.

#[path = "common/api.rs"]
mod api;
mod common;

use std::path::Path;

use api::ApiAgent;
use common::Env;
use reqwest::{Method, StatusCode};
use serde_json::json;
use service_backup_testkit::free_port;

const TOKEN: &str = "tok-Password-7d1e2f3a4b";
const INSTANCE: &str = "inst-pw";
const PASSWORD: &str = "Developer-Password-9c8b7a";
const NO_STANZA: &str = "this backup carries no password stanza: it was made before a backup password was set (or the password was removed); ask the operator";

/// The daemon with the API on a free port.
async fn start(env: &Env) -> ApiAgent {
    let port = free_port();
    common::write_private(&env.path("tokens"), format!("{TOKEN}\n"));
    let d = env.dir.path().display();
    env.write_config(&format!(
        "cron_schedule: \"0 0 1 1 *\"\ninstance_id: {INSTANCE}\n\
         api:\n  listen: 127.0.0.1:{port}\n  bearer_tokens_file: {d}/tokens\n"
    ));
    ApiAgent::start(env.dir.path(), port, TOKEN, INSTANCE).await
}

/// Downloads backup `id` through the API into `dir`, under the name the answer gives.
async fn download(agent: &ApiAgent, id: i64, dir: &Path) -> std::path::PathBuf {
    let (name, bytes) = agent.download(id).await;
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `decrypt --passphrase-fd 0 --output OUT ARCHIVE` with `password` on standard input.
fn decrypt_with_password(env: &Env, archive: &Path, out: &str, password: &str) -> common::Run {
    common::run_with_stdin(
        env.dir.path(),
        &[
            "decrypt",
            "--passphrase-fd",
            "0",
            "--output",
            out,
            archive.to_str().unwrap(),
        ],
        Some(format!("{password}\n").as_bytes()),
    )
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test]
async fn a_developer_decrypts_a_download_with_the_password_alone() {
    common::secret(PASSWORD);
    let env = Env::new();
    let agent = start(&env).await;
    let before = agent.backup().await;

    let prefixed = format!("/service-instances/{INSTANCE}/backups/password");
    // Too short: a 422 that says why, and nothing kept.
    let (status, body) = agent
        .call(
            Method::PUT,
            &prefixed,
            Some((
                "application/json",
                json!({"password": "short pw"}).to_string(),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["description"],
        "the password must have at least 12 characters (it has 8)"
    );
    assert!(!env.path("backup-password.json").exists());

    let (status, body) = agent
        .call(
            Method::PUT,
            &prefixed,
            Some((
                "application/json",
                json!({"password": PASSWORD}).to_string(),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["applies_to"], "backups made from now on", "{body}");
    assert_eq!(body["set"], true, "{body}");
    assert!(!body.to_string().contains(PASSWORD), "{body}");

    // The next backup carries the stanza: no restart needed.
    let after = agent.backup().await;
    let downloads = tempfile::tempdir().unwrap();
    let archive = download(&agent, after, downloads.path()).await;
    decrypt_with_password(&env, &archive, "by-password.tar.gz", PASSWORD).expect(0);
    common::run(
        env.dir.path(),
        &[
            "decrypt",
            "--key-file",
            "backup.key",
            "--output",
            "by-key.tar.gz",
            archive.to_str().unwrap(),
        ],
    )
    .expect(0);
    let by_password = std::fs::read(env.path("by-password.tar.gz")).unwrap();
    assert!(by_password.starts_with(&[0x1f, 0x8b]), "a plain .tar.gz");
    assert_eq!(
        by_password,
        std::fs::read(env.path("by-key.tar.gz")).unwrap()
    );

    // restore --file with the password alone restores the source.
    common::run_with_stdin(
        env.dir.path(),
        &[
            "restore",
            "--file",
            archive.to_str().unwrap(),
            "--passphrase-fd",
            "0",
            "--target",
            "restored",
        ],
        Some(format!("{PASSWORD}\n").as_bytes()),
    )
    .expect(0);
    assert_eq!(
        common::tree(&env.path("restored")),
        common::tree(&env.path("source"))
    );

    // A wrong password: the message, exit 1, no output file.
    let run = decrypt_with_password(&env, &archive, "wrong.tar.gz", "Another-Password-123");
    run.expect(1);
    assert!(
        run.stderr
            .contains("the password does not open this backup: its password stanza was made for another password"),
        "{}",
        run.all()
    );
    assert!(!env.path("wrong.tar.gz").exists());

    // A backup made before the password: the clear message, exit 1, no output file.
    let older = download(&agent, before, downloads.path()).await;
    let run = decrypt_with_password(&env, &older, "older.tar.gz", PASSWORD);
    run.expect(1);
    assert!(run.stderr.contains(NO_STANZA), "{}", run.all());
    assert!(!env.path("older.tar.gz").exists());

    // The other prefix, with a form body, and the status and removal.
    let v1 = format!("/v1/instances/{INSTANCE}/backups/password");
    let (status, body) = agent
        .call(
            Method::PUT,
            &v1,
            Some((
                "application/x-www-form-urlencoded",
                format!("password={PASSWORD}-2"),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = agent.call(Method::GET, &v1, None).await;
    assert_eq!(
        (status, &body["set"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    let (status, body) = agent.call(Method::DELETE, &prefixed, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["set"], false, "{body}");
    assert_eq!(body["applies_to"], "backups made from now on", "{body}");
    assert!(!env.path("backup-password.json").exists());
    let removed = agent.backup().await;
    let archive = download(&agent, removed, downloads.path()).await;
    let run = decrypt_with_password(&env, &archive, "removed.tar.gz", PASSWORD);
    run.expect(1);
    assert!(run.stderr.contains(NO_STANZA), "{}", run.all());

    // Never logged, never stored: not in the log, not in any file of the state.
    drop(agent);
    let log = std::fs::read_to_string(env.path("daemon.log")).unwrap();
    assert!(log.contains("Backup password set through the API"), "{log}");
    assert_eq!(
        files_holding(env.dir.path(), PASSWORD),
        Vec::<String>::new()
    );
}

/// Runs `decrypt --passphrase-fd FD` on a password archive with stdout a pipe, killed if it
/// has not ended within `limit`; gives the run and how long it took.
fn decrypt_from_fd(
    env: &Env,
    fd: &str,
    limit: std::time::Duration,
) -> (common::Run, std::time::Duration) {
    let archive = env.path("ok-passphrase.sbak");
    std::fs::write(
        &archive,
        include_bytes!("../../../spec/vectors/ok-passphrase.sbak"),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut child = common::piped(env.dir.path())
        .args(["decrypt", "--passphrase-fd", fd, "--output", "out.tar.gz"])
        .arg(&archive)
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("decrypt --passphrase-fd {fd} still ran after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let took = started.elapsed();
    (common::Run::from(child.wait_with_output().unwrap()), took)
}

/// The review's replay: `--passphrase-fd 1` with stdout a pipe reopened the pipe as a new
/// reader and waited for ever; a closed descriptor said "No such file or directory".
#[test]
fn a_passphrase_fd_not_open_for_reading_is_a_usage_error_at_once() {
    let env = Env::new();
    let (run, took) = decrypt_from_fd(&env, "1", std::time::Duration::from_secs(10));
    run.expect(2);
    assert!(
        run.stderr.contains("descriptor 1 is not open for reading"),
        "{}",
        run.all()
    );
    assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
    assert!(!env.path("out.tar.gz").exists());

    // No descriptor 987 is handed to the child.
    let (run, _) = decrypt_from_fd(&env, "987", std::time::Duration::from_secs(10));
    run.expect(2);
    assert!(
        run.stderr.contains("descriptor 987 is not open"),
        "{}",
        run.all()
    );
    assert!(!run.stderr.contains("No such file"), "{}", run.all());
    assert!(!env.path("out.tar.gz").exists());
}
