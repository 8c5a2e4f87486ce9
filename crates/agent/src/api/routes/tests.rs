//! The router in-process: each request goes through [`router`] with `oneshot` on a state of
//! a temporary folder (a local destination, its own task database, an idle queue with no
//! worker), so that no socket or process is involved. What needs one (TLS, slow clients,
//! connection caps, logs, signals, a streamed download) is in `tests/api.rs`.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::router;
use crate::api::ApiState;
use crate::api::metrics::sample_forever;

const TOKEN: &str = "tok-Secret-3f9a1c7e5b";
const INSTANCE: &str = "inst-1";
const IN_PROGRESS: &str = "Backup currently in progress, exiting. Another backup will not be able to start until this is completed.";

/// A router on a state of its own folder.
struct Api {
    dir: tempfile::TempDir,
    state: ApiState,
    router: Router,
}

impl Api {
    /// The state of a configuration with a local destination, a restore target, the API's
    /// tokens, and `extra` lines (under `api:` when indented).
    async fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, format!("other-token\n{TOKEN}\n")).unwrap();
        let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        std::fs::set_permissions(&tokens, private).unwrap();
        std::fs::create_dir(dir.path().join("source")).unwrap();
        let config = crate::config::parse(&format!(
            "cron_schedule: \"0 0 1 1 *\"\ninstance_id: {INSTANCE}\nsource_folder: {d}/source\n\
             state_dir: {d}/state\n\
             destinations:\n- type: local\n  name: disk\n  config:\n    path: {d}/backups\n\
             restore:\n  target_folder: {d}/restored\n\
             api:\n  listen: 127.0.0.1:8443\n  bearer_tokens_file: {d}/tokens\n{extra}"
        ))
        .unwrap();
        let state = ApiState::standalone(config, INSTANCE).await.unwrap();
        Self {
            router: router(state.clone()),
            dir,
            state,
        }
    }

    /// The status and the body as JSON (or as a JSON string when it is not JSON).
    async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let answer = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = answer.status();
        let bytes = axum::body::to_bytes(answer.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let auth = format!("Bearer {TOKEN}");
        self.call(Method::GET, path, Some(&auth), None, Vec::new())
            .await
    }

    async fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let auth = format!("Bearer {TOKEN}");
        self.call(Method::POST, path, Some(&auth), Some(content_type), body)
            .await
    }

    /// `POST /backups/restore` of backup task `id` of this instance, as JSON.
    async fn restore(&self, id: i64) -> (StatusCode, Value) {
        let body = json!({"instance_id": INSTANCE, "backup_id": id});
        self.post(
            "/backups/restore",
            "application/json",
            serde_json::to_vec(&body).unwrap(),
        )
        .await
    }

    /// `GET /metrics?quantity=1`, answered 200.
    async fn latest_metrics(&self) -> Value {
        let (status, one) = self.get("/metrics?quantity=1").await;
        assert_eq!(status, StatusCode::OK, "{one}");
        one
    }

    /// `POST /backups`: the id of the task it made.
    async fn create_backup(&self) -> i64 {
        let (status, body) = self
            .post("/backups", "application/json", b"{}".to_vec())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert!(body["message"].is_string(), "{body}");
        body["id"].as_i64().unwrap()
    }

    /// A backup task of the API that ran: done as `name`, or failed (`None`).
    async fn ran(&self, name: Option<&str>) -> i64 {
        let tasks = &self.state.ctx.tasks;
        let id = tasks
            .create(crate::tasks::store::TaskKind::Backup, "api")
            .await
            .unwrap();
        tasks.start(id, format!("guid-{id}")).await.unwrap();
        match name {
            Some(name) => tasks
                .finish(id, Some(name.to_string()), 10, 20, 1.0)
                .await
                .unwrap(),
            None => tasks
                .fail(id, None, "dump failed".into(), 1.0)
                .await
                .unwrap(),
        }
        id
    }

    /// `GET /metrics` answers once the sampler took its first sample.
    async fn sampled(&self) {
        tokio::spawn(sample_forever(self.state.clone()));
        for _ in 0..200 {
            if !self.state.metrics.latest(Some(1)).is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("no metrics sample in 5 s");
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        // Stops the sampler.
        self.state.ctx.cancel.cancel();
    }
}

