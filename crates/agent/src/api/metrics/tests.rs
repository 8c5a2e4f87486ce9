//! The metrics against the a9s documentation's names and shapes, the Prometheus text
//! against a parser of the format, and the metrics routes in-process.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::parachute::{Parachute, THRESHOLD_FILE};
use super::system::{self, Usage};
use super::*;
use crate::api::request::INVALID_QUANTITY;
use crate::api::{ApiState, router};

const TOKEN: &str = "tok-Metrics-8d1e0b";
const INSTANCE: &str = "inst-m";

/// The documentation's example lines (the fixture's lines that are not comments).
fn documented_lines() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/a9s/metrics-docs.txt"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let json: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&json).unwrap()
}

/// `<path> <whole number> <whole number>`, the Graphite line of the docs.
fn graphite_shape(line: &str) -> Option<(&str, i128, i64)> {
    let mut f = line.split(' ');
    let (path, value, time) = (f.next()?, f.next()?, f.next()?);
    let path_ok = !path.is_empty()
        && path.split('.').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    (f.next().is_none() && path_ok).then_some(())?;
    Some((path, value.parse().ok()?, time.parse().ok()?))
}

/// A sample of a known machine: two CPUs, the docs' memory, and a root, ephemeral and
/// persistent disk, the persistent one past a threshold of 80.
fn known_sample(parachute: &Parachute) -> Sample {
    let mut points = Vec::new();
    system::cpu(
        Some("cpu 3 0 3 3\ncpu0 1 0 1 1\ncpu1 2 0 2 2\n"),
        100,
        &mut points,
    );
    system::load(Some("3.54248 3.152832 2.358398 1/1 1"), &mut points);
    system::memory(
        Some(
            "MemTotal: 4039964 kB\nMemFree: 147552 kB\nBuffers: 133904 kB\nCached: 556756 kB\n\
             Shmem: 21248 kB\nSwapTotal: 4039676 kB\nSwapFree: 4039676 kB\n",
        ),
        &mut points,
    );
    let disks = system::disks(
        "/dev/sda1 / ext4 rw 0 0\n/dev/sdb2 /var/vcap/data ext4 rw 0 0\n\
         /dev/sdc1 /var/vcap/store ext4 rw 0 0\n",
        |m| {
            Some(if m == "/var/vcap/store" {
                Usage {
                    total: 1000,
                    used: 900,
                    free: 100,
                }
            } else {
                Usage {
                    total: 1000,
                    used: 100,
                    free: 850,
                }
            })
        },
    );
    system::disk_points(&disks, &mut points);
    parachute.points(&disks, &mut points);
    backup_points(&[], &mut |p, v| points.push(Point::new(p, v)));
    Sample {
        time: 1_594_380_720,
        namespace: "org.space.inst.d655fe7.redis.redis-0".to_string(),
        points,
    }
}

#[test]
fn quantity_rules() {
    assert_eq!(parse_quantity(None), Ok(None));
    assert_eq!(parse_quantity(Some("3")), Ok(Some(3)));
    assert_eq!(
        parse_quantity(Some("99999999999999999999999")),
        Ok(Some(usize::MAX))
    );
    for bad in ["0", "-1", "abc", "", "1.5", "00"] {
        assert_eq!(parse_quantity(Some(bad)), Err(INVALID_QUANTITY), "{bad}");
    }
}

#[test]
fn the_ring_is_bounded_and_returns_the_latest() {
    let ring = Ring::default();
    for i in 0..RING_SAMPLES + 5 {
        ring.push(Sample {
            time: 0,
            namespace: "n".into(),
            points: vec![
                Point::new("a", i128::try_from(i).unwrap()),
                Point::new("b", 0),
            ],
        });
    }
    assert_eq!(ring.latest(None).len(), RING_SAMPLES * 2);
    assert_eq!(
        ring.latest(Some(1)),
        vec![format!("n.a {} 0", RING_SAMPLES + 4), "n.b 0 0".to_string()]
    );
    assert_eq!(ring.newest().unwrap().points[0].value, 364);
}

