//! The HTTP API through the real binary and a Rust HTTP client, for what needs the daemon's
//! process or a real connection: the whole flow on a local destination and on S3 (moto,
//! started by `tests/run.sh`) with backups the worker runs and a download streamed over the
//! socket, TLS, slow, idle and silent clients, the connection cap and open-file limits,
//! SIGHUP, what the log says (and hides), core dumps, and schemathesis over HTTP. The
//! router's answers themselves (tokens, instance and backup ids, bodies, 412s, the list,
//! the queue's answers, metrics) are tested in-process in `src/api/routes/tests.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, binary, server_env, tree, unique};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use service_backup_testkit::free_port;

const TOKEN: &str = "tok-Secret-3f9a1c7e5b";
const INSTANCE: &str = "inst-1";
const IN_PROGRESS: &str = "Backup currently in progress, exiting. Another backup will not be able to start until this is completed.";

/// The `content-length` of a response.
fn content_length(r: &reqwest::Response) -> u64 {
    r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// `GET /backups/{id}/download` with the token, answered within `timeout`.
async fn download(agent: &Agent, id: i64, timeout: Duration) -> reqwest::Response {
    agent
        .client
        .get(agent.url(&format!("/backups/{id}/download")))
        .bearer_auth(TOKEN)
        .timeout(timeout)
        .send()
        .await
        .unwrap()
}

/// The body of a response as JSON (`Null` when it is not JSON).
async fn json_of(r: reqwest::Response) -> Value {
    serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null)
}

