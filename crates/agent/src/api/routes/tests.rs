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
use crate::tasks::store::TaskKind;

const TOKEN: &str = "tok-Secret-3f9a1c7e5b";
const INSTANCE: &str = "inst-1";
const IN_PROGRESS: &str = "Backup currently in progress, exiting. Another backup will not be able to start until this is completed.";

/// A router on a state of its own folder.
struct Api {
    dir: tempfile::TempDir,
    state: ApiState,
    router: Router,
}

/// `api:` lines that keep the disks of the machine running the tests out of the health
/// status (a threshold of 100 %: only a full disk counts), for tests that expect OK.
const HOST_DISKS_IGNORED: &str = "  metrics:\n    parachute_threshold: 100\n";

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
        let (status, _, body) = self
            .call_with_headers(method, path, auth, content_type, body)
            .await;
        (status, body)
    }

    /// [`Api::call`] with the answer's headers.
    async fn call_with_headers(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
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
        let headers = answer.headers().clone();
        let bytes = axum::body::to_bytes(answer.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (
            status,
            headers,
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
    let api = Api::new(HOST_DISKS_IGNORED).await;
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
    // Health needs no token; a fresh agent is OK.
    let (status, body) = api
        .call(Method::GET, "/health", None, None, Vec::new())
        .await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("OK")));
}