#[test]
fn our_lines_have_the_documented_names_order_and_shape() {
    // The docs' example lines are `keyvalue.0.<path> <value> <time>`.
    let documented = documented_lines();
    let documented_paths: Vec<String> = documented
        .iter()
        .map(|l| {
            let (path, _, _) =
                graphite_shape(l).unwrap_or_else(|| panic!("the docs' own line {l}"));
            path.strip_prefix("keyvalue.0.").unwrap().to_string()
        })
        .collect();
    let sample = known_sample(&Parachute::load(None, 80));
    let lines: Vec<String> = sample.lines().collect();
    let mut ours = Vec::new();
    for line in &lines {
        let (path, _, time) = graphite_shape(line).unwrap_or_else(|| panic!("{line}"));
        assert_eq!(time, 1_594_380_720);
        ours.push(
            path.strip_prefix("org.space.inst.d655fe7.redis.redis-0.")
                .unwrap()
                .to_string(),
        );
    }
    // Every documented path, in the documented order.
    let mut at = 0;
    for path in &documented_paths {
        let found = ours[at..]
            .iter()
            .position(|p| p == path)
            .unwrap_or_else(|| panic!("{path} missing or out of order in {ours:?}"));
        at += found + 1;
    }
    // The docs' values where our input is theirs: memory, load ×1,000,000, and the
    // `.error` flags of 0.
    for (path, value) in [
        ("system.memory.total", 4_136_923_136),
        ("system.memory.used", 3_278_594_048),
        ("system.memory.free", 151_093_248),
        ("system.memory.buffers", 137_117_696),
        ("system.memory.cached", 570_118_144),
        ("system.swap.free", 4_136_628_224),
        ("system.load.load1", 3_542_480),
        ("system.load.load5", 3_152_832),
        ("system.load.load15", 2_358_398),
        ("system.cpu0.user", 10),
        ("system.cpu1.idle", 20),
        ("system.disk.error", 0),
        ("system.disk.system.error", 0),
        // The parachute names of the docs.
        ("parachute.error", 0),
        ("parachute.activated", 1),
        ("parachute.disk.persistent.error", 0),
        ("parachute.disk.persistent.total", 1000),
        ("parachute.disk.persistent.used", 900),
        ("parachute.disk.persistent.used_percent", 90),
        ("parachute.disk.persistent.used_threshold", 80),
        ("parachute.disk.persistent.free", 100),
        ("parachute.disk.persistent.activated", 1),
        ("parachute.disk.ephemeral.activated", 0),
        ("parachute.disk.system.used_percent", 11),
    ] {
        let got = sample.points.iter().find(|p| p.path == path);
        assert_eq!(got.map(|p| p.value), Some(value), "{path}");
    }
    // No aggregate `cpu` line: the docs have one per CPU.
    assert!(!ours.iter().any(|p| p.starts_with("system.cpu.user")));
    // Every path of the two documented types has a documented form.
    for p in &ours {
        let parts: Vec<&str> = p.split('.').collect();
        let documented_form = match parts.as_slice() {
            ["system", "cpu" | "memory" | "swap" | "disk", "error"]
            | ["parachute", "error" | "activated"]
            | [
                "system",
                "memory",
                "total" | "used" | "free" | "shared" | "buffers" | "cached",
            ]
            | ["system", "swap", "total" | "used" | "free"]
            | ["system", "load", "load1" | "load5" | "load15"]
            | [
                "system",
                "disk",
                _,
                "error" | "total" | "used" | "free" | "used_percent",
            ]
            | [
                "parachute",
                "disk",
                _,
                "error" | "total" | "used" | "used_percent" | "used_threshold" | "free"
                | "activated",
            ]
            | ["backup", _] => true,
            ["system", cpu, "user" | "system" | "idle"] => cpu
                .strip_prefix("cpu")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
            _ => false,
        };
        assert!(documented_form, "{p} has no documented form");
    }
}

