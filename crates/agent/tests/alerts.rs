//! Alerts on failed backups and recoveries: the webhook against a real HTTP server run by
//! the test (recording every request), and the platform's notifications flow against a
//! stand-in of the UAA, the Cloud Controller and the notifications service, all driven by
//! the daemon inside this process on a schedule of `@every 1s`. A local destination fails
//! while its folder is a plain file, and succeeds once the file is gone. The logs of the
//! real binary are checked for secrets.

mod common;

use std::collections::VecDeque;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use service_backup::config::{self, Config};
use service_backup::daemon;
use service_backup::queue::Queue;
use service_backup_core::format::Key;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long anything the tests wait for may take.
const LIMIT: Duration = Duration::from_mins(1);

/// The instance id every site configures.
const INSTANCE: &str = "alerts-test-0";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Request {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Request {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// How the receiver answers a request: a status and a body, or never.
type Answer = Box<dyn Fn(&Request) -> Option<(StatusCode, String)> + Send + Sync>;

/// An HTTP server in this process that records every request.
#[derive(Clone)]
struct Receiver {
    requests: Arc<Mutex<Vec<Request>>>,
    /// Statuses to answer first, in order, before `answer` decides.
    scripted: Arc<Mutex<VecDeque<StatusCode>>>,
    answer: Arc<Answer>,
    url: String,
}

impl Receiver {
    async fn start(answer: Answer) -> Self {
        Self::answering(|_| answer).await
    }

    /// A receiver whose answers are made knowing its URL.
    async fn answering(make: impl FnOnce(String) -> Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let receiver = Self {
            requests: Arc::default(),
            scripted: Arc::default(),
            answer: Arc::new(make(url.clone())),
            url,
        };
        let app = Router::new().fallback(record).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    async fn wait_for(&self, what: &str, check: impl Fn(&[Request]) -> bool) -> Vec<Request> {
        let start = Instant::now();
        loop {
            let got = self.requests();
            if check(&got) {
                return got;
            }
            assert!(start.elapsed() < LIMIT, "{what} within {LIMIT:?}: {got:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn record(
    State(receiver): State<Receiver>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Request {
        method,
        uri,
        headers,
        body,
    };
    receiver.requests.lock().unwrap().push(request.clone());
    if let Some(status) = receiver.scripted.lock().unwrap().pop_front() {
        return status.into_response();
    }
    match (receiver.answer)(&request) {
        Some((status, body)) => (status, body).into_response(),
        None => std::future::pending().await,
    }
}

/// A folder with a configuration, a key, a source folder and a local destination `disk`.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(extra: &str) -> Self {
        let site = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let source = site.path("source");
        std::fs::create_dir_all(&source).unwrap();
        std::fs::write(source.join("dump.sql"), "INSERT INTO t VALUES (1);\n").unwrap();
        let key = Key::generate().unwrap();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(site.path("backup.key"))
            .unwrap();
        std::io::Write::write_all(&mut file, key.to_base64().as_str().as_bytes()).unwrap();
        let d = site.dir.path().display();
        let yaml = format!(
            "destinations:\n- type: local\n  name: disk\n  config:\n    path: {d}/backups\n\
             source_folder: {d}/source\nstate_dir: {d}/state\ninstance_id: {INSTANCE}\n\
             cron_schedule: \"@every 1s\"\nencryption:\n  key_file: {d}/backup.key\n{extra}"
        );
        let path = site.config_file();
        std::fs::write(&path, yaml).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        site
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config_file(&self) -> PathBuf {
        self.path("config.yml")
    }

    fn config(&self) -> Config {
        config::load(&self.config_file()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The destination fails: its folder is a plain file.
    fn break_destination(&self) {
        std::fs::write(self.path("backups"), "not a folder").unwrap();
    }

    /// The destination works again.
    fn mend_destination(&self) {
        std::fs::remove_file(self.path("backups")).unwrap();
    }
}

/// A daemon serving a site inside this process.
struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<service_backup_core::Result<()>>,
}

impl Running {
    fn start(site: &Site) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(daemon::serve(
            site.config_file(),
            site.config(),
            Arc::new(Queue::default()),
            shutdown.clone(),
        ));
        Self { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("the daemon stops after the shutdown token")
            .expect("the daemon does not panic")
            .expect("the daemon stops without error");
    }
}

fn status_of(request: &Request) -> String {
    request.json()["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The webhook block of a site, sending to `url` with a secret header.
fn webhook(url: &str, extra: &str) -> String {
    format!(
        "alerts:\n  product_name: TestDB\n  webhook:\n    url: {url}/hook\n    headers:\n      \
         Authorization: Bearer HOOK-SECRET-TOKEN\n      X-Team: data\n{extra}"
    )
}

/// Checks every field of a webhook body made between `after` and now.
fn check_body(body: &Value, status: &str, after: chrono::DateTime<chrono::Utc>) {
    let object = body.as_object().expect("an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "agent_version",
            "backup_name",
            "error",
            "failed_destinations",
            "instance_id",
            "product_name",
            "status",
            "stored_in",
            "time"
        ],
        "{body}"
    );
    assert_eq!(body["status"], status);
    assert_eq!(body["instance_id"], INSTANCE);
    assert_eq!(body["product_name"], "TestDB");
    assert_eq!(body["agent_version"], env!("CARGO_PKG_VERSION"));
    let time = chrono::DateTime::parse_from_rfc3339(body["time"].as_str().expect("time"))
        .expect("an RFC 3339 time");
    assert!(
        time >= after - chrono::Duration::seconds(1) && time <= chrono::Utc::now(),
        "{time}"
    );
    let name = body["backup_name"].as_str().expect("a backup name");
    assert!(name.contains(INSTANCE), "{name}");
    if status == "failed" {
        assert_eq!(body["failed_destinations"], serde_json::json!(["disk"]));
        assert_eq!(body["stored_in"], serde_json::json!([]));
        assert!(
            !body["error"].as_str().expect("an error").is_empty(),
            "{body}"
        );
    } else {
        assert_eq!(body["failed_destinations"], serde_json::json!([]));
        assert_eq!(body["stored_in"], serde_json::json!(["disk"]));
        assert!(body["error"].is_null(), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_retried_to_the_webhook_and_the_recovery_follows_a_restart() {
    let receiver = Receiver::start(Box::new(|_| Some((StatusCode::OK, String::new())))).await;
    // The first request is answered 500: the alert is sent again (a second after).
    receiver
        .scripted
        .lock()
        .unwrap()
        .push_back(StatusCode::INTERNAL_SERVER_ERROR);
    let site = Site::new(&webhook(&receiver.url, ""));
    site.break_destination();
    let started = chrono::Utc::now();
    let daemon = Running::start(&site);
    // Backups fail every second, each with its alert: the retry is the one that repeats
    // the first body.
    let got = receiver
        .wait_for("a failure alert, retried", |r| {
            r.len() >= 2 && r[1..].iter().any(|q| q.body == r[0].body)
        })
        .await;
    daemon.stop().await;

    let first = &got[0];
    let retry = got[1..].iter().find(|q| q.body == first.body).unwrap();
    for request in [first, retry] {
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.uri.path(), "/hook");
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(request.header("authorization"), "Bearer HOOK-SECRET-TOKEN");
        assert_eq!(request.header("x-team"), "data");
        check_body(&request.json(), "failed", started);
    }
    assert_eq!(first.body, retry.body, "a retry sends the same alert");

    // The outcome is kept in the state folder: after a restart, the first success is a
    // recovery, sent once.
    site.mend_destination();
    let before = receiver.requests().len();
    let mended = chrono::Utc::now();
    let daemon = Running::start(&site);
    let got = receiver
        .wait_for("a recovery alert", |r| {
            r[before..].iter().any(|q| status_of(q) == "recovered")
        })
        .await;
    // Later successes send nothing more.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    daemon.stop().await;
    let after: Vec<Request> = receiver.requests()[before..]
        .iter()
        .filter(|q| status_of(q) != "failed")
        .cloned()
        .collect();
    assert_eq!(after.len(), 1, "one recovery: {after:#?}");
    let recovered = got[before..]
        .iter()
        .find(|q| status_of(q) == "recovered")
        .unwrap();
    assert_eq!(
        recovered.header("authorization"),
        "Bearer HOOK-SECRET-TOKEN"
    );
    check_body(&recovered.json(), "recovered", mended);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_does_not_delay_the_next_backup() {
    // The receiver takes every request and never answers.
    let receiver = Receiver::start(Box::new(|_| None)).await;
    let site = Site::new(&webhook(
        &receiver.url,
        "    timeout_seconds: 30\n    retry_limit: 0\n",
    ));
    site.break_destination();
    let daemon = Running::start(&site);
    // Each failed backup sends its alert while the earlier ones still hang: the backups
    // go on at the schedule's pace (a second apart), not at the alerts' 30 s budget.
    let start = Instant::now();
    let got = receiver
        .wait_for("three alerts hanging at once", |r| r.len() >= 3)
        .await;
    let took = start.elapsed();
    daemon.stop().await;
    assert!(
        took < Duration::from_secs(10),
        "three backups a second apart took {took:?} while their alerts hung"
    );
    let times: Vec<String> = got
        .iter()
        .map(|q| q.json()["time"].as_str().unwrap().to_string())
        .collect();
    let mut distinct = times.clone();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        times.len(),
        "one alert per backup: {times:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_refused_while_one_runs_is_alerted() {
    let receiver = Receiver::start(Box::new(|_| Some((StatusCode::OK, String::new())))).await;
    let site = Site::new(&webhook(&receiver.url, ""));
    let dump = site.path("dump.sh");
    std::fs::write(&dump, "#!/bin/sh\nsleep 3\n").unwrap();
    std::fs::set_permissions(&dump, std::fs::Permissions::from_mode(0o755)).unwrap();
    let yaml = std::fs::read_to_string(site.config_file()).unwrap();
    std::fs::write(
        site.config_file(),
        format!(
            "{yaml}exit_if_in_progress: true\nsource_executable: {}\n",
            dump.display()
        ),
    )
    .unwrap();
    let daemon = Running::start(&site);
    // s3integration/s3_integration_test.go, "accepts the first, rejects subsequent backup
    // requests, and sends an alert": the notification's text
    // `ContainSubstring("Backup currently in progress, exiting. Another backup will not be
    // able to start until this is completed.")`.
    let got = receiver
        .wait_for("the alert of a refused backup", |r| !r.is_empty())
        .await;
    daemon.stop().await;
    let body = got[0].json();
    assert_eq!(body["status"], "failed");
    assert_eq!(
        body["error"],
        "Backup currently in progress, exiting. Another backup will not be able to start \
         until this is completed."
    );
    assert!(body["backup_name"].is_null(), "{body}");
    assert_eq!(body["failed_destinations"], serde_json::json!(["disk"]));
}

/// The stand-in's answers: the documented shapes of the Cloud Controller's v2 API, the
/// UAA's token endpoint and the notifications service (no real one runs here).
fn platform(url: String) -> Answer {
    Box::new(move |request| {
        let path = request.uri.path();
        let body = match (request.method.as_str(), path) {
            ("GET", "/v2/info") => format!(r#"{{"token_endpoint": "{url}/uaa"}}"#),
            ("POST", "/uaa/oauth/token") => {
                let form = String::from_utf8_lossy(&request.body).into_owned();
                let token = if form.contains("grant_type=password") {
                    "cf-token"
                } else {
                    "notifications-token"
                };
                format!(r#"{{"access_token": "{token}", "token_type": "bearer"}}"#)
            }
            ("GET", "/v2/organizations") => {
                r#"{"total_results": 1, "resources": [{"metadata": {"guid": "org_guid"}}]}"#
                    .to_string()
            }
            ("GET", "/v2/organizations/org_guid/spaces") => {
                r#"{"total_results": 1, "resources": [{"metadata": {"guid": "space_guid"}}]}"#
                    .to_string()
            }
            ("POST", "/notify/spaces/space_guid") => String::new(),
            _ => return Some((StatusCode::NOT_FOUND, String::new())),
        };
        Some((StatusCode::OK, body))
    })
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Runs a failing site with `alerts` until the notification is posted; returns the
/// stand-in's requests up to it.
async fn notified(alerts: impl Fn(&str) -> String) -> Vec<Request> {
    // The stand-in names its own URL in /v2/info.
    let receiver = Receiver::answering(platform).await;
    let url = receiver.url.clone();
    let site = Site::new(&alerts(&url));
    site.break_destination();
    let daemon = Running::start(&site);
    let got = receiver
        .wait_for("a notification", |r| {
            r.iter()
                .any(|q| q.uri.path() == "/notify/spaces/space_guid")
        })
        .await;
    daemon.stop().await;
    let end = got
        .iter()
        .position(|q| q.uri.path() == "/notify/spaces/space_guid")
        .unwrap();
    got[..=end].to_vec()
}

/// The checks the original's integration test made of the flow (`s3integration/`
/// `s3_integration_test.go`, "sends an alert"), after the UAA is known.
fn check_flow(requests: &[Request]) {
    let (cf_token, orgs, spaces, client_token, notify) = (
        &requests[0],
        &requests[1],
        &requests[2],
        &requests[3],
        &requests[4],
    );
    // `ghttp.VerifyRequest("POST", "/oauth/token", "")`, `ghttp.VerifyBasicAuth("cf", "")`,
    // `ghttp.VerifyFormKV("grant_type", "password")`, `VerifyFormKV("username", "admin")`,
    // `VerifyFormKV("password", "password")`
    assert_eq!(
        (cf_token.method.as_str(), cf_token.uri.path()),
        ("POST", "/uaa/oauth/token")
    );
    assert_eq!(cf_token.header("authorization"), basic("cf", ""));
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&cf_token.body).unwrap();
    assert!(
        form.contains(&("grant_type".into(), "password".into())),
        "{form:?}"
    );
    assert!(
        form.contains(&("username".into(), "admin".into())),
        "{form:?}"
    );
    assert!(
        form.contains(&("password".into(), "CC-PASSWORD-SECRET".into())),
        "{form:?}"
    );
    // `ghttp.VerifyRequest("GET", "/v2/organizations", "q=name:cf_org")` with
    // `"Authorization": {fmt.Sprintf("Bearer %s", cfToken)}`
    assert_eq!(
        (orgs.method.as_str(), orgs.uri.path(), orgs.uri.query()),
        ("GET", "/v2/organizations", Some("q=name%3Acf_org"))
    );
    assert_eq!(orgs.header("authorization"), "Bearer cf-token");
    // `ghttp.VerifyRequest("GET", "/v2/organizations/org_guid/spaces", "q=name:cf_space")`
    assert_eq!(
        (
            spaces.method.as_str(),
            spaces.uri.path(),
            spaces.uri.query()
        ),
        (
            "GET",
            "/v2/organizations/org_guid/spaces",
            Some("q=name%3Acf_space")
        )
    );
    assert_eq!(spaces.header("authorization"), "Bearer cf-token");
    // `ghttp.VerifyBasicAuth("client_id", "client_secret")`,
    // `ghttp.VerifyFormKV("grant_type", "client_credentials")`
    assert_eq!(client_token.uri.path(), "/uaa/oauth/token");
    assert_eq!(
        client_token.header("authorization"),
        basic("client_id", "CLIENT-SECRET-VALUE")
    );
    assert_eq!(&client_token.body[..], b"grant_type=client_credentials");
    // `ghttp.VerifyRequest("POST", "/spaces/space_guid")` with
    // `"X-NOTIFICATIONS-VERSION": {"1"}` and `"Authorization": {"Bearer " + notificationsToken}`
    assert_eq!(notify.method, Method::POST);
    assert_eq!(notify.header("x-notifications-version"), "1");
    assert_eq!(notify.header("authorization"), "Bearer notifications-token");
    assert_eq!(notify.header("content-type"), "application/json");
    let body = notify.json();
    // `Expect(notificationRequestBodyFields["subject"]).To(ContainSubstring("SomeDB"))` and
    // `ContainSubstring("Service Backup Failed")`; the client's subject is
    // `[Service Alert][<product>] <subject>` (service-alerts-client send_service_alert.go).
    assert_eq!(
        body["subject"],
        "[Service Alert][TestDB] Service Backup Failed"
    );
    // `ContainSubstring("Alert from SomeDB, service instance FakeIdentifier:")` and
    // `ContainSubstring("A backup run has failed with the following error:")`
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            "Alert from TestDB, service instance {INSTANCE}:\n\n\
             A backup run has failed with the following error: "
        )),
        "{text}"
    );
    assert!(text.contains("\n\n[Alert generated at "), "{text}");
    // `KindID: DummyKindID` ("service-alerts"), `ReplyTo` from the configuration.
    assert_eq!(body["kind_id"], "service-alerts");
    assert_eq!(body["reply_to"], "me@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_notified_to_the_space_through_the_platform() {
    // Release 18 on: the Cloud Controller names the UAA (`GET /v2/info`, as the client's
    // getUaaUrl), then the flow.
    let requests = notified(|url| {
        format!(
            "alerts:\n  product_name: TestDB\n  config:\n    cloud_controller: {{url: '{url}', \
             user: admin, password: CC-PASSWORD-SECRET}}\n    notifications: {{service_url: \
             '{url}/notify', cf_org: cf_org, cf_space: cf_space, reply_to: me@example.com, \
             client_id: client_id, client_secret: CLIENT-SECRET-VALUE}}\n    \
             timeout_seconds: 20\n"
        )
    })
    .await;
    assert_eq!(requests.len(), 6, "{requests:#?}");
    assert_eq!(
        (requests[0].method.as_str(), requests[0].uri.path()),
        ("GET", "/v2/info")
    );
    check_flow(&requests[1..]);

    // Release 17.2: the UAA is given; nothing asks the Cloud Controller for it.
    let requests = notified(|url| {
        format!(
            "alerts:\n  product_name: TestDB\n  config:\n    cloud_controller: {{url: '{url}', \
             user: admin, password: CC-PASSWORD-SECRET}}\n    notification_target:\n      \
             url: '{url}/notify'\n      cf_org: cf_org\n      cf_space: cf_space\n      \
             reply_to: me@example.com\n      authentication:\n        uaa: {{url: '{url}/uaa', \
             client_id: client_id, client_secret: CLIENT-SECRET-VALUE}}\n"
        )
    })
    .await;
    assert_eq!(requests.len(), 5, "{requests:#?}");
    check_flow(&requests);
}

#[test]
fn the_daemon_logs_its_alerts_and_none_of_their_secrets() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let receiver = runtime.block_on(Receiver::start(Box::new(|_| {
        Some((StatusCode::OK, String::new()))
    })));
    // A webhook URL may hold a token in its path (chat services do): it is a secret too.
    let site = Site::new(&format!(
        "alerts:\n  product_name: TestDB\n  webhook:\n    url: {}/hook/URL-SECRET-PART\n    \
         headers: {{Authorization: Bearer HOOK-SECRET-TOKEN}}\n  config:\n    \
         cloud_controller: {{url: 'http://127.0.0.1:9', user: admin, password: \
         CC-PASSWORD-SECRET}}\n    notifications: {{service_url: 'http://127.0.0.1:9', \
         cf_org: o, cf_space: s, client_id: c, client_secret: CLIENT-SECRET-VALUE}}\n    \
         timeout_seconds: 3\n    retry_limit: 1\n",
        receiver.url
    ));
    for secret in [
        "URL-SECRET-PART",
        "HOOK-SECRET-TOKEN",
        "CC-PASSWORD-SECRET",
        "CLIENT-SECRET-VALUE",
    ] {
        common::secret(secret);
    }
    site.break_destination();
    let log = std::fs::File::create(site.path("daemon.log")).unwrap();
    let mut child = std::process::Command::new(common::binary())
        .arg("run")
        .arg(site.config_file())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    // The webhook gets its alert; the notifications service (nothing listens there)
    // fails within its 3 s budget and is logged.
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(site.path("daemon.log")).unwrap();
        if text.contains("error sending service alert") && !receiver.requests().is_empty() {
            break;
        }
        assert!(start.elapsed() < LIMIT, "alerts within {LIMIT:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(site.path("daemon.log")).unwrap();
    common::printed(&text);
    // The original's lines (scheduler/scheduler.go): "Sending alert." before sending and
    // "error sending service alert" when it failed.
    assert!(text.contains("Sending alert."), "{text}");
    assert!(text.contains("\"channel\":\"notifications\""), "{text}");
    for secret in [
        "URL-SECRET-PART",
        "HOOK-SECRET-TOKEN",
        "CC-PASSWORD-SECRET",
        "CLIENT-SECRET-VALUE",
    ] {
        assert!(!text.contains(secret), "{secret} in the log:\n{text}");
    }
    drop(runtime);
}

#[test]
fn a_failure_without_alerts_says_so() {
    let site = Site::new("");
    site.break_destination();
    let log = std::fs::File::create(site.path("daemon.log")).unwrap();
    let mut child = std::process::Command::new(common::binary())
        .arg("run")
        .arg(site.config_file())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let start = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(site.path("daemon.log")).unwrap();
        if text.contains("Alerts not configured.") || start.elapsed() > LIMIT {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait().unwrap();
    common::printed(&text);
    // s3integration/s3_integration_test.go, "and alerts are not configured":
    // `Eventually(backupProcess, awsTimeout).Should(gbytes.Say("Alerts not configured."))`
    let failed = text
        .find("Upload backup completed with error")
        .expect(&text);
    let said = text.find("Alerts not configured.").expect(&text);
    assert!(failed < said, "{text}");
    assert!(!text.contains("Sending alert."), "{text}");
}

/// An HTTPS receiver with a certificate of a private CA: it records each request's head and
/// body as text and answers 200. Returns its URL and the CA's PEM.
async fn https_receiver(dir: &std::path::Path) -> (String, String, Arc<Mutex<Vec<String>>>) {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    common::private_ca(dir, "alerts-test-ca");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let certs = CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else {
                    return;
                };
                let mut text = Vec::new();
                let mut buf = [0u8; 4096];
                // The head, then as much body as Content-Length says.
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    text.extend_from_slice(&buf[..n]);
                    let request = String::from_utf8_lossy(&text).into_owned();
                    if let Some((head, body)) = request.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            record.lock().unwrap().push(request);
                            let _ = stream
                                .write_all(
                                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                                )
                                .await;
                            let _ = stream.shutdown().await;
                            return;
                        }
                    }
                }
            });
        }
    });
    let pem = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    (url, pem, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_behind_a_private_ca_is_trusted_through_ca_cert() {
    let certs = tempfile::tempdir().unwrap();
    let (url, pem, seen) = https_receiver(certs.path()).await;
    let indented: String = pem.lines().map(|l| format!("      {l}\n")).collect();
    // Without ca_cert the certificate is not trusted: nothing arrives.
    let untrusted = Site::new(&webhook(&url, "    retry_limit: 0\n"));
    untrusted.break_destination();
    let daemon = Running::start(&untrusted);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    daemon.stop().await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );

    let site = Site::new(&webhook(&url, &format!("    ca_cert: |\n{indented}")));
    site.break_destination();
    let daemon = Running::start(&site);
    let start = Instant::now();
    while seen.lock().unwrap().is_empty() {
        assert!(
            start.elapsed() < LIMIT,
            "an alert over HTTPS within {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.stop().await;
    let request = seen.lock().unwrap()[0].clone();
    assert!(request.starts_with("POST /hook HTTP/1.1\r\n"), "{request}");
    assert!(
        request
            .to_ascii_lowercase()
            .contains("authorization: bearer hook-secret-token\r\n"),
        "{request}"
    );
    let body: Value = serde_json::from_str(request.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["status"], "failed");
    assert_eq!(body["instance_id"], INSTANCE);
}

/// Runs the `run` command of a failing site whose notifications go to a stand-in answering
/// as `answer` does (its URL given), until an alert's failure is logged; returns the log
/// and the stand-in's requests.
fn failed_notification(answer: impl FnOnce(String) -> Answer) -> (String, Vec<Request>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let receiver = runtime.block_on(Receiver::answering(answer));
    let url = &receiver.url;
    let site = Site::new(&format!(
        "alerts:\n  product_name: TestDB\n  config:\n    cloud_controller: {{url: '{url}', \
         user: admin, password: CC-PASSWORD-SECRET}}\n    notifications: {{service_url: \
         '{url}/notify', cf_org: cf_org, cf_space: cf_space, client_id: client_id, \
         client_secret: CLIENT-SECRET-VALUE}}\n    timeout_seconds: 20\n    retry_limit: 0\n"
    ));
    site.break_destination();
    let log = std::fs::File::create(site.path("daemon.log")).unwrap();
    let mut child = std::process::Command::new(common::binary())
        .arg("run")
        .arg(site.config_file())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let start = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(site.path("daemon.log")).unwrap();
        if text.contains("error sending service alert") || start.elapsed() > LIMIT {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait().unwrap();
    common::printed(&text);
    let requests = receiver.requests();
    drop(runtime);
    (text, requests)
}

#[test]
fn a_huge_platform_answer_is_refused_at_1_mib() {
    // Attack finding 7: a `/v2/info` of 300 MB was read whole. Here 8 MiB: the read stops
    // at the 1 MiB cap, with an error that says so.
    let (text, _) = failed_notification(|url| {
        let fine = platform(url);
        Box::new(move |request| {
            if request.uri.path() == "/v2/info" {
                Some((
                    StatusCode::OK,
                    format!("{{\"x\": \"{}\"}}", "a".repeat(8 << 20)),
                ))
            } else {
                fine(request)
            }
        })
    });
    assert!(
        text.contains("CF response is larger than 1 MiB; it was not read"),
        "{text}"
    );
    // The same for the UAA's token answer.
    let (text, requests) = failed_notification(|url| {
        let fine = platform(url);
        Box::new(move |request| {
            if request.uri.path() == "/uaa/oauth/token" {
                Some((
                    StatusCode::OK,
                    format!("{{\"access_token\": \"{}\"}}", "t".repeat(2 << 20)),
                ))
            } else {
                fine(request)
            }
        })
    });
    assert!(
        text.contains("UAA response is larger than 1 MiB; it was not read"),
        "{text}"
    );
    assert!(
        !requests.iter().any(|r| r.uri.path().starts_with("/notify")),
        "{requests:#?}"
    );
}

#[test]
fn a_guid_that_would_change_the_path_is_refused() {
    // Attack finding 8: a space guid `../../../admin` made the agent `POST /admin` with
    // the notifications token.
    let (text, requests) = failed_notification(|url| {
        let fine = platform(url);
        Box::new(move |request| {
            if request.uri.path() == "/v2/organizations/org_guid/spaces" {
                Some((
                    StatusCode::OK,
                    r#"{"total_results": 1, "resources": [{"metadata": {"guid": "../../../admin"}}]}"#
                        .to_string(),
                ))
            } else {
                fine(request)
            }
        })
    });
    assert!(
        text.contains("CF API answered with a guid that is not one"),
        "{text}"
    );
    let paths: Vec<&str> = requests.iter().map(|r| r.uri.path()).collect();
    assert!(
        paths
            .iter()
            .all(|p| !p.contains("admin") && !p.starts_with("/notify")),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/v2/organizations/org_guid/spaces"),
        "{paths:?}"
    );
}