/// The status and the body as JSON (or as a JSON string when it is not JSON).
async fn status_and_body(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A daemon with the API on a free port.
struct Agent {
    child: Child,
    env: Env,
    base: String,
    log: PathBuf,
    client: Client,
}

impl Agent {
    /// Starts the daemon with the local destination of `Env` (or `destinations`, replacing
    /// it) and `extra` configuration lines.
    async fn start(extra: &str) -> Self {
        Self::start_with(Env::new(), extra, None).await
    }

    /// With `tls`: (certificate, key, CA the client trusts).
    async fn start_with(env: Env, extra: &str, tls: Option<(&Path, &Path, &Path)>) -> Self {
        Self::start_under(env, extra, tls, &[]).await
    }

    /// Run through `wrapper` (a command that execs the rest, such as `prlimit`), if any.
    async fn start_under(
        env: Env,
        extra: &str,
        tls: Option<(&Path, &Path, &Path)>,
        wrapper: &[&str],
    ) -> Self {
        let port = free_port();
        common::write_private(&env.path("tokens"), format!("other-token\n{TOKEN}\n"));
        let d = env.dir.path().display();
        let tls_yaml = tls.map_or(String::new(), |(c, k, _)| {
            format!(
                "  tls:\n    cert_file: {}\n    key_file: {}\n",
                c.display(),
                k.display()
            )
        });
        let schedule = if extra.contains("cron_schedule") {
            String::new()
        } else {
            "cron_schedule: \"0 0 1 1 *\"\n".to_string()
        };
        env.write_config(&format!(
            "{schedule}instance_id: {INSTANCE}\n\
             restore:\n  target_folder: {d}/restored\n  restore_executable: touch {d}/restore-ran\n\
             api:\n  listen: 127.0.0.1:{port}\n  bearer_tokens_file: {d}/tokens\n{tls_yaml}{extra}"
        ));
        let log = env.path("daemon.log");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        let child = command
            .args(["run", "config.yml"])
            .current_dir(env.dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(env.path("daemon.err")).unwrap())
            .spawn()
            .unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut builder = Client::builder().timeout(Duration::from_mins(1));
        if let Some((_, _, ca)) = tls {
            let pem = std::fs::read(ca).unwrap();
            builder = builder
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
                .tls_built_in_root_certs(false);
        }
        let agent = Self {
            child,
            env,
            base: format!("{scheme}://localhost:{port}"),
            log,
            client: builder.build().unwrap(),
        };
        let start = Instant::now();
        loop {
            let answer = agent.client.get(agent.url("/health")).send().await;
            if let Ok(r) = &answer
                && r.status() == StatusCode::OK
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the API did not answer /health ({answer:?}): {}\n{}",
                agent.logs(),
                std::fs::read_to_string(agent.env.path("daemon.err")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        agent
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        status_and_body(r).await
    }

    async fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let r = self
            .client
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        status_and_body(r).await
    }

    async fn create_backup(&self) -> i64 {
        let (status, body) = self
            .post("/backups", "application/json", b"{}".to_vec())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert!(body["message"].is_string(), "{body}");
        body["id"].as_i64().unwrap()
    }

    /// Polls `GET /backups` until the backup (or restore) `id` is done or failed.
    async fn wait(&self, list: &str, id: i64) -> Value {
        let start = Instant::now();
        loop {
            let (status, body) = self.get("/backups").await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let task = body[list]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["id"] == id)
                .map(|b| {
                    if list == "backups" {
                        b["backup_agent_task"].clone()
                    } else {
                        b["backup_agent_tasks"][0].clone()
                    }
                });
            if let Some(t) = task
                && (t["status"] == "done" || t["status"] == "failed")
            {
                return t;
            }
            assert!(
                start.elapsed() < Duration::from_mins(1),
                "{list} {id} did not finish: {body}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Writes `config` as the daemon's configuration and waits until SIGHUP reloaded it.
    async fn reload(&self, config: &str) {
        std::fs::write(self.env.path("config.yml"), config).unwrap();
        self.signal("HUP");
        let start = Instant::now();
        while !self.logs().contains("Configuration reloaded") {
            assert!(start.elapsed() < Duration::from_secs(10), "{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// SIGTERM; the daemon must exit 0 within 15 s.
    fn stop(mut self) -> String {
        self.signal("TERM");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert_eq!(status.code(), Some(0), "{}", self.logs());
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.logs()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Create → poll → download → decrypt with the binary → restore → poll → compare.
async fn whole_flow(agent: &Agent) {
    let id = agent.create_backup().await;
    let task = agent.wait("backups", id).await;
    assert_eq!(task["status"], "done", "{task}\n{}", agent.logs());
    for field in ["created_at", "updated_at"] {
        let t = task[field].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(t).unwrap_or_else(|e| panic!("{field} {t}: {e}"));
    }

    let r = agent
        .client
        .get(agent.url(&format!(
            "/service-instances/{INSTANCE}/backups/{id}/download"
        )))
        .header("Authorization", format!("bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let length: u64 = content_length(&r);
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.starts_with("attachment; filename=\"") && disposition.contains(".tar.gz.enc"),
        "{disposition}"
    );
    let bytes = r.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, length);
    assert_eq!(task["stored_bytes"].as_u64(), Some(length));
    let archive = agent.env.path("downloaded.tar.gz.enc");
    std::fs::write(&archive, &bytes).unwrap();
    let out = agent.env.path("decrypted");
    agent
        .env
        .run(&[
            "decrypt",
            "--key-file",
            "backup.key",
            "--extract",
            out.to_str().unwrap(),
            archive.to_str().unwrap(),
        ])
        .expect(0);
    let source = tree(&agent.env.path("source"));
    assert_eq!(
        tree(&out),
        source,
        "the downloaded archive holds the source"
    );

    let form = format!("instance_id={INSTANCE}&backup_id={id}");
    let (status, body) = agent
        .post(
            "/backups/restore",
            "application/x-www-form-urlencoded",
            form.into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let restore_id = body["restore_id"].as_i64().unwrap();
    let restore = agent.wait("restores", restore_id).await;
    assert_eq!(restore["status"], "done", "{restore}\n{}", agent.logs());
    assert_eq!(tree(&agent.env.path("restored")), source);
    assert!(
        agent.env.path("restore-ran").exists(),
        "the restore executable ran"
    );
    let (_, list) = agent.get("/backups").await;
    assert_eq!(list["instance_id"], INSTANCE);
    let restores = list["restores"].as_array().unwrap();
    assert_eq!(restores[0]["backup_id"], id, "{list}");
}

#[tokio::test]
async fn the_whole_flow_on_a_local_destination() {
    let agent = Agent::start("").await;
    whole_flow(&agent).await;
    let logs = agent.stop();
    assert!(!logs.contains(TOKEN), "a token was logged");
    assert!(logs.contains("All backup processes terminated. Exiting"));
}

#[tokio::test]
async fn the_whole_flow_on_s3() {
    let endpoint = server_env("SB_TEST_S3_ENDPOINT");
    let env = Env::new();
    let d = env.dir.path().display().to_string();
    let bucket = unique("api").to_lowercase();
    let agent = Agent::start_with(env, "", None).await;
    // Replace the local destination by the S3 one, and reload.
    let config = std::fs::read_to_string(agent.env.path("config.yml")).unwrap();
    let s3 = format!(
        "destinations:\n- type: s3\n  name: objects\n  config:\n    bucket_name: {bucket}\n    \
         bucket_path: api\n    access_key_id: AKIAAPITEST000000001\n    secret_access_key: api/secret\n    \
         endpoint_url: {endpoint}\n    region: us-east-1\n"
    );
    let local =
        format!("destinations:\n- type: local\n  name: disk\n  config:\n    path: {d}/backups\n");
    agent.reload(&config.replace(&local, &s3)).await;
    whole_flow(&agent).await;
    assert!(
        !agent.env.path("backups").exists(),
        "the backup went to S3, not to the old local destination"
    );
    agent.stop();
}

/// A CA made now, and a certificate it signs for localhost (the client refuses a CA
/// certificate used as the server's own): (certificate, key with mode 0600, CA).
fn test_certificates(env: &Env) -> (PathBuf, PathBuf, PathBuf) {
    let cert = env.path("cert.pem");
    let key = env.path("key.pem");
    let ca = env.path("ca.pem");
    let openssl = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(env.dir.path())
            .stderr(Stdio::null())
            .status()
            .expect("openssl is needed to make the test certificates");
        assert!(ok.success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=api test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        env.path("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "cert.pem",
    ]);
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert, key, ca)
}

#[tokio::test]
async fn tls_with_a_self_signed_certificate() {
    let env = Env::new();
    let (cert, key, ca) = test_certificates(&env);
    let agent = Agent::start_with(env, "", Some((&cert, &key, &ca))).await;
    assert!(agent.base.starts_with("https://"));
    let (status, body) = agent.get("/backups").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let plain = agent.base.replace("https://", "http://");
    let refused = reqwest::get(format!("{plain}/health")).await;
    assert!(
        refused.is_err() || !refused.unwrap().status().is_success(),
        "plain HTTP is not served on the TLS port"
    );
    agent.stop();
}

async fn status_with(agent: &Agent, auth: Option<&str>) -> (StatusCode, Value) {
    let mut req = agent.client.get(agent.url("/backups"));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, json_of(r).await)
}

#[tokio::test]
async fn tokens_are_reread_on_sighup_and_never_logged() {
    // Which headers are refused is tested in-process (src/api/routes/tests.rs); here the
    // daemon's log must not show the tokens it was sent.
    let agent = Agent::start("").await;
    let (status, _) = status_with(&agent, Some("Bearer wrong-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = status_with(&agent, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, StatusCode::OK);

    std::fs::write(agent.env.path("tokens"), "rotated-token\n").unwrap();
    agent.signal("HUP");
    let start = Instant::now();
    loop {
        let (status, _) = status_with(&agent, Some("Bearer rotated-token")).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "tokens not reread"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = status_with(&agent, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the removed token is refused"
    );
    let logs = agent.stop();
    for secret in [TOKEN, "rotated-token", "wrong-token"] {
        assert!(!logs.contains(secret), "{secret} was logged");
    }
}

async fn concurrent_posts(agent: &Agent, n: usize) -> Vec<(StatusCode, Value)> {
    let mut handles = Vec::new();
    for _ in 0..n {
        let client = agent.client.clone();
        let url = agent.url("/backups");
        handles.push(tokio::spawn(async move {
            let r = client.post(url).bearer_auth(TOKEN).send().await.unwrap();
            let status = r.status();
            (status, json_of(r).await)
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn concurrent_posts_one_runs_the_rest_get_409_with_exit_if_in_progress() {
    let agent = Agent::start("exit_if_in_progress: true\nsource_executable: sleep 2\n").await;
    let answers = concurrent_posts(&agent, 6).await;
    let created: Vec<_> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_eq!(*status, StatusCode::CONFLICT);
        assert_eq!(body["description"], IN_PROGRESS);
        assert_eq!(body["error"], "backupInProgress");
    }
    let id = created[0].1["id"].as_i64().unwrap();
    assert_eq!(agent.wait("backups", id).await["status"], "done");
    let (_, list) = agent.get("/backups").await;
    assert_eq!(list["backups"].as_array().unwrap().len(), 1, "{list}");
    agent.stop();
}

#[tokio::test]
async fn concurrent_posts_queue_and_coalesce_without_exit_if_in_progress() {
    let agent = Agent::start("source_executable: sleep 2\n").await;
    let answers = concurrent_posts(&agent, 6).await;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::CREATED),
        "{answers:?}"
    );
    let mut ids: Vec<i64> = answers
        .iter()
        .map(|(_, b)| b["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    // One runs and the others wait as one; when every request arrives before the worker
    // has taken the first from the queue, all of them are that one queued backup.
    assert!(
        (1..=2).contains(&ids.len()),
        "one runs, the others wait as one: {answers:?}"
    );
    for id in ids {
        assert_eq!(agent.wait("backups", id).await["status"], "done");
    }
    agent.stop();
}

#[tokio::test]
async fn download_while_the_destination_is_down_is_a_clear_5xx() {
    let agent = Agent::start("").await;
    let id = agent.create_backup().await;
    assert_eq!(agent.wait("backups", id).await["status"], "done");
    let dead = free_port();
    let d = agent.env.dir.path().display().to_string();
    let config = std::fs::read_to_string(agent.env.path("config.yml")).unwrap();
    let local =
        format!("destinations:\n- type: local\n  name: disk\n  config:\n    path: {d}/backups\n");
    let s3 = format!(
        "destinations:\n- type: s3\n  name: down\n  config:\n    bucket_name: b\n    bucket_path: p\n    \
         access_key_id: AKIAAPITEST000000001\n    secret_access_key: s\n    endpoint_url: http://127.0.0.1:{dead}\n"
    );
    agent.reload(&config.replace(&local, &s3)).await;
    let r = download(&agent, id, Duration::from_secs(30)).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body = json_of(r).await;
    assert_eq!(body["error"], "destinationUnavailable", "{body}");
    // Issue 20 (12): the answer says what happened in public words; the endpoint, the
    // destination's name and paths are only in the log, under the answer's reference.
    let endpoint = format!("127.0.0.1:{dead}");
    let reference = public_description(&body, &[&endpoint, &dead.to_string(), "down", &d]);
    let logs = agent.stop();
    let line = logs
        .lines()
        .find(|l| l.contains(&reference))
        .unwrap_or_else(|| panic!("no log line has reference {reference}: {logs}"));
    assert!(
        line.contains(&endpoint) && line.contains("unreachable"),
        "the log has the detail: {line}"
    );
}

/// Checks that an error body tells what happened without internal detail (none of
/// `hidden`, no path, no URL) and gives a reference to the log; returns the reference.
fn public_description(body: &Value, hidden: &[&str]) -> String {
    let description = body["description"].as_str().unwrap();
    for h in hidden {
        assert!(!description.contains(h), "{h:?} shows in {body}");
    }
    assert!(
        !description.contains('/') && !description.contains("http"),
        "a path or URL shows in {body}"
    );
    let reference = description
        .split("reference ")
        .nth(1)
        .unwrap_or_else(|| panic!("no reference in {body}"))
        .trim_end_matches('.')
        .to_string();
    assert!(
        reference.len() == 12 && reference.bytes().all(|b| b.is_ascii_hexdigit()),
        "{reference}"
    );
    reference
}

#[tokio::test]
async fn a_server_error_shows_no_path_and_logs_the_detail() {
    let agent = Agent::start("").await;
    let id = agent.create_backup().await;
    assert_eq!(agent.wait("backups", id).await["status"], "done");
    // The task database loses its table under the running daemon.
    let db = rusqlite::Connection::open(agent.env.path("service-backup.sqlite3")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute_batch("DROP TABLE tasks").unwrap();
    drop(db);
    let (status, body) = agent.get("/backups").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["error"], "internalError", "{body}");
    let d = agent.env.dir.path().display().to_string();
    let reference = public_description(&body, &[&d, "sqlite", "tasks", "no such table"]);
    let logs = agent.stop();
    let line = logs
        .lines()
        .find(|l| l.contains(&reference))
        .unwrap_or_else(|| panic!("no log line has reference {reference}: {logs}"));
    assert!(
        line.contains("service-backup.sqlite3") && line.contains("no such table"),
        "the log has the detail: {line}"
    );
}

#[tokio::test]
async fn backups_made_before_this_state_dir_are_listed_with_stable_ids() {
    let env = Env::new();
    // A backup made by hand into the destinations by this instance, then the task database
    // is lost.
    env.write_config(&format!("instance_id: {INSTANCE}\n"));
    env.run(&["backup", "config.yml"]).expect(0);
    std::fs::remove_file(env.path("service-backup.sqlite3")).unwrap();
    let _ = std::fs::remove_file(env.path("service-backup.sqlite3-wal"));
    let _ = std::fs::remove_file(env.path("service-backup.sqlite3-shm"));
    let agent = Agent::start_with(env, "", None).await;
    let (_, first) = agent.get("/backups").await;
    let backups = first["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 1, "{first}");
    assert_eq!(backups[0]["backup_agent_task"]["status"], "done");
    assert_eq!(backups[0]["backup_agent_task"]["trigger"], "discovered");
    let (_, again) = agent.get("/backups").await;
    assert_eq!(again["backups"], first["backups"], "ids are stable");
    let id = backups[0]["id"].as_i64().unwrap();
    let r = download(&agent, id, Duration::from_secs(30)).await;
    assert_eq!(r.status(), StatusCode::OK);
    agent.stop();
}

#[tokio::test]
async fn backups_of_another_instance_under_the_prefix_are_not_listed() {
    let env = Env::new();
    // Another agent (its own state) under the same prefix.
    env.write_config("instance_id: someone-else\nstate_dir: other-state\n");
    env.run(&["backup", "config.yml"]).expect(0);
    let agent = Agent::start_with(env, "", None).await;
    let id = agent.create_backup().await;
    let task = agent.wait("backups", id).await;
    assert_eq!(task["status"], "done", "{task}\n{}", agent.logs());
    let (_, listed) = agent.get("/backups").await;
    let backups = listed["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 1, "only this instance's backup: {listed}");
    assert_eq!(backups[0]["id"], id, "{listed}");
    agent.stop();
}

/// The `sh` blocks of the documented calls (`tests/fixtures/docs/a9s-api.md`), as written,
/// each with the heading of its section.
fn documented_calls() -> Vec<(String, String)> {
    let text = include_str!("fixtures/docs/a9s-api.md");
    let mut heading = String::new();
    let mut calls = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(h) = line.strip_prefix("## ") {
            heading = h.to_string();
        } else if line == "```sh" {
            let call: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            calls.push((heading.clone(), call.join("\n")));
        }
    }
    calls
}

/// Each documented backup-list and metrics call, pasted as the docs write it (flags,
/// cookie jar, `${dashboard_url}` with its trailing slash, `${url}` without it), run by
/// `bash` with the `curl` binary: each answers what the docs say. The dashboard root
/// (the Authorization call) is the session's, tested with it.
#[tokio::test]
async fn the_documented_calls_work_as_pasted() {
    let agent = Agent::start("").await;
    let id = agent.create_backup().await;
    assert_eq!(agent.wait("backups", id).await["status"], "done");
    let sampled = Instant::now();
    while agent.get("/metrics?quantity=1").await.1 == serde_json::json!([]) {
        assert!(
            sampled.elapsed() < Duration::from_secs(20),
            "no metrics sample"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let calls = documented_calls();
    let replayed: Vec<&(String, String)> = calls
        .iter()
        .filter(|(_, c)| c.contains("/backups\"") || c.contains("/metrics?quantity=1\""))
        .collect();
    assert_eq!(
        replayed.len(),
        5,
        "the fixture's list and metrics calls: {calls:?}"
    );
    let dashboard_url = format!("{}/service-instances/{INSTANCE}/", agent.base);
    let metrics_api = format!("{}/v1/instances/{INSTANCE}/", agent.base);
    for (heading, call) in replayed {
        // `url` is the dashboard URL without its slash, except in the sections of the
        // public API V1 (its metrics and its list), whose `${url}` is the V1 prefix.
        let v1 = call.contains("/metrics") || heading.contains("V1");
        let url = if v1 { &metrics_api } else { &dashboard_url };
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "bearer_token() {{ echo \"$bearer_token\"; }}\nset -e\n{call}"
            ))
            .env("bearer_token", format!("bearer {TOKEN}"))
            .env("dashboard_url", &dashboard_url)
            .env("metrics_api", &metrics_api)
            .env("url", url.trim_end_matches('/'))
            .current_dir(agent.env.dir.path())
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{call}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{call}: {e}: {body}"));
        if call.contains("/metrics") {
            let lines = answer
                .as_array()
                .unwrap_or_else(|| panic!("{call}: {answer}"));
            assert!(!lines.is_empty(), "{call}: {answer}");
        } else if v1 {
            // The V1 page's example: `"id": 2, "backup_id": "8377f207-…", "size": 2792,
            // "status": "done", "triggered_at": "2021-04-21T01:30:03.832Z", "started_at": …,
            // "finished_at": …, "downloadable": true`.
            let item = &answer[0];
            assert_eq!(item["id"], id, "{call}: {answer}");
            assert_eq!(item["status"], "done", "{call}: {answer}");
            assert!(
                item["backup_id"].as_str().is_some_and(|b| !b.is_empty()),
                "{answer}"
            );
            assert!(item["size"].as_u64().is_some_and(|s| s > 0), "{answer}");
            assert_eq!(item["downloadable"], true, "{answer}");
            for field in ["triggered_at", "started_at", "finished_at"] {
                let at = item[field]
                    .as_str()
                    .unwrap_or_else(|| panic!("{field}: {answer}"));
                chrono::DateTime::parse_from_rfc3339(at)
                    .unwrap_or_else(|e| panic!("{field} {at}: {e}"));
            }
            assert!(
                item["started_at"].as_str() <= item["finished_at"].as_str(),
                "{answer}"
            );
        } else {
            assert_eq!(answer["instance_id"], INSTANCE, "{call}: {answer}");
            assert_eq!(answer["backups"][0]["id"], id, "{call}: {answer}");
            assert_eq!(answer["backups"][0]["backup_agent_task"]["status"], "done");
            assert!(answer["restores"].is_array(), "{call}: {answer}");
        }
    }
    agent.stop();
}

/// schemathesis (installed by tests/servers/schemathesis.sh) against the running agent:
/// no 5xx, every response conforms to spec/openapi.yaml. A bounded number of examples.
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_nonconforming_response() {
    let schemathesis = server_env("SB_TEST_SCHEMATHESIS");
    let agent = Agent::start("").await;
    let id = agent.create_backup().await;
    assert_eq!(agent.wait("backups", id).await["status"], "done");
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/openapi.yaml");
    let base = agent.base.replace("localhost", "127.0.0.1");
    let settings =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/servers/schemathesis.toml");
    let out = Command::new(schemathesis)
        .arg("--config-file")
        .arg(&settings)
        .arg("run")
        .arg(&spec)
        .args(["--url", &base])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "15",
            "--seed",
            "1",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--max-time",
            "150",
            "--no-color",
        ])
        .current_dir(agent.env.dir.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("schemathesis runs");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        agent.logs()
    );
    assert!(report.contains("passed"), "{report}");
    let logs = agent.stop();
    assert!(!logs.contains(TOKEN), "a token was logged");
}

/// The daemon's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A large download read slowly by the client: the daemon sends as the client reads instead
/// of buffering the archive, so its memory stays flat.
#[tokio::test]
async fn a_large_download_read_slowly_keeps_memory_flat() {
    let agent = Agent::start("").await;
    // 256 MiB that does not compress: the stored archive is as large.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(agent.env.path("source/big.bin")).unwrap());
    for _ in 0..(256 * 1024 * 1024 / 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::io::Write::write_all(&mut file, &x.to_le_bytes()).unwrap();
    }
    std::io::Write::flush(&mut file).unwrap();
    drop(file);
    let id = agent.create_backup().await;
    let task = agent.wait("backups", id).await;
    assert_eq!(task["status"], "done", "{task}\n{}", agent.logs());

    let pid = agent.child.id();
    let before = rss_kib(pid);
    let mut r = download(&agent, id, Duration::from_mins(5)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let length: u64 = content_length(&r);
    assert!(length > 256 * 1024 * 1024, "{length}");
    let (mut got, mut peak, mut chunks) = (0u64, before, 0u32);
    while let Some(chunk) = r.chunk().await.unwrap() {
        got += chunk.len() as u64;
        chunks += 1;
        // The first 16 MiB slowly, sampling the daemon's memory: a server that buffered
        // would have read far ahead by then.
        if got < 16 * 1024 * 1024 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if chunks % 16 == 0 {
            peak = peak.max(rss_kib(pid));
        }
    }
    assert_eq!(got, length, "the whole archive arrives");
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 48 * 1024,
        "the daemon grew by {grown} KiB during a {length}-byte download (from {before} KiB)"
    );
}

/// The port of the agent's API.
fn port_of(agent: &Agent) -> u16 {
    agent.base.rsplit(':').next().unwrap().parse().unwrap()
}

/// A TLS client trusting `ca`, for connections the test holds itself.
fn tls_connector(ca: &Path) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// A connection the test opened and leaves silent.
enum Silent {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
    /// Closed by the agent before its TLS handshake finished.
    Gone,
}

/// Waits for the end of a silent connection opened at `at`: the agent must close it within
/// 15 s. Returns when it did.
async fn closed_within_15_s(at: Instant, conn: Silent) -> Result<Duration, String> {
    use tokio::io::AsyncReadExt as _;
    let deadline = tokio::time::Instant::from_std(at + Duration::from_secs(15));
    let mut buf = [0u8; 256];
    let read = match conn {
        Silent::Plain(mut s) => tokio::time::timeout_at(deadline, s.read(&mut buf)).await,
        Silent::Tls(mut s) => tokio::time::timeout_at(deadline, s.read(&mut buf)).await,
        Silent::Gone => return Ok(at.elapsed()),
    };
    match read {
        Ok(Ok(0) | Err(_)) => Ok(at.elapsed()),
        Ok(Ok(n)) => Err(format!("the agent sent {n} bytes to a silent connection")),
        Err(_) => Err("a silent connection was still open after 15 s".to_string()),
    }
}

/// The attack of issue 20 (3): while an API backup runs, 500 connections that send nothing
/// (or finish a TLS handshake and go silent). The backup completes, every silent connection
/// is closed within 15 s, and a normal client, on a new connection every 0.5 s, is answered
/// within 5 s throughout.
async fn silent_connections_during_a_backup(tls: bool, wrapper: &[&str]) -> Agent {
    let env = Env::new();
    let certs = tls.then(|| test_certificates(&env));
    let files = certs
        .as_ref()
        .map(|(c, k, a)| (c.as_path(), k.as_path(), a.as_path()));
    let agent = Agent::start_under(env, "source_executable: sleep 4\n", files, wrapper).await;
    let port = port_of(&agent);
    let id = agent.create_backup().await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let mut builder = Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(0);
        if let Some((_, _, ca)) = &certs {
            let pem = std::fs::read(ca).unwrap();
            builder = builder
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
                .tls_built_in_root_certs(false);
        }
        let client = builder.build().unwrap();
        let url = agent.url("/backups");
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut count, mut worst) = (0u32, Duration::ZERO);
            let end = Instant::now() + Duration::from_mins(2);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < end {
                let asked = Instant::now();
                let answer = client.get(&url).bearer_auth(TOKEN).send().await;
                let status = match answer {
                    Ok(r) => {
                        let status = r.status();
                        r.bytes()
                            .await
                            .map_err(|e| format!("answer {count} cut: {e}"))?;
                        status
                    }
                    Err(e) => {
                        return Err(format!(
                            "request {count} got no answer after {:?}: {e}",
                            asked.elapsed()
                        ));
                    }
                };
                let took = asked.elapsed();
                if status != StatusCode::OK || took > Duration::from_secs(5) {
                    return Err(format!("request {count}: {status} after {took:?}"));
                }
                worst = worst.max(took);
                count += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok::<_, String>((count, worst))
        })
    };

    let connector = certs.as_ref().map(|(_, _, ca)| tls_connector(ca));
    let mut silent = Vec::with_capacity(500);
    for i in 0..500 {
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        .unwrap_or_else(|_| panic!("connection {i}: connect timed out"))
        .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        let at = Instant::now();
        let conn = match &connector {
            None => Silent::Plain(stream),
            Some(c) => {
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                match tokio::time::timeout(Duration::from_secs(5), c.connect(name, stream)).await {
                    Ok(Ok(s)) => Silent::Tls(Box::new(s)),
                    _ => Silent::Gone,
                }
            }
        };
        silent.push((at, conn));
    }
    let handshakes = silent
        .iter()
        .filter(|(_, c)| matches!(c, Silent::Tls(_)))
        .count();
    if tls {
        assert!(
            handshakes >= 400,
            "only {handshakes} TLS handshakes finished"
        );
    }

    let mut closes = tokio::task::JoinSet::new();
    for (at, conn) in silent {
        closes.spawn(closed_within_15_s(at, conn));
    }
    let mut slowest = Duration::ZERO;
    while let Some(closed) = closes.join_next().await {
        slowest = slowest.max(closed.unwrap().unwrap_or_else(|e| panic!("{e}")));
    }
    let task = agent.wait("backups", id).await;
    assert_eq!(task["status"], "done", "{task}\n{}", agent.logs());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (count, worst) = poller
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the normal client: {e}\n{}", agent.logs()));
    assert!(count >= 10, "only {count} requests of the normal client");
    println!(
        "500 silent connections closed within {slowest:?}; {count} normal requests answered, \
         the slowest in {worst:?}"
    );
    let logs = agent.logs();
    assert!(
        !logs.contains("Too many open files"),
        "descriptors ran out: {logs}"
    );
    assert!(
        logs.contains("idle ones are closed to make room"),
        "the cap was reached: {logs}"
    );
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_plain_connections_under_128_open_files_neither_starve_clients_nor_backups() {
    let agent = silent_connections_during_a_backup(false, &["prlimit", "--nofile=128:128"]).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", agent.child.id())).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.split_whitespace().nth(3) == Some("128")),
        "{limits}"
    );
    assert!(
        agent.logs().contains("\"lowered_to\":64"),
        "the cap is half the open-file limit: {}",
        agent.logs()
    );
    agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_connections_neither_starve_clients_nor_backups() {
    let agent = silent_connections_during_a_backup(true, &[]).await;
    agent.stop();
}

/// Connections that never complete a request are closed: one idle after a response (keep-
/// alive), one sending its header a line a second; a download read slowly for longer than
/// the idle limit is not cut.
#[tokio::test]
async fn idle_keep_alive_and_trickled_headers_are_closed_but_a_slow_download_is_not() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let agent = Agent::start("").await;
    let port = port_of(&agent);

    let mut kept = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    // The health answer is a JSON object.
    while !String::from_utf8_lossy(&seen).ends_with('}') {
        let n = tokio::time::timeout(Duration::from_secs(5), kept.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the answer");
        seen.extend_from_slice(&buf[..n]);
    }
    let answered = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(15), kept.read(&mut buf)).await;
    assert!(
        matches!(end, Ok(Ok(0) | Err(_))),
        "an idle keep-alive connection is closed within 15 s: {end:?}"
    );
    assert!(
        answered.elapsed() >= Duration::from_secs(8),
        "closed for being idle, not at once: {:?}",
        answered.elapsed()
    );

    let trickle = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let opened = Instant::now();
    let (mut reader, mut writer) = trickle.into_split();
    let writing = tokio::spawn(async move {
        if writer
            .write_all(b"GET /backups HTTP/1.1\r\n")
            .await
            .is_err()
        {
            return;
        }
        for i in 0..30 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let line = format!("X-Slow-{i}: a\r\n");
            if writer.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut rest = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(15), reader.read_to_end(&mut rest)).await;
    assert!(
        end.is_ok(),
        "a connection trickling its header is closed within 15 s (after {:?})",
        opened.elapsed()
    );
    writing.abort();

    // 24 MiB that does not compress, read at 1.5 MiB/s: 16 s of download.
    let noise = service_backup_testkit::incompressible(24 * 1024 * 1024, 0x2545_f491_4f6c_dd1d);
    std::fs::write(agent.env.path("source/noise.bin"), noise).unwrap();
    let id = agent.create_backup().await;
    assert_eq!(agent.wait("backups", id).await["status"], "done");
    let mut r = download(&agent, id, Duration::from_mins(2)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let length: u64 = content_length(&r);
    let started = Instant::now();
    let mut got = 0u64;
    while let Some(chunk) = r.chunk().await.unwrap() {
        got += chunk.len() as u64;
        let due = Duration::from_secs_f64(got as f64 / (1.5 * 1024.0 * 1024.0));
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    assert_eq!(got, length, "the whole archive arrives");
    assert!(
        started.elapsed() > Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    agent.stop();
}

/// The owner of `/proc/<pid>/status` and the real uid of the process, as the kernel shows
/// them: a process that is not dumpable has its `/proc` files owned by root whatever its
/// user, so that no process of that user may read its memory or attach to it.
fn proc_owner_and_uid(pid: u32) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt as _;
    let path = format!("/proc/{pid}/status");
    let owner = std::fs::metadata(&path).unwrap().uid();
    let uid = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    (owner, uid)
}

/// Issue 20 (10): the daemon, which holds the raw key and the API's tokens, can write no
/// core file (limit 0) and is not dumpable (its `/proc` files belong to root, so its own
/// user cannot read its memory); a process of the same user started the same way is.
#[tokio::test]
async fn the_daemon_writes_no_core_file_and_is_not_dumpable() {
    // As root, the daemon runs as nobody: root reads every process's memory anyway.
    let unprivileged: &[&str] = &[
        "sh",
        "-c",
        "chown -R 65534:65534 . && exec setpriv --reuid=65534 --regid=65534 --clear-groups \"$0\" \"$@\"",
    ];
    let wrapper: &[&str] = if common::is_root() { unprivileged } else { &[] };
    let agent = Agent::start_under(Env::new(), "", None, wrapper).await;
    let pid = agent.child.id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().collect::<Vec<_>>()[4..6],
        ["0", "0"],
        "{core}"
    );
    let (owner, uid) = proc_owner_and_uid(pid);
    assert_ne!(uid, 0, "the daemon runs as an ordinary user");
    assert_eq!(owner, 0, "/proc/{pid} belongs to root: not dumpable");

    let mut control = Command::new(wrapper.first().copied().unwrap_or("sleep"));
    if wrapper.is_empty() {
        control.arg("5");
    } else {
        control.args(&wrapper[1..]).args(["sleep", "5"]);
    }
    let mut control = control.current_dir(agent.env.dir.path()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (control_owner, control_uid) = proc_owner_and_uid(control.id());
    assert_eq!(
        (control_owner, control_uid),
        (uid, uid),
        "an ordinary process of that user owns its /proc files"
    );
    let _ = control.kill();
    let _ = control.wait();
    agent.stop();
}

/// A TLS handshake that never finishes (a record header, then nothing) is closed within
/// 15 s like a silent connection, and a plain request on the TLS port at once; meanwhile
/// the API answers.
#[tokio::test]
async fn an_unfinished_tls_handshake_is_closed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let env = Env::new();
    let (cert, key, ca) = test_certificates(&env);
    let agent = Agent::start_with(env, "", Some((&cert, &key, &ca))).await;
    let port = port_of(&agent);
    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let opened = Instant::now();
    // A handshake record of 512 bytes announced, 4 of them sent.
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])
        .await
        .unwrap();
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let plain_end =
        tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut rest)).await;
    assert!(
        plain_end.is_ok(),
        "plain HTTP on the TLS port is closed at once"
    );
    let (status, _) = agent.get("/backups").await;
    assert_eq!(status, StatusCode::OK);
    let mut buf = [0u8; 64];
    let end = tokio::time::timeout(Duration::from_secs(15), stalled.read(&mut buf)).await;
    assert!(
        matches!(end, Ok(Ok(0) | Err(_))),
        "the stalled handshake is closed within 15 s: {end:?} after {:?}",
        opened.elapsed()
    );
    agent.stop();
}

/// With every place taken by a request in progress (two downloads the client does not
/// read, `max_connections: 2`), none is closed to make room: a newcomer waits, and is
/// answered as soon as one of them ends.
#[tokio::test]
async fn requests_in_progress_are_never_closed_to_make_room() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let agent = Agent::start("  max_connections: 2\n").await;
    assert!(
        agent.logs().contains("\"max_connections\":2"),
        "{}",
        agent.logs()
    );
    // 16 MiB that does not compress: more than the sockets' buffers hold.
    let noise = service_backup_testkit::incompressible(16 * 1024 * 1024, 0x9e37_79b9_7f4a_7c15);
    std::fs::write(agent.env.path("source/noise.bin"), noise).unwrap();
    let id = agent.create_backup().await;
    assert_eq!(agent.wait("backups", id).await["status"], "done");
    let port = port_of(&agent);
    let download = format!(
        "GET /backups/{id}/download HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(download.as_bytes()).await.unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200", "the download starts");
        stalled.push(s);
    }
    // Past the idle limit: busy connections are not idle.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let mut newcomer = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    newcomer
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let early =
        tokio::time::timeout(Duration::from_secs(2), newcomer.read_to_end(&mut answer)).await;
    assert!(early.is_err(), "no place yet: {early:?} {answer:?}");
    // The first download still flows: its connection was not closed.
    let mut chunk = vec![0u8; 64 * 1024];
    let n = stalled[0].read(&mut chunk).await.unwrap();
    assert!(n > 0, "the stalled download's connection is open");
    drop(stalled.remove(1));
    tokio::time::timeout(Duration::from_secs(5), newcomer.read_to_end(&mut answer))
        .await
        .expect("the newcomer is answered once a place is free")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with('}'),
        "{text}"
    );
    drop(stalled);
    agent.stop();
}

/// A client may shut its write side once its request is sent (as `curl` over some proxies
/// and many scripts do) and still gets the answer: hyper's default closed such a connection
/// as soon as it read the end of the stream, before the handler answered (found by review:
/// 98 of 100 `GET /backups` unanswered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_half_closes_after_its_request_gets_the_answer() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let agent = Agent::start("").await;
    let id = agent.create_backup().await;
    assert_eq!(agent.wait("backups", id).await["status"], "done");
    let port = port_of(&agent);
    let mut unanswered = Vec::new();
    for (i, path) in std::iter::repeat_n(["/backups", "/health"], 25)
        .flatten()
        .enumerate()
    {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        );
        s.write_all(request.as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
            .await
            .expect("the connection ends")
            .unwrap();
        if !answer.starts_with(b"HTTP/1.1 200") {
            unanswered.push((i, path, String::from_utf8_lossy(&answer).into_owned()));
        }
    }
    assert!(unanswered.is_empty(), "unanswered: {unanswered:?}");
    agent.stop();
}

/// The same over TLS, where a client shuts its TCP write side without a `close_notify`
/// (found by review: every request unanswered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_half_closes_without_close_notify_gets_the_answer() {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let env = Env::new();
    let (cert, key, ca) = test_certificates(&env);
    let agent = Agent::start_with(env, "", Some((&cert, &key, &ca))).await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&ca).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let port = port_of(&agent);
    let mut unanswered = Vec::new();
    for (i, path) in std::iter::repeat_n(["/backups", "/health"], 10)
        .flatten()
        .enumerate()
    {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        // The TCP write side only: no close_notify.
        tls.get_mut().0.shutdown().await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let read = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
                .await
                .expect("the connection ends");
            // The end, or an error once the server closed: what came before is the answer.
            match read {
                Ok(n) if n > 0 => answer.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        if !answer.starts_with(b"HTTP/1.1 200") {
            unanswered.push((i, path, String::from_utf8_lossy(&answer).into_owned()));
        }
    }
    assert!(unanswered.is_empty(), "unanswered: {unanswered:?}");
    agent.stop();
}
