//! Health events against a real Kafka-compatible broker (tansu, started by
//! tests/servers/kafka.sh): every field of the schema, the statuses of a scripted sequence
//! (success, one of two destinations down, both down, recovery), the interval, a broker
//! killed mid-run; TLS to a broker (a terminator in the test before a plain tansu) with the
//! right CA and with another one; the file and stdout sinks. The daemon runs inside the test
//! process but for the stdout sink, which needs a process of its own.
//!
//! SASL has no test against a broker: tansu 0.6.0 has `--authentication` and `tansu user
//! create` (SCRAM only; no PLAIN in the binary), but with memory storage the user cannot be
//! made once authentication is on (`NotAuthenticated`), and with storage that survives a
//! restart (S3) the authenticating broker answers every SCRAM-SHA-256 and SCRAM-SHA-512
//! handshake of rskafka, right password or wrong, with `NoSharedMechanism`. The password's
//! masking is unit-tested in src/health/kafka.rs.

mod common;
use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rskafka::client::ClientBuilder;
use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use serde_json::Value;
use service_backup::config::{self, Config};
use service_backup::daemon;
use service_backup::queue::Queue;
use service_backup::tasks::Tasks;
use service_backup::tasks::store::TaskKind;
use service_backup_core::format::Key;
use service_backup_core::task::TaskState;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long anything the tests wait for may take.
const LIMIT: Duration = Duration::from_mins(1);

/// The API's token in the test that serves it.
const TOKEN: &str = "health-test-token-5b1d";

/// `GET /health`: the status code and the body.
async fn health(api: &str) -> (u16, Value) {
    let answer = reqwest::get(format!("{api}/health"))
        .await
        .unwrap_or_else(|e| panic!("GET /health: {e}"));
    let code = answer.status().as_u16();
    let body = answer.text().await.unwrap();
    (
        code,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}")),
    )
}

/// A schedule that does not fire during a test (03:00 on 1 January).
const NEVER: &str = "cron_schedule: \"0 3 1 1 *\"\n";

/// The running broker of tests/servers/kafka.sh; a missing one fails the test.
fn broker() -> String {
    std::env::var("SB_TEST_KAFKA").expect(
        "SB_TEST_KAFKA is not set: run the tests through tests/run.sh, which starts the broker (tests/servers/kafka.sh)",
    )
}

/// A name no other test uses.
fn unique(prefix: &str) -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).unwrap();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{prefix}{hex}")
}

/// A client of `broker`, through TLS when `tls` is given.
async fn kafka_client(
    broker: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<rskafka::client::Client, String> {
    let mut builder = ClientBuilder::new(vec![broker.to_string()]);
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.clone());
    }
    builder.build().await.map_err(|e| e.to_string())
}

/// Creates `topic` (one partition) on `broker`: tansu does not create topics on demand.
async fn create_topic(broker: &str, topic: &str) {
    create_topic_via(broker, topic, None).await;
}