async fn status_with(api: &Api, auth: Option<&str>) -> (StatusCode, Value) {
    api.call(Method::GET, "/backups", auth, None, Vec::new())
        .await
}

/// The Graphite lines of a metrics answer.
fn metric_lines(answer: &Value) -> Vec<&str> {
    answer
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn missing_wrong_and_malformed_tokens_get_401() {
    let api = Api::new("").await;
    let bad: [Option<&str>; 7] = [
        None,
        Some("Bearer wrong-token"),
        Some("Basic dG9rOnRvaw=="),
        Some("Bearer"),
        Some("Bearer    "),
        Some(TOKEN),
        Some("Bearer tok-Secret-3f9a1c7e5"),
    ];
    for auth in bad {
        let (status, body) = status_with(&api, auth).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(body["error"], "unauthorized", "{auth:?}: {body}");
        assert!(body["description"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(!body.to_string().contains(TOKEN), "{body}");
    }
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let (status, _) = status_with(&api, Some(&format!("{scheme} {TOKEN}"))).await;
        assert_eq!(status, StatusCode::OK, "{scheme}");
    }
    // Health needs no token and says nothing.
    let (status, body) = api
        .call(Method::GET, "/health", None, None, Vec::new())
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!("ok")));
}

#[tokio::test]
async fn unknown_paths_and_methods_get_401_without_a_token_and_404_or_405_with_one() {
    let api = Api::new("").await;
    for (method, path) in [
        (Method::GET, "/nothing-here"),
        (Method::DELETE, "/backups"),
        (Method::GET, "/backups/restore"),
        (Method::POST, "/metrics"),
    ] {
        let (status, body) = api.call(method.clone(), path, None, None, Vec::new()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
    }
    let (status, body) = api.get("/nothing-here").await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::NOT_FOUND, &json!("notFound"))
    );
    let auth = format!("Bearer {TOKEN}");
    for (method, path) in [
        (Method::DELETE, "/backups"),
        (Method::GET, "/backups/restore"),
        (Method::POST, "/metrics"),
        (Method::POST, "/health"),
    ] {
        let (status, body) = api
            .call(method.clone(), path, Some(&auth), None, Vec::new())
            .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(body["error"], "methodNotAllowed", "{body}");
    }
}

