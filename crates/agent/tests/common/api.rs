//! The daemon with its API, spawned from the real binary, and the calls the dashboard makes;
//! taken by the tests that need it (`#[path = "common/api.rs"] mod api;`), so that the
//! others do not compile it.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

/// `service-backup run config.yml` in a folder, its API on a port, killed when dropped.
pub struct ApiAgent {
    child: Child,
    base: String,
    client: Client,
    token: String,
    instance: String,
}

impl Drop for ApiAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ApiAgent {
    /// Starts the daemon of `dir/config.yml` (its API on `port`, answering `token` for
    /// `instance`), logging to `dir/daemon.log` and `dir/daemon.err`; returns once
    /// `/health` answers.
    pub async fn start(dir: &Path, port: u16, token: &str, instance: &str) -> Self {
        let child = Command::new(crate::common::binary())
            .args(["run", "config.yml"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("daemon.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("daemon.err")).unwrap())
            .spawn()
            .unwrap();
        let agent = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: Client::builder()
                .timeout(Duration::from_mins(1))
                .build()
                .unwrap(),
            token: token.to_string(),
            instance: instance.to_string(),
        };
        let start = Instant::now();
        while !matches!(agent.client.get(format!("{}/health", agent.base)).send().await, Ok(r) if r.status() == StatusCode::OK)
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the API did not answer: {}",
                std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        agent
    }

    /// `method path` with the bearer token and `body` (content type, text); the status
    /// and the answer, as JSON when it is.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status();
        let text = answer.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Makes a backup through the API and waits until it is done; returns its id.
    pub async fn backup(&self) -> i64 {
        let path = format!("/service-instances/{}/backups", self.instance);
        let (status, body) = self
            .call(Method::POST, &path, Some(("application/json", "{}".into())))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["id"].as_i64().unwrap();
        let start = Instant::now();
        loop {
            let (_, list) = self.call(Method::GET, &path, None).await;
            let task = list["backups"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["id"] == id)
                .map(|b| b["backup_agent_task"]["status"].clone());
            if task == Some(json!("done")) {
                return id;
            }
            assert_ne!(task, Some(json!("failed")), "{list}");
            assert!(start.elapsed() < Duration::from_mins(1), "{list}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Downloads backup `id` through the API: the file name the answer gives, and the bytes.
    pub async fn download(&self, id: i64) -> (String, Vec<u8>) {
        let answer = self
            .client
            .get(format!(
                "{}/service-instances/{}/backups/{id}/download",
                self.base, self.instance
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let disposition = answer.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_string();
        let name = disposition
            .split("filename=\"")
            .nth(1)
            .and_then(|s| s.strip_suffix('"'))
            .unwrap()
            .to_string();
        (name, answer.bytes().await.unwrap().to_vec())
    }
}

/// An S3 client of the test server at `endpoint` with `access_key` and `secret` (moto
/// accepts any).
pub fn s3_client(endpoint: &str, access_key: &str, secret: &str) -> aws_sdk_s3::Client {
    let credentials = aws_sdk_s3::config::Credentials::new(access_key, secret, None, None, "test");
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            )
            .credentials_provider(credentials)
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .build(),
    )
}