/// Creates `topic` on `broker`, through TLS when `tls` is given.
async fn create_topic_via(broker: &str, topic: &str, tls: Option<&Arc<rustls::ClientConfig>>) {
    let start = Instant::now();
    loop {
        let made = async {
            let client = kafka_client(broker, tls).await?;
            client
                .controller_client()
                .map_err(|e| e.to_string())?
                .create_topic(topic, 1, 1, 5_000)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match made {
            Ok(()) => return,
            // An attempt whose answer was lost (a broker still starting) may have made it.
            Err(e) if e.contains("TopicAlreadyExists") => return,
            Err(e) => assert!(
                start.elapsed() < LIMIT,
                "topic {topic} on {broker} not created: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A consumer of partition 0 of `topic`.
struct Consumer {
    client: PartitionClient,
    offset: i64,
}

impl Consumer {
    async fn new(broker: &str, topic: &str) -> Self {
        Self::via(broker, topic, None).await
    }

    /// A consumer through TLS when `tls` is given.
    async fn via(broker: &str, topic: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Self {
        let client = kafka_client(broker, tls)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the broker {broker}: {e}"));
        let client = client
            .partition_client(topic, 0, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        Self { client, offset: 0 }
    }

    /// The events published since the last call, waiting up to `wait` for at least one.
    async fn poll(&mut self, wait: Duration) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let fetched = self
                .client
                .fetch_records(self.offset, 1..1_000_000, 500)
                .await;
            if let Ok((records, _)) = fetched
                && !records.is_empty()
            {
                self.offset = records.last().unwrap().offset + 1;
                return records
                    .into_iter()
                    .map(|r| {
                        serde_json::from_slice(&r.record.value.unwrap()).expect("a JSON event")
                    })
                    .collect();
            }
            if start.elapsed() > wait {
                return Vec::new();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until an event with `status` arrives; returns every event seen until then.
    async fn until(&mut self, status: &str) -> Vec<Value> {
        let start = Instant::now();
        let mut seen = Vec::new();
        loop {
            let got = self.poll(Duration::from_secs(1)).await;
            let found = got.iter().any(|e| e["health_status"] == status);
            seen.extend(got);
            if found {
                return seen;
            }
            assert!(
                start.elapsed() < LIMIT,
                "no {status} event within {LIMIT:?}; seen {seen:?}"
            );
        }
    }
}

/// Checks `event` against the health exposure schema 1.1 and this test's names.
fn check_schema(event: &Value, tenant: &str) {
    let keys: Vec<&str> = event
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = vec![
        "version",
        "timestamp",
        "id",
        "platform",
        "tenant_name",
        "space_name",
        "cloud_service_name",
        "service_instance",
        "health_status",
        "health_description",
    ];
    want.sort_unstable();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(keys, want, "{event}");
    assert_eq!(event["version"], "1.1");
    assert_eq!(event["platform"], "ESC");
    assert_eq!(event["tenant_name"], tenant);
    assert_eq!(event["space_name"], "space-1");
    assert_eq!(event["cloud_service_name"], "postgres");
    assert_eq!(
        event["service_instance"],
        serde_json::json!({"id": "si-1", "name": "orders-db", "instance_class_name": "small"})
    );
    assert!(
        ["OK", "WARNING", "DEGRADED", "ERROR"].contains(&event["health_status"].as_str().unwrap()),
        "{event}"
    );
    assert!(
        event["health_description"]
            .as_str()
            .is_some_and(|d| d.len() > 10),
        "{event}"
    );
    // UTC, ISO 8601, with a Z.
    let ts = event["timestamp"].as_str().unwrap();
    assert!(ts.ends_with('Z'), "{ts}");
    chrono::DateTime::parse_from_rfc3339(ts).unwrap_or_else(|e| panic!("{ts}: {e}"));
    // A UUID of version 4, RFC 4122 variant.
    let id = event["id"].as_str().unwrap();
    let parts: Vec<&str> = id.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12],
        "{id}"
    );
    assert!(
        id.bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{id}"
    );
    assert!(parts[2].starts_with('4'), "{id}");
    assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{id}");
}

/// A folder with a key, a source folder and two local destinations `a` and `b`.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Self {
        let site = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(site.path("source")).unwrap();
        std::fs::write(site.path("source/dump.sql"), "INSERT 1;\n".repeat(100)).unwrap();
        for d in ["a", "b"] {
            std::fs::create_dir_all(site.path(d)).unwrap();
        }
        let key = Key::generate().unwrap();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(site.path("backup.key"))
            .unwrap();
        std::io::Write::write_all(
            &mut file,
            format!("{}\n", key.to_base64().as_str()).as_bytes(),
        )
        .unwrap();
        site
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the configuration: both destinations, `health` as given (indented lines).
    fn configure(&self, health: &str, extra: &str) -> PathBuf {
        let d = self.dir.path().display();
        let yaml = format!(
            "destinations:\n\
             - {{type: local, name: a, config: {{path: {d}/a}}}}\n\
             - {{type: local, name: b, config: {{path: {d}/b}}}}\n\
             source_folder: {d}/source\nstate_dir: {d}/state\n\
             encryption:\n  key_file: {d}/backup.key\n{extra}\
             health:\n  space_name: space-1\n  cloud_service_name: postgres\n  \
             service_instance: {{id: si-1, name: orders-db, instance_class_name: small}}\n{health}"
        );
        let path = self.path("config.yml");
        std::fs::write(&path, yaml).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// Takes destination `name` down (its folder becomes a file, which even root cannot
    /// write into) or brings it back.
    fn destination(&self, name: &str, up: bool) {
        let path = self.path(name);
        let _ = std::fs::remove_dir_all(&path);
        let _ = std::fs::remove_file(&path);
        if up {
            std::fs::create_dir_all(&path).unwrap();
        } else {
            std::fs::write(&path, "not a folder").unwrap();
        }
    }

    async fn tasks(&self, config: &Config) -> Tasks {
        Tasks::open(&service_backup::context::state_dir(config))
            .await
            .unwrap()
    }
}

/// A daemon serving a configuration inside this process.
struct Running {
    queue: Arc<Queue>,
    shutdown: CancellationToken,
    task: JoinHandle<service_backup_core::Result<()>>,
    config: Config,
}

impl Running {
    fn start(path: PathBuf) -> Self {
        let config = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let queue = Arc::new(Queue::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(daemon::serve(
            path,
            config.clone(),
            queue.clone(),
            shutdown.clone(),
        ));
        Self {
            queue,
            shutdown,
            task,
            config,
        }
    }

    /// Runs one backup now and waits for its task to end; returns its state.
    async fn backup(&self, site: &Site) -> TaskState {
        let tasks = site.tasks(&self.config).await;
        let before = tasks.list(TaskKind::Backup).await.unwrap().len();
        let start = Instant::now();
        self.queue.request(false);
        loop {
            let list = tasks.list(TaskKind::Backup).await.unwrap();
            if let Some(t) = list.get(before)
                && matches!(t.state, TaskState::Done | TaskState::Failed)
            {
                return t.state;
            }
            assert!(start.elapsed() < LIMIT, "the backup ends within {LIMIT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

/// The statuses of the events in `events`, a run of equal ones counted once.
fn transitions(events: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in events {
        let s = e["health_status"].as_str().unwrap().to_string();
        if out.last() != Some(&s) {
            out.push(s);
        }
    }
    out
}

/// The events of the file sink.
fn file_events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_the_status_through_failure_and_recovery() {
    let broker = broker();
    let tenant = unique("t");
    let topic = format!("health-{tenant}");
    create_topic(&broker, &topic).await;
    let site = Site::new();
    let events_file = site.path("health.jsonl");
    let port = service_backup_testkit::free_port();
    let tokens = site.path("tokens");
    std::fs::write(&tokens, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = site.configure(
        &format!(
            "  kafka: {{brokers: ['{broker}']}}\n  tenant_name: {tenant}\n  interval: 1h\n  \
             file: {}\n",
            events_file.display()
        ),
        &format!(
            "{NEVER}api:\n  listen: 127.0.0.1:{port}\n  bearer_tokens_file: {}\n",
            tokens.display()
        ),
    );
    let mut consumer = Consumer::new(&broker, &topic).await;
    let daemon = Running::start(path);
    let api = format!("http://127.0.0.1:{port}");
    // A fresh agent with no backup yet is OK: none is overdue.
    let mut events = consumer.until("OK").await;
    let fresh = health(&api).await;
    assert_eq!(
        (fresh.0, &fresh.1["status"]),
        (200, &Value::from("OK")),
        "{fresh:?}"
    );
    assert_eq!(fresh.1["last_success"], Value::Null);
    assert_eq!(fresh.1["last_success_age_seconds"], Value::Null);
    assert_eq!(daemon.backup(&site).await, TaskState::Done);
    let ok = health(&api).await;
    assert_eq!((ok.0, &ok.1["status"]), (200, &Value::from("OK")), "{ok:?}");
    assert!(ok.1["last_success"].is_string(), "{ok:?}");
    assert!(
        ok.1["last_success_age_seconds"]
            .as_i64()
            .is_some_and(|a| a < 60),
        "{ok:?}"
    );
    site.destination("b", false);
    assert_eq!(daemon.backup(&site).await, TaskState::Failed);
    events.extend(consumer.until("DEGRADED").await);
    let degraded = health(&api).await;
    assert_eq!(
        (degraded.0, &degraded.1["status"]),
        (200, &Value::from("DEGRADED"))
    );
    // Attack finding 5: the unauthenticated /health once carried the backup's reason (for
    // S3 the bucket and object keys); it says how many destinations failed, not which or why.
    let public = degraded.1["description"].as_str().unwrap();
    assert!(
        public.contains("failed on 1 of 2 destinations")
            && !public.contains(&*site.dir.path().to_string_lossy()),
        "{public}"
    );
    site.destination("a", false);
    assert_eq!(daemon.backup(&site).await, TaskState::Failed);
    events.extend(consumer.until("ERROR").await);
    let error = health(&api).await;
    assert_eq!((error.0, &error.1["status"]), (503, &Value::from("ERROR")));
    assert_eq!(error.1["last_success"], ok.1["last_success"]);
    site.destination("a", true);
    site.destination("b", true);
    assert_eq!(daemon.backup(&site).await, TaskState::Done);
    events.extend(consumer.until("OK").await);
    assert_eq!(health(&api).await.0, 200);
    // The exposition after one success, two failures of b and one of a, and a recovery.
    let client = reqwest::Client::new();
    let start = Instant::now();
    let text = loop {
        let text = client
            .get(format!("{api}/metrics/prometheus"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("service_backup_health_status{") && text.contains("destination=\"b\"} 2") {
            break text;
        }
        assert!(
            start.elapsed() < LIMIT,
            "the metrics sample the recovery: {text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    daemon.stop().await;
    for want in [
        "service_backup_destination_failures_total{namespace=",
        "destination=\"a\"} 1",
        "destination=\"b\"} 2",
        "service_backup_last_success_timestamp_seconds{",
        "service_backup_last_attempt_timestamp_seconds{",
        "service_backup_last_size_bytes{",
        "service_backup_last_duration_seconds{",
    ] {
        assert!(text.contains(want), "{want} in\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("service_backup_health_status{") && l.ends_with(" 0")),
        "{text}"
    );

    assert_eq!(
        transitions(&events),
        ["OK", "DEGRADED", "ERROR", "OK"],
        "{events:#?}"
    );
    for e in &events {
        check_schema(e, &tenant);
    }
    let degraded = events
        .iter()
        .find(|e| e["health_status"] == "DEGRADED")
        .unwrap();
    let text = degraded["health_description"].as_str().unwrap();
    assert!(text.contains("failed on b but reached a"), "{text}");
    let error = events
        .iter()
        .find(|e| e["health_status"] == "ERROR")
        .unwrap();
    assert!(
        error["health_description"]
            .as_str()
            .unwrap()
            .contains("failed on every destination"),
        "{error}"
    );
    let ids: std::collections::HashSet<&str> =
        events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "each event has an id of its own");
    // The file sink got the same sequence, one JSON line per event, mode 0640.
    let lines = file_events(&events_file);
    assert_eq!(transitions(&lines), ["OK", "DEGRADED", "ERROR", "OK"]);
    for e in &lines {
        check_schema(e, &tenant);
    }
    let mode = std::fs::metadata(&events_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode & !0o640, 0, "{mode:o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_status_is_published_again_every_interval() {
    let site = Site::new();
    let events_file = site.path("health.jsonl");
    let path = site.configure(
        &format!(
            "  interval: 1s\n  file: {}\n  tenant_name: t\n",
            events_file.display()
        ),
        NEVER,
    );
    let daemon = Running::start(path);
    let start = Instant::now();
    while file_events(&events_file).len() < 4 {
        assert!(start.elapsed() < LIMIT, "4 events within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = start.elapsed();
    daemon.stop().await;
    let events = file_events(&events_file);
    assert!(
        events.iter().all(|e| e["health_status"] == "OK"),
        "{events:?}"
    );
    // Not faster than the interval: 4 events need at least 3 intervals.
    let first =
        chrono::DateTime::parse_from_rfc3339(events[0]["timestamp"].as_str().unwrap()).unwrap();
    let fourth =
        chrono::DateTime::parse_from_rfc3339(events[3]["timestamp"].as_str().unwrap()).unwrap();
    let gap = (fourth - first).num_milliseconds();
    assert!(
        (2_900..=9_000).contains(&gap),
        "4 events over {gap} ms (waited {took:?})"
    );
}

/// A tansu broker of a test's own, stopped when dropped (a failing test too).
struct Tansu(Child);

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tansu broker of this test's own, on `port`, which the test kills and restarts.
fn start_tansu(port: u16, dir: &std::path::Path) -> Tansu {
    Tansu(start_tansu_advertising(port, port, dir))
}

/// A tansu broker on `port` whose metadata sends clients to `advertised`.
fn start_tansu_advertising(port: u16, advertised: u16, dir: &std::path::Path) -> Child {
    let tansu = std::env::var("SB_TEST_TANSU").expect(
        "SB_TEST_TANSU is not set: run the tests through tests/run.sh (tests/servers/kafka.sh)",
    );
    let url = format!("tcp://127.0.0.1:{port}");
    let advertised = format!("tcp://127.0.0.1:{advertised}");
    let child = Command::new(tansu)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised,
            "--storage-engine",
            "memory://tansu/",
            "--silent",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < LIMIT, "tansu listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_run_delays_no_backup_and_events_resume() {
    let site = Site::new();
    let port = service_backup_testkit::free_port();
    let broker = format!("127.0.0.1:{port}");
    let tansu = start_tansu(port, site.dir.path());
    let tenant = unique("k");
    let topic = format!("health-{tenant}");
    create_topic(&broker, &topic).await;
    let path = site.configure(
        &format!("  kafka: {{brokers: ['{broker}']}}\n  tenant_name: {tenant}\n  interval: 1s\n"),
        NEVER,
    );
    let daemon = Running::start(path);
    let mut consumer = Consumer::new(&broker, &topic).await;
    consumer.until("OK").await;

    drop(tansu);
    let killed = chrono::Utc::now();
    // Backups go on, and quickly, while no broker answers.
    for _ in 0..2 {
        let start = Instant::now();
        assert_eq!(daemon.backup(&site).await, TaskState::Done);
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "a backup took {:?} with the broker down",
            start.elapsed()
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarted = chrono::Utc::now();
    let tansu = start_tansu(port, site.dir.path());
    // The storage was in memory: the topic is made again.
    create_topic(&broker, &topic).await;
    let mut consumer = Consumer::new(&broker, &topic).await;
    let start = Instant::now();
    let mut events = Vec::new();
    // Events made while the broker was down arrive once it is back.
    loop {
        events.extend(consumer.poll(Duration::from_secs(1)).await);
        let queued = events.iter().any(|e| {
            let t = chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap()).unwrap();
            t > killed && t < restarted
        });
        let fresh = events.iter().any(|e| {
            chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap()).unwrap()
                > restarted
        });
        if queued && fresh {
            break;
        }
        assert!(
            start.elapsed() < LIMIT,
            "events made while the broker was down, and new ones, arrive after its restart: {events:?}"
        );
    }
    for e in &events {
        check_schema(e, &tenant);
    }
    daemon.stop().await;
    drop(tansu);
}

#[test]
fn the_stdout_sink_prints_one_json_line_per_event() {
    let site = Site::new();
    let path = site.configure(
        "  stdout: true\n  interval: 1s\n  tenant_name: t-out\n",
        NEVER,
    );
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_service-backup"))
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let start = Instant::now();
    let mut events = Vec::new();
    while events.len() < 2 && start.elapsed() < LIMIT {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200))
            && let Ok(v) = serde_json::from_str::<BTreeMap<String, Value>>(&line)
            && v.get("version").is_some_and(|v| v == "1.1")
        {
            events.push(Value::Object(v.into_iter().collect()));
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    assert_eq!(events.len(), 2, "two events on stdout within {LIMIT:?}");
    for e in &events {
        check_schema(e, "t-out");
    }
}

/// A TLS client configuration that trusts `ca_pem` alone, for the test's own clients.
fn trusting(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// A TLS terminator on `port` with `cert.pem` and `key.pem` of `dir`, forwarding each
/// connection's bytes to the plain broker on `to`: tansu's own TLS is not used, so the
/// agent's TLS meets rustls on the server side.
async fn tls_terminator(port: u16, to: u16, dir: &std::path::Path) -> JoinHandle<()> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("cert.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("the TLS terminator binds {port}: {e}"));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses our certificate ends its handshake here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    })
}

/// What the daemons of this test binary log.
fn log_buffer() -> &'static std::sync::Mutex<Vec<u8>> {
    static LOGS: std::sync::OnceLock<std::sync::Mutex<Vec<u8>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(std::sync::Mutex::default)
}

/// Sends the logs of every daemon in this test binary to [`log_buffer`], from now on.
fn capture_logs() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(|| LogWriter)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other subscriber in this test binary");
    });
}

/// Appends to [`log_buffer`].
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        log_buffer()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The logged lines that name `topic`.
fn logged_about(topic: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(
        &log_buffer()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned();
    text.lines()
        .filter(|l| l.contains(topic))
        .map(str::to_string)
        .collect()
}

/// A broker of the test's own reached only through TLS: tansu listens on a plain port and
/// advertises the terminator's port, so every client connection (metadata, produce, fetch)
/// goes through TLS with the certificate of `dir`'s CA.
struct TlsBroker {
    /// Held for its drop, which stops the broker.
    _tansu: Tansu,
    terminator: JoinHandle<()>,
    address: String,
}

impl TlsBroker {
    async fn start(dir: &std::path::Path) -> Self {
        let plain = service_backup_testkit::free_port();
        let port = service_backup_testkit::free_port();
        let terminator = tls_terminator(port, plain, dir).await;
        let tansu = Tansu(start_tansu_advertising(plain, port, dir));
        Self {
            _tansu: tansu,
            terminator,
            address: format!("127.0.0.1:{port}"),
        }
    }

    fn stop(self) {
        drop(self);
    }
}

impl Drop for TlsBroker {
    /// Stops the broker even when a test fails half-way.
    fn drop(&mut self) {
        // The broker stops as its field is dropped.
        self.terminator.abort();
    }
}

/// Creates the task database before the daemon starts: a daemon and this test opening a
/// fresh one at the same moment can both try to make its tables.
async fn prepare_state(site: &Site, path: &std::path::Path) {
    let config = config::load(path).unwrap_or_else(|e| panic!("{e}"));
    drop(site.tasks(&config).await);
}

/// `health.kafka` lines for `broker` with `ca_pem` as the trusted CA.
fn kafka_tls(broker: &str, ca_pem: &str, tenant: &str) -> String {
    let pem: String = ca_pem.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        "  kafka:\n    brokers: ['{broker}']\n    tls:\n      ca_cert: |\n{pem}  \
         tenant_name: {tenant}\n  interval: 1s\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_a_broker_through_tls_with_the_configured_ca() {
    let site = Site::new();
    let certs = site.path("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let ca = common::private_ca(&certs, "kafka-test-ca");
    let broker = TlsBroker::start(&certs).await;
    let tls = trusting(&ca);
    let tenant = unique("tls");
    let topic = format!("health-{tenant}");
    create_topic_via(&broker.address, &topic, Some(&tls)).await;
    let path = site.configure(&kafka_tls(&broker.address, &ca, &tenant), NEVER);
    prepare_state(&site, &path).await;
    let daemon = Running::start(path);
    let mut consumer = Consumer::via(&broker.address, &topic, Some(&tls)).await;
    assert_eq!(daemon.backup(&site).await, TaskState::Done);
    let events = consumer.until("OK").await;
    daemon.stop().await;
    broker.stop();
    assert!(!events.is_empty());
    for e in &events {
        check_schema(e, &tenant);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_of_another_ca_sends_nothing_logs_why_and_backups_go_on() {
    capture_logs();
    let site = Site::new();
    let certs = site.path("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let ca = common::private_ca(&certs, "kafka-test-ca");
    let other = site.path("other");
    std::fs::create_dir_all(&other).unwrap();
    let other_ca = common::private_ca(&other, "some-other-ca");
    let broker = TlsBroker::start(&certs).await;
    let tls = trusting(&ca);
    let tenant = unique("badca");
    let topic = format!("health-{tenant}");
    create_topic_via(&broker.address, &topic, Some(&tls)).await;
    let path = site.configure(&kafka_tls(&broker.address, &other_ca, &tenant), NEVER);
    prepare_state(&site, &path).await;
    let daemon = Running::start(path);
    let mut consumer = Consumer::via(&broker.address, &topic, Some(&tls)).await;
    for _ in 0..2 {
        let start = Instant::now();
        assert_eq!(daemon.backup(&site).await, TaskState::Done);
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "a backup took {:?} while the broker's certificate is refused",
            start.elapsed()
        );
    }
    let start = Instant::now();
    let warning = loop {
        let lines = logged_about(&topic);
        if let Some(l) = lines
            .iter()
            .find(|l| l.contains("Health events cannot be sent to Kafka"))
        {
            break l.clone();
        }
        assert!(
            start.elapsed() < LIMIT,
            "a warning about {topic} within {LIMIT:?}: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // With an interval of 1s, several events were made by now; none got through.
    let events = consumer.poll(Duration::from_secs(3)).await;
    daemon.stop().await;
    broker.stop();
    assert_eq!(events, Vec::<Value>::new());
    // The daemon's warning names the cause, as rustls words it, e.g. "error connecting to
    // broker \"127.0.0.1:41343\": IO Error: invalid peer certificate: UnknownIssuer".
    assert!(
        warning.contains("invalid peer certificate: UnknownIssuer"),
        "the warning says why TLS failed: {warning}"
    );
    assert!(!warning.contains("PRIVATE KEY"), "{warning}");
}

/// Attack finding 2: a FIFO at `health.file` (first without a reader, then with one that
/// never reads) once cost a thread blocked in `open` per event, until the daemon hung; the
/// lines they held came out as soon as a reader appeared. Now nothing is ever written to it,
/// the refusal is logged once, and the daemon stops as it should.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_at_health_file_is_refused_without_blocking_a_thread_per_event() {
    capture_logs();
    let site = Site::new();
    let fifo = site.path(&format!("{}.fifo", unique("events-")));
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let path = site.configure(
        &format!(
            "  interval: 1s\n  file: {}\n  tenant_name: t\n",
            fifo.display()
        ),
        NEVER,
    );
    prepare_state(&site, &path).await;
    let daemon = Running::start(path);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    daemon.stop().await;
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut &reader, &mut got);
    assert!(
        got.is_empty(),
        "nothing reaches a FIFO: {}",
        String::from_utf8_lossy(&got)
    );
    let name = fifo.display().to_string();
    let refused: Vec<String> = logged_about(&name)
        .into_iter()
        .filter(|l| l.contains("cannot be written"))
        .collect();
    assert_eq!(refused.len(), 1, "logged once: {refused:?}");
}

/// Attack finding 5: a drill whose check exited non-zero put the check's last output lines
/// (`psql: connecting as admin password=...`) into the health description: the
/// unauthenticated `GET /health` and every event. Now /health says only that the drill
/// failed, and the events say how the check ended (its exit code) without its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_drill_shows_no_check_output_in_health_or_events() {
    const SECRET: &str = "DRILLDBSECRET-7f3a";
    let site = Site::new();
    let events_file = site.path("health.jsonl");
    let check = site.path("check.sh");
    std::fs::write(
        &check,
        format!("#!/bin/sh\necho \"psql: connecting as admin password={SECRET} host=10.1.2.3\"\nexit 4\n"),
    )
    .unwrap();
    std::fs::set_permissions(&check, std::fs::Permissions::from_mode(0o700)).unwrap();
    let port = service_backup_testkit::free_port();
    let d = site.dir.path().display();
    let path = site.configure(
        &format!(
            "  interval: 1s\n  file: {}\n  tenant_name: t\n",
            events_file.display()
        ),
        &format!(
            "{NEVER}api:\n  listen: 127.0.0.1:{port}\n  bearer_tokens_file: {d}/tokens\n\
             verify_schedule: '@every 1s'\nrestore_check_executable: {}\n\
             restore: {{target_folder: {d}/live}}\n",
            check.display()
        ),
    );
    std::fs::write(site.path("tokens"), format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(site.path("tokens"), std::fs::Permissions::from_mode(0o600)).unwrap();
    prepare_state(&site, &path).await;
    let daemon = Running::start(path);
    assert_eq!(daemon.backup(&site).await, TaskState::Done);
    let api = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    let public = loop {
        let (code, body) = health(&api).await;
        if body["status"] == "DEGRADED" {
            assert_eq!(code, 200);
            break body["description"].as_str().unwrap().to_string();
        }
        assert!(start.elapsed() < LIMIT, "DEGRADED within {LIMIT:?}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    while !file_events(&events_file)
        .iter()
        .any(|e| e["health_status"] == "DEGRADED")
    {
        assert!(start.elapsed() < LIMIT, "a DEGRADED event within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.stop().await;
    assert!(
        public.starts_with("The last restore drill failed."),
        "{public}"
    );
    assert!(
        !public.contains(SECRET) && !public.contains("exited"),
        "{public}"
    );
    let events = std::fs::read_to_string(&events_file).unwrap();
    assert!(!events.contains(SECRET), "{events}");
    let degraded = file_events(&events_file)
        .into_iter()
        .find(|e| e["health_status"] == "DEGRADED")
        .unwrap();
    let text = degraded["health_description"].as_str().unwrap();
    assert!(text.contains("exited with code 4"), "{text}");
}

/// Attack finding 9: against a closed port (as against a broker refusing SASL), rskafka's own
/// lines ("Failed to connect to broker", "backing off") filled the daemon's log at 50 to 70
/// per 10 s. Now the daemon's log has the sender's one line for the outage and nothing of
/// rskafka's.
#[test]
fn a_closed_broker_port_logs_one_line_not_a_flood() {
    let site = Site::new();
    let closed = service_backup_testkit::free_port();
    let path = site.configure(
        &format!("  kafka: {{brokers: ['127.0.0.1:{closed}']}}\n  tenant_name: t-closed\n  interval: 1s\n"),
        NEVER,
    );
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_service-backup"))
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let read = |stream: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    // A connection attempt gives up after 10 s; then the sender logs its line and retries.
    std::thread::sleep(Duration::from_secs(14));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    let mut lines = out.join().unwrap();
    lines.extend(err.join().unwrap());
    let theirs: Vec<&String> = lines
        .iter()
        .filter(|l| {
            l.contains("rskafka")
                || l.contains("Failed to connect to broker")
                || l.contains("backing off")
                || l.contains("Establishing new connection")
        })
        .collect();
    assert!(
        theirs.is_empty(),
        "{} lines of rskafka: {theirs:?}",
        theirs.len()
    );
    let ours = lines
        .iter()
        .filter(|l| l.contains("Health events cannot be sent to Kafka"))
        .count();
    assert_eq!(ours, 1, "{lines:#?}");
}