#[tokio::test]
async fn health_answers_the_status_and_the_age_of_the_last_success() {
    let api = Api::new(HOST_DISKS_IGNORED).await;
    let tasks = &api.state.ctx.tasks;
    let (status, body) = api
        .call(Method::GET, "/health", None, None, Vec::new())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({
            "status": "OK",
            "description": "No backup has run yet; none is overdue.",
            "last_success": null,
            "last_success_age_seconds": null,
        })
    );
    // A backup that failed on the only destination: ERROR, 503 with the same body.
    let id = tasks.create(TaskKind::Backup, "schedule").await.unwrap();
    tasks.start(id, "g1".into()).await.unwrap();
    tasks
        .fail(id, None, "disk: no space left".into(), 1.0)
        .await
        .unwrap();
    tasks
        .record_destinations(id, Vec::new(), vec!["disk".into()])
        .await
        .unwrap();
    let (status, body) = api
        .call(Method::GET, "/health", None, None, Vec::new())
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "ERROR");
    let text = body["description"].as_str().unwrap();
    // Not the reason (attack finding 5: it may name buckets and object keys): only where
    // to find it.
    assert!(
        text.contains("failed on every destination. The reason is in the agent's logs")
            && !text.contains("no space left"),
        "{text}"
    );
    assert_eq!(body["last_success"], json!(null));
    // A success afterwards: OK, with its time and age.
    let id = tasks.create(TaskKind::Backup, "schedule").await.unwrap();
    tasks.start(id, "g2".into()).await.unwrap();
    tasks
        .finish(id, Some("b2".into()), 10, 5, 1.0)
        .await
        .unwrap();
    let (status, body) = api
        .call(Method::GET, "/health", None, None, Vec::new())
        .await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("OK")));
    let at = chrono::DateTime::parse_from_rfc3339(body["last_success"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now() - at.with_timezone(&chrono::Utc)).num_seconds() < 60);
    assert!(
        body["last_success_age_seconds"]
            .as_i64()
            .is_some_and(|a| (0..60).contains(&a)),
        "{body}"
    );
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
    // Another instance is a 412 `{"msg"}` on every route, as the dashboard API answers
    // (it was 404 `instanceNotFound` before).
    for path in [
        "/service-instances/other/backups",
        "/v1/instances/other/metrics",
        "/service-instances/other/backups/1/download",
        "/service-instances/other/backups/1",
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{path}: {body}");
        assert_eq!(
            body,
            json!({"msg": "instance other does not exist here"}),
            "{path}"
        );
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

/// An agent with recipients only (issue 25) refuses the API's restore, saying why, before
/// it records a restore or touches the target.
#[tokio::test]
async fn a_write_only_agent_refuses_restores_with_a_412() {
    let api = Api::new(
        "encryption: {recipients: [sbrec1vawa2a8dw7ynzzea9emgrumepdrxcaemz5slanek2au4sdc755hsyhl97j]}\n",
    )
    .await;
    let done = api.ran(Some("20260101T000000Z-vm-0000abcd")).await;
    let (status, body) = api.restore(done).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    let msg = body["msg"].as_str().unwrap();
    assert!(
        msg.contains("this VM holds no key that opens these backups")
            && msg.contains("restores need --identity FILE"),
        "{body}"
    );
    let (_, list) = api.get("/backups").await;
    assert_eq!(list["restores"], json!([]), "no restore was recorded");
    assert!(!api.dir.path().join("restored").exists());
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
    let refreshed = empty["catalog_refreshed_at"].as_str().unwrap_or_default();
    chrono::DateTime::parse_from_rfc3339(refreshed).unwrap_or_else(|e| panic!("{empty}: {e}"));
    assert_eq!(
        empty,
        json!({"instance_id": INSTANCE, "backups": [], "restores": [], "catalog_refreshed_at": refreshed})
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

/// Writes a complete backup of this instance, started on 2 January 2026 at `hour`, into
/// the local destination as an agent sharing it would; returns its name.
fn stored_backup(api: &Api, hour: u32) -> String {
    use chrono::TimeZone as _;
    let at = chrono::Utc
        .with_ymd_and_hms(2026, 1, 2, hour, 0, 0)
        .unwrap();
    let manifest = service_backup_core::manifest::planted::manifest(INSTANCE, at);
    let name = manifest.name.clone();
    let day = api.dir.path().join("backups/2026/01/02");
    std::fs::create_dir_all(&day).unwrap();
    std::fs::write(day.join(format!("{name}.tar.gz")), [0x1f, 0x8b, 0]).unwrap();
    std::fs::write(day.join(format!("{name}.json")), manifest.to_json()).unwrap();
    name
}

fn names_listed(list: &Value) -> Vec<String> {
    list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| {
            b["backup_agent_task"]["backup_name"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

#[tokio::test]
async fn the_list_answers_from_the_catalog_and_says_how_fresh_it_is() {
    let api = Api::new("").await;
    let first = stored_backup(&api, 3);
    let (status, list) = api.get("/backups").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(names_listed(&list), std::slice::from_ref(&first), "{list}");
    let refreshed = list["catalog_refreshed_at"].as_str().unwrap().to_string();

    // A backup written since is not listed until the next refresh: the answer came from
    // the catalog, not from a listing of the store, and says when that was made.
    let second = stored_backup(&api, 4);
    let (_, list) = api.get("/backups").await;
    assert_eq!(names_listed(&list), std::slice::from_ref(&first), "{list}");
    assert_eq!(list["catalog_refreshed_at"], refreshed.as_str());

    // The store gone (its folder replaced by a file): the list still answers.
    let backups = api.dir.path().join("backups");
    std::fs::rename(&backups, api.dir.path().join("moved")).unwrap();
    std::fs::write(&backups, b"not a folder").unwrap();
    let (status, list) = api.get("/backups").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(names_listed(&list), std::slice::from_ref(&first), "{list}");
    let (status, headers, v1) = api
        .call_with_headers(
            Method::GET,
            &format!("/v1/instances/{INSTANCE}/backups"),
            Some(&format!("Bearer {TOKEN}")),
            None,
            Vec::new(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v1}");
    assert_eq!(v1[0]["backup_id"], first.as_str(), "{v1}");
    assert_eq!(headers["x-catalog-refreshed-at"], refreshed.as_str());

    // Back, and the catalog older than the full refresh's period: the next list lists the
    // store whole (the new backup is in an old day folder, which only a full listing sees).
    std::fs::remove_file(&backups).unwrap();
    std::fs::rename(api.dir.path().join("moved"), &backups).unwrap();
    let tasks = api.state.ctx.tasks.clone();
    tasks
        .catalog(|s| s.catalog_age_for_tests(crate::catalog::FULL_REFRESH_EVERY))
        .await
        .unwrap();
    let (_, list) = api.get("/backups").await;
    assert_eq!(names_listed(&list), [second, first], "{list}");
    assert_ne!(list["catalog_refreshed_at"], refreshed.as_str());
}

#[tokio::test]
async fn the_routes_that_read_the_catalog_keep_it_in_use_and_the_others_do_not() {
    let api = Api::new(HOST_DISKS_IGNORED).await;
    let id = api.ran(Some("20260102T030405Z-vm-gone")).await;
    let tasks = api.state.ctx.tasks.clone();
    let one = format!("/backups/{id}");
    for path in ["/metrics?quantity=1", one.as_str(), "/health"] {
        api.get(path).await;
    }
    assert_eq!(tasks.catalog_read_at(), None);
    let mut last = None;
    let mut noted = |what: &str| {
        let at = tasks.catalog_read_at();
        assert!(
            at.is_some() && at > last,
            "{what} did not note a read of the catalog"
        );
        last = at;
    };
    api.get("/backups").await;
    noted("GET /backups");
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    api.get(&format!("/service-instances/{INSTANCE}/backups"))
        .await;
    noted("GET /service-instances/…/backups");
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    api.get(&format!("/v1/instances/{INSTANCE}/backups")).await;
    noted("the V1 list");
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    api.get(&format!("/backups/{id}/download")).await;
    noted("a download");
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    api.restore(id).await;
    noted("a restore");
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

#[tokio::test]
async fn repeated_slashes_name_the_same_route() {
    let api = Api::new("").await;
    // `"${dashboard_url}/backups"` with the dashboard URL's trailing slash, and the like.
    for path in [
        format!("/service-instances/{INSTANCE}//backups"),
        format!("//service-instances//{INSTANCE}///backups"),
        "//backups".to_string(),
    ] {
        let (status, body) = api.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["instance_id"], INSTANCE, "{path}");
    }
    let (status, body) = api
        .get(&format!("/v1/instances/{INSTANCE}//metrics?quantity=1"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Collapsed before the instance check: another instance stays another instance.
    for path in [
        "/service-instances//other//backups",
        "//v1//instances//other//metrics",
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{path}: {body}");
    }
}

/// Paths that try to reach another instance's data or to step around the instance check:
/// each with the status it gets (with a valid token); none reaches a handler.
#[tokio::test]
async fn path_tricks_never_pass_the_instance_check() {
    let api = Api::new("").await;
    let done = api.ran(Some("20260102T030405Z-vm-tricks")).await;
    let rows: &[(&str, StatusCode, &str)] = &[
        (
            "/service-instances/other/backups",
            StatusCode::PRECONDITION_FAILED,
            "does not exist here",
        ),
        (
            "/service-instances/inst-1/../other/backups",
            StatusCode::BAD_REQUEST,
            "`..` segment",
        ),
        (
            "/service-instances/other/../inst-1/backups",
            StatusCode::BAD_REQUEST,
            "`..` segment",
        ),
        (
            "/service-instances/./inst-1/backups",
            StatusCode::BAD_REQUEST,
            "`..` segment",
        ),
        (
            "/service-instances/inst-1/%2E%2E/other/backups",
            StatusCode::BAD_REQUEST,
            "`..` segment",
        ),
        (
            "/service-instances/inst-1/.%2e/other/backups",
            StatusCode::BAD_REQUEST,
            "`..` segment",
        ),
        (
            "/service-instances/inst-1/%2e./other/backups",
            StatusCode::BAD_REQUEST,
            "`..` segment",
        ),
        (
            "/service-instances/inst-1%2F..%2Fother/backups",
            StatusCode::BAD_REQUEST,
            "encoded slash",
        ),
        (
            "/service-instances/inst-1%2f..%2fother/backups",
            StatusCode::BAD_REQUEST,
            "encoded slash",
        ),
        (
            "/service-instances/other%2Finst-1/backups",
            StatusCode::BAD_REQUEST,
            "encoded slash",
        ),
        (
            "/service-instances/inst-1%5C..%5Cother/backups",
            StatusCode::BAD_REQUEST,
            "backslash",
        ),
        (
            "/service-instances/inst-1/backups/1%2F..%2F..%2Fother/download",
            StatusCode::BAD_REQUEST,
            "encoded slash",
        ),
        (
            "/service-instances/other%00/backups",
            StatusCode::BAD_REQUEST,
            "control character",
        ),
        (
            "/backups/%ZZ/download",
            StatusCode::BAD_REQUEST,
            "two hex digits",
        ),
        (
            "/backups/1%2/download",
            StatusCode::BAD_REQUEST,
            "two hex digits",
        ),
        // Decoded once, as the router does: `%2e%2e`, a name, not a step up; not this instance.
        (
            "/service-instances/%252e%252e/backups",
            StatusCode::PRECONDITION_FAILED,
            "does not exist here",
        ),
        // An encoded character is not the instance id as the platform writes it.
        (
            "/service-instances/inst%2D1/backups",
            StatusCode::PRECONDITION_FAILED,
            "does not exist here",
        ),
        (
            "/v1/instances/inst-1/..%2F..%2Fv1/instances/other/metrics",
            StatusCode::BAD_REQUEST,
            "encoded slash",
        ),
    ];
    for &(path, want, words) in rows {
        let (status, body) = api.get(path).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(body.to_string().contains(words), "{path}: {body}");
        if want == StatusCode::BAD_REQUEST {
            assert_eq!(body["error"], "invalidPath", "{path}: {body}");
        }
        // Without a token, the same path says nothing but 401.
        let (status, _) = api.call(Method::GET, path, None, None, Vec::new()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // State-changing requests on trick paths change nothing.
    for path in [
        "/service-instances/inst-1/../other/backups",
        "/service-instances/other%2F..%2Finst-1/backups",
        "/service-instances/other/backups/restore",
    ] {
        let (status, body) = api
            .post(
                path,
                "application/x-www-form-urlencoded",
                format!("instance_id={INSTANCE}&backup_id={done}").into_bytes(),
            )
            .await;
        assert!(status.is_client_error(), "{path}: {status} {body}");
    }
    let (_, list) = api.get("/backups").await;
    assert_eq!(list["restores"], json!([]), "no restore was recorded");
    assert_eq!(
        list["backups"].as_array().unwrap().len(),
        1,
        "no backup was queued"
    );
}

#[tokio::test]
async fn one_backup_by_id_and_the_location_of_a_new_one() {
    let api = Api::new("").await;
    let done = api.ran(Some("20260102T030405Z-vm-one")).await;
    let (status, list) = api.get("/backups").await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        format!("/backups/{done}"),
        format!("/service-instances/{INSTANCE}/backups/{done}"),
    ] {
        let (status, one) = api.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {one}");
        assert_eq!(one, list["backups"][0], "the same object as in the list");
    }
    let restore_id = {
        let (status, body) = api.restore(done).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["restore_id"].as_i64().unwrap()
    };
    for id in ["999".to_string(), "abc".to_string(), restore_id.to_string()] {
        let (status, body) = api.get(&format!("/backups/{id}")).await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{id}: {body}");
        assert_eq!(
            body,
            json!({"msg": format!("there is no backup with id {id}")})
        );
    }
    let auth = format!("Bearer {TOKEN}");
    for (path, prefix) in [
        ("/backups".to_string(), String::new()),
        (
            format!("/service-instances/{INSTANCE}//backups"),
            format!("/service-instances/{INSTANCE}"),
        ),
    ] {
        let (status, headers, body) = api
            .call_with_headers(Method::POST, &path, Some(&auth), None, Vec::new())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["id"].as_i64().unwrap();
        let location = headers[axum::http::header::LOCATION].to_str().unwrap();
        assert_eq!(location, format!("{prefix}/backups/{id}"));
        let (status, task) = api.get(location).await;
        assert_eq!(status, StatusCode::OK, "{task}");
        assert_eq!(task["id"], id);
        assert_eq!(task["backup_agent_task"]["status"], "queued");
    }
}

#[tokio::test]
async fn the_list_pages_with_limit_and_before() {
    let api = Api::new("").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(api.ran(Some(&format!("20260102T03040{i}Z-vm-page"))).await);
    }
    let restored = api.restore(ids[0]).await.1["restore_id"].as_i64().unwrap();
    let backup_ids = |list: &Value| -> Vec<i64> {
        list["backups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_i64().unwrap())
            .collect()
    };
    // Without paging, everything (as the dashboard API lists it), newest first.
    let (_, all) = api.get("/backups").await;
    assert_eq!(backup_ids(&all), [ids[4], ids[3], ids[2], ids[1], ids[0]]);
    let (status, page) = api.get("/backups?limit=2").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(backup_ids(&page), [ids[4], ids[3]]);
    assert_eq!(page["restores"][0]["id"], restored);
    let (_, next) = api
        .get(&format!("/backups?limit=2&before={}", ids[3]))
        .await;
    assert_eq!(backup_ids(&next), [ids[2], ids[1]]);
    assert_eq!(
        next["restores"],
        json!([]),
        "the restore is newer than the page"
    );
    let (_, last) = api
        .get(&format!("/backups?limit=2&before={}", ids[1]))
        .await;
    assert_eq!(backup_ids(&last), [ids[0]]);
    let (_, huge) = api.get("/backups?limit=99999999999999999999999").await;
    assert_eq!(backup_ids(&huge).len(), 5);
    // A time: tasks created before it.
    let (_, none) = api.get("/backups?before=2000-01-01T00:00:00Z").await;
    assert_eq!(backup_ids(&none), Vec::<i64>::new());
    let (_, every) = api.get("/backups?before=2999-01-01T00:00:00%2B01:00").await;
    assert_eq!(backup_ids(&every).len(), 5);
    for query in [
        "limit=0",
        "limit=-1",
        "limit=abc",
        "limit=",
        "limit=1.5",
        "before=abc",
        "before=",
        "before=-3",
        "before=2026-13-01T00:00:00Z",
        "before=2026-01-01",
    ] {
        let (status, body) = api.get(&format!("/backups?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"], "invalidQuery", "{query}: {body}");
        let word = query.split('=').next().unwrap();
        assert!(
            body["description"].as_str().unwrap().starts_with(word),
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn the_openapi_document_is_served_to_clients_with_a_token() {
    let api = Api::new("").await;
    let auth = format!("Bearer {TOKEN}");
    let (status, headers, body) = api
        .call_with_headers(Method::GET, "/openapi.yaml", Some(&auth), None, Vec::new())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[axum::http::header::CONTENT_TYPE],
        "application/yaml"
    );
    let text = body.as_str().unwrap();
    assert_eq!(
        text,
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../spec/openapi.yaml"
        ))
        .unwrap()
    );
    for path in [
        "/backups/{id}",
        "/openapi.yaml",
        "/service-instances/{instance_id}/backups/{id}",
    ] {
        assert!(
            text.contains(&format!("\n  {path}:\n")),
            "{path} is described"
        );
    }
    let (status, _) = api
        .call(Method::GET, "/openapi.yaml", None, None, Vec::new())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_password_routes_are_guarded_as_every_route_and_refuse_what_cannot_work() {
    let api = Api::new("").await;
    let bearer = format!("Bearer {TOKEN}");
    let body = || br#"{"password": "long enough password"}"#.to_vec();
    for path in [
        "/backups/password",
        "/service-instances/inst-1/backups/password",
        "/v1/instances/inst-1/backups/password",
    ] {
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            let (status, answer) = api
                .call(method.clone(), path, None, Some("application/json"), body())
                .await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path}: {answer}"
            );
        }
        // Too short: 422, and the password is not in the answer.
        let (status, answer) = api
            .call(
                Method::PUT,
                path,
                Some(&bearer),
                Some("application/json"),
                br#"{"password": "hunter2"}"#.to_vec(),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["error"], "invalidPassword");
        assert!(!answer.to_string().contains("hunter2"), "{answer}");
        // A form password that is not UTF-8 once decoded: refused, never stored as U+FFFD.
        let (status, answer) = api
            .call(
                Method::PUT,
                path,
                Some(&bearer),
                Some("application/x-www-form-urlencoded"),
                b"password=%ff%feABCDEFGHIJKLMNOP".to_vec(),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"], "invalidBody", "{answer}");
        let said = answer.to_string();
        assert!(
            answer["description"]
                .as_str()
                .is_some_and(|d| d.contains("not UTF-8")),
            "{answer}"
        );
        assert!(
            !said.contains("ABCDEFGH") && !said.contains("%ff"),
            "{answer}"
        );
        // Twelve spaces or twelve NULs pass the length check but are no password.
        for (form, message) in [
            (
                "password=%00%00%00%00%00%00%00%00%00%00%00%00",
                "the password must not hold control characters",
            ),
            (
                "password=++++++++++++",
                "the password must not be only whitespace",
            ),
        ] {
            let (status, answer) = api
                .call(
                    Method::PUT,
                    path,
                    Some(&bearer),
                    Some("application/x-www-form-urlencoded"),
                    form.as_bytes().to_vec(),
                )
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
            assert_eq!(answer["error"], "invalidPassword", "{answer}");
            assert_eq!(answer["description"], message, "{answer}");
        }
        // This instance stores its backups unencrypted: a password cannot protect them.
        let (status, answer) = api
            .call(
                Method::PUT,
                path,
                Some(&bearer),
                Some("application/json"),
                body(),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        assert_eq!(answer["error"], "notEncrypted", "{answer}");
        let (status, answer) = api
            .call(Method::GET, path, Some(&bearer), None, Vec::new())
            .await;
        assert_eq!((status, &answer["set"]), (StatusCode::OK, &json!(false)));
        assert_eq!(answer["applies_to"], "backups made from now on");
    }
    let (status, answer) = api
        .call(
            Method::PUT,
            "/service-instances/other/backups/password",
            Some(&bearer),
            Some("application/json"),
            body(),
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{answer}");
    assert!(!api.dir.path().join("state/backup-password.json").exists());
}

/// Issue 26, part 5: a running restore shows how far it got, on both prefixes; one that is
/// not running shows null.
#[tokio::test]
async fn a_running_restore_shows_its_percentage_and_bytes() {
    let api = Api::new("").await;
    let tasks = &api.state.ctx.tasks;
    let id = tasks
        .create_restore("api", None, "latest".into(), "target".into())
        .await
        .unwrap();
    let bar = crate::progress::Bar::hidden();
    tasks.watch(id, bar.counters());
    let (_, list) = api.get("/backups").await;
    assert_eq!(
        list["restores"][0]["progress"],
        Value::Null,
        "queued: {list}"
    );
    tasks.start(id, "guid-1".into()).await.unwrap();
    let (_, list) = api.get("/backups").await;
    assert_eq!(
        list["restores"][0]["progress"],
        Value::Null,
        "no total yet: {list}"
    );
    bar.set_total_from(4000);
    service_backup_core::progress::Progress::advance(&*bar, 1000);
    for path in [
        "/backups".to_string(),
        format!("/service-instances/{INSTANCE}/backups"),
    ] {
        let (status, list) = api.get(&path).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            list["restores"][0]["progress"],
            json!({"percent": 25, "bytes_done": 1000, "bytes_total": 4000}),
            "{path}: {list}"
        );
    }
    tasks.unwatch(id);
    tasks.finish(id, None, 4000, 4000, 1.0).await.unwrap();
    let (_, list) = api.get("/backups").await;
    assert_eq!(list["restores"][0]["progress"], Value::Null, "done: {list}");
}