#[tokio::test]
async fn wrong_instance_ids_and_unknown_backup_ids() {
    let api = Api::new("").await;
    for path in [
        "/service-instances/other/backups",
        "/v1/instances/other/metrics",
        "/service-instances/other/backups/1/download",
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let (status, _) = api
        .get(&format!("/service-instances/{INSTANCE}/backups"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.get(&format!("/v1/instances/{INSTANCE}/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    for id in ["999", "abc", "-1"] {
        let (status, body) = api.get(&format!("/backups/{id}/download")).await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{id}");
        assert!(body["msg"].as_str().unwrap().contains(id), "{body}");
    }
    for form in [
        format!("instance_id={INSTANCE}&backup_id=999"),
        "instance_id=other&backup_id=1".to_string(),
        format!("instance_id={INSTANCE}"),
        "backup_id=1".to_string(),
    ] {
        let (status, body) = api
            .post(
                "/backups/restore",
                "application/x-www-form-urlencoded",
                form.clone().into_bytes(),
            )
            .await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{form}: {body}");
        assert!(body["msg"].is_string(), "{body}");
    }
    let (_, list) = api.get("/backups").await;
    assert_eq!(
        list["restores"],
        Value::Array(vec![]),
        "no restore was recorded"
    );
}

#[tokio::test]
async fn restores_of_failed_deleted_and_unfinished_backups_are_refused() {
    let api = Api::new("").await;
    let failed = api.ran(None).await;
    let done = api.ran(Some("20260101T000000Z-vm-deleted")).await;
    // Marks the second one deleted, as removing its archive does.
    let marked = api
        .state
        .ctx
        .tasks
        .mark_deleted("20260101T000000Z-vm-deleted".into(), "retention".into())
        .await
        .unwrap();
    assert!(marked);
    let queued = api.create_backup().await;
    for (id, word) in [(failed, "failed"), (done, "deleted"), (queued, "queued")] {
        let (status, body) = api.restore(id).await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
        assert!(body["msg"].as_str().unwrap().contains(word), "{body}");
        let (status, _) = api.get(&format!("/backups/{id}/download")).await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    }
    assert!(
        !api.dir.path().join("restored").exists(),
        "nothing was restored"
    );
}

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let api = Api::new("").await;
    api.create_backup().await;
    let cases: [(&str, Vec<u8>, StatusCode, &str); 6] = [
        (
            "application/json",
            b"{\"instance_id\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalidBody",
        ),
        (
            "application/json",
            b"[1, 2]".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalidBody",
        ),
        (
            "application/json",
            b"\xff\xfe".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalidBody",
        ),
        (
            "application/x-www-form-urlencoded",
            b"instance_id=\xff\xfe&backup_id=1".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalidBody",
        ),
        (
            "application/x-www-form-urlencoded",
            vec![b'a'; 100 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payloadTooLarge",
        ),
        (
            "application/json",
            vec![b' '; 100 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payloadTooLarge",
        ),
    ];
    for (ct, body, want, word) in cases {
        let (status, answer) = api.post("/backups/restore", ct, body).await;
        assert_eq!(status, want, "{ct}: {answer}");
        assert_eq!(answer["error"], word, "{answer}");
    }
    let (status, answer) = api
        .post("/backups", "application/json", vec![b'x'; 100 * 1024])
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payloadTooLarge"))
    );
    let (_, list) = api.get("/backups").await;
    assert_eq!(
        list["restores"],
        Value::Array(vec![]),
        "no restore was recorded"
    );
    assert_eq!(
        list["backups"].as_array().unwrap().len(),
        1,
        "no backup was queued"
    );
    assert!(!api.dir.path().join("restored").exists());
}

#[tokio::test]
async fn a_post_makes_a_queued_task_and_later_posts_join_it() {
    let api = Api::new("").await;
    let (status, body) = api.post("/backups", "application/json", Vec::new()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["message"], "backup started");
    let id = body["id"].as_i64().unwrap();
    // No worker takes it: the next requests coalesce with the waiting one.
    for _ in 0..2 {
        let (status, body) = api.post("/backups", "application/json", Vec::new()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(
            body,
            json!({"id": id, "message": "a backup is already queued; this request is part of it"})
        );
    }
    let (status, list) = api.get("/backups").await;
    assert_eq!(status, StatusCode::OK);
    let backups = list["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 1, "{list}");
    assert_eq!(backups[0]["id"], id);
    let task = &backups[0]["backup_agent_task"];
    assert_eq!(task["status"], "queued", "{task}");
    assert_eq!(task["trigger"], "api", "{task}");
}

#[tokio::test]
async fn with_exit_if_in_progress_a_post_while_one_waits_gets_409() {
    let api = Api::new("exit_if_in_progress: true\n").await;
    let id = api.create_backup().await;
    for _ in 0..2 {
        let (status, body) = api.post("/backups", "application/json", Vec::new()).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["description"], IN_PROGRESS);
        assert_eq!(body["error"], "backupInProgress");
    }
    let (_, list) = api.get("/backups").await;
    assert_eq!(list["backups"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["backups"][0]["id"], id);
}

#[tokio::test]
async fn the_list_has_backups_and_restores_newest_first_with_their_tasks() {
    let api = Api::new("").await;
    let (status, empty) = api.get("/backups").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        empty,
        json!({"instance_id": INSTANCE, "backups": [], "restores": []})
    );
    let failed = api.ran(None).await;
    let name = "20260102T030405Z-vm-0123abcd";
    let done = api.ran(Some(name)).await;
    let (status, body) = api.restore(done).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let restore_id = body["restore_id"].as_i64().unwrap();
    let (status, list) = api
        .get(&format!("/service-instances/{INSTANCE}/backups"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["instance_id"], INSTANCE);
    let backups = list["backups"].as_array().unwrap();
    let ids: Vec<&Value> = backups.iter().map(|b| &b["id"]).collect();
    assert_eq!(ids, [&json!(done), &json!(failed)], "newest first: {list}");
    let task = &backups[0]["backup_agent_task"];
    assert_eq!(task["status"], "done");
    assert_eq!(task["backup_name"], name);
    assert_eq!(task["size_in_bytes"], 10);
    assert_eq!(task["stored_bytes"], 20);
    assert_eq!(task["trigger"], "api");
    for field in ["created_at", "updated_at"] {
        let t = task[field].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(t).unwrap_or_else(|e| panic!("{field} {t}: {e}"));
    }
    let failed_task = &backups[1]["backup_agent_task"];
    assert_eq!(failed_task["status"], "failed");
    assert_eq!(failed_task["reason"], "dump failed");
    let restores = list["restores"].as_array().unwrap();
    assert_eq!(restores.len(), 1, "{list}");
    assert_eq!(restores[0]["id"], restore_id);
    assert_eq!(restores[0]["backup_id"], done, "{list}");
    let restore_task = &restores[0]["backup_agent_tasks"][0];
    assert_eq!(restore_task["backup_name"], name, "{list}");
    assert_eq!(restore_task["trigger"], "api", "{list}");
}

#[tokio::test]
async fn a_done_backup_in_no_destination_is_a_412_to_download() {
    let api = Api::new("").await;
    let id = api.ran(Some("20260102T030405Z-vm-gone")).await;
    let (status, body) = api
        .get(&format!(
            "/service-instances/{INSTANCE}/backups/{id}/download"
        ))
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(
        body,
        json!({"msg": "backup 20260102T030405Z-vm-gone is in no destination"})
    );
}

#[tokio::test]
async fn a_restore_into_the_agents_own_files_is_a_412() {
    let api = Api::new("").await;
    // The restore target is the state_dir.
    let mut config = api.state.config();
    config.restore.target_folder = Some(api.dir.path().join("state"));
    *api.state.config.write().unwrap() = config;
    let id = api.ran(Some("20260102T030405Z-vm-own")).await;
    let (status, body) = api
        .post(
            "/backups/restore",
            "application/x-www-form-urlencoded",
            format!("instance_id={INSTANCE}&backup_id={id}").into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert!(
        body["msg"].as_str().unwrap().contains("state_dir"),
        "{body}"
    );
    let (_, list) = api.get("/backups").await;
    assert_eq!(list["restores"], json!([]), "no restore was recorded");
}

#[tokio::test]
async fn metrics_use_the_configured_namespace_and_threshold() {
    let api = Api::new(
        "  metrics:\n    namespace: org.space.inst.redis-0.redis.node-0\n    parachute_threshold: 1\n",
    )
    .await;
    api.sampled().await;
    let one = api.latest_metrics().await;
    let lines = metric_lines(&one);
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            line.starts_with("org.space.inst.redis-0.redis.node-0."),
            "{line}"
        );
    }
    // Any disk in use is past a threshold of 1 %.
    let disk_lines: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains(".parachute.disk.") && l.contains(".used_threshold "))
        .collect();
    for line in &disk_lines {
        assert_eq!(line.split(' ').nth(1), Some("1"), "{line}");
    }
    let activated = lines
        .iter()
        .find(|l| l.starts_with("org.space.inst.redis-0.redis.node-0.parachute.activated "))
        .unwrap_or_else(|| panic!("no parachute line in {lines:?}"));
    let expected = if disk_lines.is_empty() { "0" } else { "1" };
    assert_eq!(activated.split(' ').nth(1), Some(expected), "{activated}");
}

#[tokio::test]
async fn metrics_and_quantity() {
    let api = Api::new("").await;
    api.sampled().await;
    for q in ["0", "-1", "abc", "", "1.5"] {
        let (status, body) = api.get(&format!("/metrics?quantity={q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(body["error"], "invalidQuantity", "{q}: {body}");
    }
    let one = api.latest_metrics().await;
    let lines = metric_lines(&one);
    for path in [
        "system.load.load1",
        "system.memory.total",
        "system.swap.total",
        "system.cpu.error",
        "system.disk.error",
        "parachute.activated",
        "backup.consecutive_failures",
    ] {
        let line = lines
            .iter()
            .find(|l| l.split(' ').next().unwrap().ends_with(path))
            .unwrap_or_else(|| panic!("{path} missing in {lines:?}"));
        assert!(
            line.starts_with(&format!("{INSTANCE}.service-backup.")),
            "{line}"
        );
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 3, "{line}");
        parts[1].parse::<i64>().unwrap();
        parts[2].parse::<i64>().unwrap();
    }
    for q in ["99999999999999999999999999", "1000000"] {
        let (status, all) = api.get(&format!("/metrics?quantity={q}")).await;
        assert_eq!(status, StatusCode::OK, "{q}");
        assert!(all.as_array().unwrap().len() >= lines.len());
    }
    let (status, _) = api.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
}