#[test]
fn a_live_sample_has_the_machines_system_datapoints() {
    let parachute = Parachute::load(None, 80);
    let s = sample("ns".into(), &parachute, &[]);
    for path in [
        "system.cpu.error",
        "system.cpu0.user",
        "system.load.load1",
        "system.memory.total",
        "system.swap.total",
        "system.disk.error",
        "parachute.error",
        "parachute.activated",
        "backup.consecutive_failures",
    ] {
        assert!(
            s.points.iter().any(|p| p.path == path),
            "{path} in {:?}",
            s.points
        );
    }
    let total = s
        .points
        .iter()
        .find(|p| p.path == "system.memory.total")
        .unwrap();
    assert!(total.value > 0);
}

#[test]
fn the_namespace_is_the_a9s_one_of_its_parts() {
    let parse = |metrics: &str| {
        crate::config::parse(&format!(
            "destinations:\n- type: local\n  config: {{path: /tmp/x}}\nsource_folder: /tmp/s\n\
             cron_schedule: \"0 0 1 1 *\"\ndeployment_name: redis-prod\n\
             api: {{listen: \"127.0.0.1:1\", bearer_tokens_file: t, metrics: {metrics}}}\n"
        ))
        .unwrap()
    };
    assert_eq!(
        namespace(&parse("{}"), "b02f.4682"),
        "b02f_4682.service-backup.redis-prod"
    );
    // Defaults follow the rule of configured parts: an identifier's output or a host name
    // with a quote, a space or a colon cannot break the Graphite path or the labels.
    assert_eq!(
        namespace(&parse("{}"), "a\"b c:d/e\\f"),
        "a_b_c_d_e_f.service-backup.redis-prod"
    );
    assert_eq!(
        namespace(
            &parse(
                "{org_guid: o-1, space_guid: s-2, instance_guid: i-3, \
                 internal_instance_name: d655fe7, internal_service_name: redis, node: redis-0}"
            ),
            "ignored"
        ),
        "o-1.s-2.i-3.d655fe7.redis.redis-0"
    );
    assert_eq!(
        namespace(&parse("{namespace: a.b.c, org_guid: o}"), "i"),
        "a.b.c"
    );
    let problems = crate::config::parse(
        "destinations:\n- type: local\n  config: {path: /tmp/x}\nsource_folder: /tmp/s\n\
         cron_schedule: \"0 0 1 1 *\"\n\
         api: {listen: \"127.0.0.1:1\", bearer_tokens_file: t, metrics: {node: a.b, org_guid: 'o\"x', space_guid: 'a\\b', namespace: 'a.b\"c', parachute_threshold: -1}}\n",
    )
    .unwrap_err()
    .to_string();
    for wanted in [
        "api.metrics.node must be one name of letters, digits, '_' and '-', not \"a.b\"",
        "api.metrics.org_guid must be one name of letters, digits, '_' and '-', not \"o\"x\"",
        "api.metrics.space_guid must be one name of letters, digits, '_' and '-', not \"a\\b\"",
        "api.metrics.namespace must be names of letters, digits, '_' and '-' joined by dots",
    ] {
        assert!(problems.contains(wanted), "{wanted}: {problems}");
    }
    assert!(
        problems.contains("parachute_threshold must be a whole number from 0 (off) to 100, not -1"),
        "{problems}"
    );
}

/// `text` parsed by an independent parser of the Prometheus text format, after a check of
/// every line's form: the parser skips what it does not understand.
fn parsed(text: &str) -> Vec<prometheus_parse::Sample> {
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# TYPE ") {
            let (name, kind) = comment.split_once(' ').unwrap();
            assert!(valid_name(name), "{line}");
            assert!(["gauge", "counter"].contains(&kind), "{line}");
            continue;
        }
        let (name, rest) = line.split_once('{').unwrap_or_else(|| panic!("{line}"));
        let (labels, value) = rest.rsplit_once("} ").unwrap_or_else(|| panic!("{line}"));
        assert!(valid_name(name), "{line}");
        value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
        for pair in labels.split("\",") {
            let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
            assert!(valid_name(k) && !k.contains(':'), "{line}");
            assert!(!v.contains('\n'), "{line}");
        }
    }
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).unwrap().samples
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[test]
fn the_prometheus_text_parses_and_holds_every_value() {
    let sample = known_sample(&Parachute::load(None, 80));
    let text = prometheus::render(Some(&sample));
    let samples = parsed(&text);
    assert_eq!(samples.len(), sample.points.len(), "{text}");
    let value = |metric: &str, label: Option<(&str, &str)>| {
        samples
            .iter()
            .find(|s| {
                s.metric == metric
                    && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v))
                    && s.labels.get("namespace") == Some("org.space.inst.d655fe7.redis.redis-0")
            })
            .map_or_else(
                || panic!("{metric} {label:?} in {text}"),
                |s| s.value.clone(),
            )
    };
    use prometheus_parse::Value::{Counter, Gauge};
    assert_eq!(
        value(
            "a9s_parachute_disk_used_threshold",
            Some(("disk", "persistent"))
        ),
        Gauge(80.0)
    );
    assert_eq!(
        value("a9s_system_cpu_milliseconds_total", Some(("cpu", "1"))),
        Counter(20.0)
    );
    assert_eq!(
        value("a9s_system_memory_total", None),
        Gauge(4_136_923_136.0)
    );
    assert_eq!(
        value("service_backup_consecutive_failures", None),
        Gauge(0.0)
    );
}

/// A router on a state of its own folder, and the folder.
async fn api(extra: &str) -> (tempfile::TempDir, ApiState, Router) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{TOKEN}\n")).unwrap();
    let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(&tokens, private).unwrap();
    let config = crate::config::parse(&format!(
        "cron_schedule: \"0 0 1 1 *\"\ninstance_id: {INSTANCE}\nsource_folder: {d}\n\
         state_dir: {d}/state\n\
         destinations:\n- type: local\n  config:\n    path: {d}/backups\n\
         api:\n  listen: 127.0.0.1:8443\n  bearer_tokens_file: {d}/tokens\n{extra}"
    ))
    .unwrap();
    let state = ApiState::standalone(config, INSTANCE).await.unwrap();
    let router = router(state.clone());
    (dir, state, router)
}

/// The status, the `Content-Type` and the body of a request with the token.
async fn call(
    router: &Router,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, String, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("bearer {TOKEN}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let answer = router
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = answer.status();
    let content_type = answer
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(answer.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

/// Takes a sample into the ring as the sampler does.
fn sampled(state: &ApiState) {
    let config = state.config();
    let s = sample(
        namespace(&config, &state.instance_id),
        &state.parachute,
        &[],
    );
    state.metrics.push(s);
}

#[tokio::test]
async fn the_metrics_routes_answer_graphite_json_and_prometheus_text() {
    let (_dir, state, router) = api("").await;
    sampled(&state);
    let prefix = format!("/v1/instances/{INSTANCE}");
    for path in [
        "/metrics?quantity=1",
        &format!("{prefix}/metrics?quantity=1"),
    ] {
        let (status, ct, body) = call(&router, Method::GET, path, &[], "").await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(ct.starts_with("application/json"), "{ct}");
        let lines: Vec<String> = serde_json::from_str(&body).unwrap();
        assert!(
            lines.iter().all(|l| graphite_shape(l).is_some()),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{INSTANCE}.service-backup."))
                    && l.contains(".parachute.activated ")),
            "{lines:?}"
        );
    }
    for (path, accept) in [
        ("/metrics", "text/plain"),
        (
            &format!("{prefix}/metrics") as &str,
            "text/plain;version=0.0.4",
        ),
        ("/metrics/prometheus", "*/*"),
        (&format!("{prefix}/metrics/prometheus"), "application/json"),
    ] {
        let (status, ct, body) = call(&router, Method::GET, path, &[("accept", accept)], "").await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(ct, prometheus::CONTENT_TYPE, "{path}");
        let samples = parsed(&body);
        assert!(
            samples
                .iter()
                .any(|s| s.metric == "a9s_parachute_activated"),
            "{path}: {body}"
        );
    }
    // A quantity is still checked with text.
    let (status, _, body) = call(
        &router,
        Method::GET,
        "/metrics?quantity=0",
        &[("accept", "text/plain")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn the_threshold_is_set_at_run_time_and_kept() {
    let (dir, state, router) = api("  metrics:\n    parachute_threshold: 80\n").await;
    let path = format!("/v1/instances/{INSTANCE}/metrics/parachute");
    let (status, _, body) = call(&router, Method::GET, &path, &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"max_disk_threshold": 80, "set_through_api": false})
    );
    let json_type = [("content-type", "application/json")];
    // Bad input: each a 400 that changes nothing.
    for bad in [
        r#"{"max_disk_threshold": -1}"#,
        r#"{"max_disk_threshold": 101}"#,
        r#"{"max_disk_threshold": "abc"}"#,
        r#"{"max_disk_threshold": 1.5}"#,
        r#"{"threshold": 50}"#,
        "abc",
        // A key twice: readers that keep the first or the last would disagree.
        r#"{"max_disk_threshold": 5, "max_disk_threshold": 90}"#,
    ] {
        let (status, _, body) = call(&router, Method::PUT, &path, &json_type, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], "invalidThreshold", "{bad}: {body}");
        assert!(
            body["description"]
                .as_str()
                .unwrap()
                .contains("from 0 (off) to 100"),
            "{body}"
        );
        assert_eq!(state.parachute.threshold(), 80, "{bad}");
        assert!(
            !dir.path().join("state").join(THRESHOLD_FILE).exists(),
            "{bad}"
        );
    }
    for bad in [
        "max_disk_threshold=-1",
        "max_disk_threshold=101",
        "max_disk_threshold=abc",
        "max_disk_threshold=5&max_disk_threshold=90",
    ] {
        let form = [("content-type", "application/x-www-form-urlencoded")];
        let (status, _, body) = call(&router, Method::POST, &path, &form, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let utf16 = [("content-type", "application/json; charset=utf-16")];
    let (status, _, body) = call(
        &router,
        Method::PUT,
        &path,
        &utf16,
        r#"{"max_disk_threshold": 5}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "another charset: {body}");
    assert_eq!(state.parachute.threshold(), 80, "nothing was set");
    let (status, _, body) = call(
        &router,
        Method::PUT,
        &path,
        &json_type,
        r#"{"max_disk_threshold": 1}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"max_disk_threshold": 1, "set_through_api": true})
    );
    // The sample takes it at once: any disk in use is past 1 %.
    sampled(&state);
    let newest = state.metrics.newest().unwrap();
    let thresholds: Vec<&Point> = newest
        .points
        .iter()
        .filter(|p| p.path.ends_with(".used_threshold"))
        .collect();
    assert!(thresholds.iter().all(|p| p.value == 1), "{thresholds:?}");
    // A form at the root works too, and a restart keeps the value.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let (status, _, body) = call(
        &router,
        Method::POST,
        "/metrics/parachute",
        &form,
        "max_disk_threshold=95",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let again = Parachute::load(Some(&dir.path().join("state")), 80);
    assert_eq!(again.threshold(), 95);
    // Another instance's path changes nothing.
    let (status, _, _) = call(
        &router,
        Method::PUT,
        "/v1/instances/other/metrics/parachute",
        &json_type,
        r#"{"max_disk_threshold": 5}"#,
    )
    .await;
    // 404 today; 412 once every route answers a mismatch as the dashboard docs say.
    assert!(
        [StatusCode::NOT_FOUND, StatusCode::PRECONDITION_FAILED].contains(&status),
        "{status}"
    );
    assert_eq!(state.parachute.threshold(), 95);
}

#[tokio::test]
async fn the_threshold_needs_a_token() {
    let (_dir, state, router) = api("").await;
    let req = Request::builder()
        .method(Method::PUT)
        .uri("/metrics/parachute")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"max_disk_threshold": 5}"#))
        .unwrap();
    let answer = router.oneshot(req).await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(state.parachute.threshold(), DEFAULT_PARACHUTE_THRESHOLD);
}

#[test]
fn freshness_values_follow_a_success_and_a_failure() {
    use crate::tasks::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ok = store.create(TaskKind::Backup, "schedule").unwrap();
    store.start(ok, "g1").unwrap();
    store.finish(ok, Some("b1"), 100, 40, 2.4).unwrap();
    store
        .record_destinations(ok, &["a".into(), "b.x".into()], &[])
        .unwrap();
    let points_of = |tasks: &[Task]| {
        let mut points = Vec::new();
        backup_points(tasks, &mut |p, v| points.push(Point::new(p, v)));
        points
    };
    let value =
        |points: &[Point], path: &str| points.iter().find(|p| p.path == path).map(|p| p.value);
    let after_success = points_of(&store.list(TaskKind::Backup).unwrap());
    let success = store
        .get(ok)
        .unwrap()
        .unwrap()
        .finished_at
        .unwrap()
        .timestamp();
    assert_eq!(
        value(&after_success, "backup.last_success_timestamp_seconds"),
        Some(i128::from(success))
    );
    assert_eq!(
        value(&after_success, "backup.last_attempt_timestamp_seconds"),
        Some(i128::from(success))
    );
    assert_eq!(value(&after_success, "backup.last_size_bytes"), Some(40));
    assert_eq!(
        value(&after_success, "backup.last_duration_seconds"),
        Some(2)
    );
    assert_eq!(
        value(&after_success, "backup.destination_failures_total.b_x"),
        Some(0)
    );

    let failed = store.create(TaskKind::Backup, "schedule").unwrap();
    store.start(failed, "g2").unwrap();
    store.fail(failed, Some("b2"), "b.x: refused", 1.0).unwrap();
    store
        .record_destinations(failed, &["a".into()], &["b.x".into()])
        .unwrap();
    let after_failure = points_of(&store.list(TaskKind::Backup).unwrap());
    let attempt = store
        .get(failed)
        .unwrap()
        .unwrap()
        .finished_at
        .unwrap()
        .timestamp();
    assert_eq!(
        value(&after_failure, "backup.last_success_timestamp_seconds"),
        Some(i128::from(success))
    );
    assert_eq!(
        value(&after_failure, "backup.last_attempt_timestamp_seconds"),
        Some(i128::from(attempt))
    );
    assert_eq!(
        value(&after_failure, "backup.destination_failures_total.a"),
        Some(0)
    );
    assert_eq!(
        value(&after_failure, "backup.destination_failures_total.b_x"),
        Some(1)
    );
    assert_eq!(
        value(&after_failure, "backup.consecutive_failures"),
        Some(1)
    );

    let mut points = after_failure;
    points.push(Point::new("backup.health_status", 2));
    let text = super::prometheus::render(Some(&Sample {
        time: 1,
        namespace: "ns".into(),
        points,
    }));
    for line in [
        "# TYPE service_backup_destination_failures_total counter",
        "service_backup_destination_failures_total{namespace=\"ns\",destination=\"b_x\"} 1",
        "service_backup_destination_failures_total{namespace=\"ns\",destination=\"a\"} 0",
        &format!("service_backup_last_success_timestamp_seconds{{namespace=\"ns\"}} {success}"),
        &format!("service_backup_last_attempt_timestamp_seconds{{namespace=\"ns\"}} {attempt}"),
        "service_backup_health_status{namespace=\"ns\"} 2",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}
