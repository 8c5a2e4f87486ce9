//! The Cloud Controller's answer to "may this token's user manage the service instance?":
//! `GET /v3/service_instances/{guid}/permissions` with the user's own token, answered
//! `{"read": bool, "manage": bool}` (the v3 API's service instance permissions). Answers
//! are kept per token (by digest) for the configured lifetime.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::config::CloudControllerConfig;

/// The most answers kept; past it the expired ones go, then all.
const MAX_CACHED: usize = 4096;

/// The largest answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What the Cloud Controller said, or why it could not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// `manage: true`.
    Manage,
    /// `manage: false`, or 403/404 (the user does not see the instance).
    Denied,
    /// 401: the Cloud Controller does not accept the token.
    Unauthenticated,
    /// Down, slow, or an answer of another shape.
    Unavailable,
}

#[derive(Deserialize)]
struct Answer {
    manage: bool,
}

/// Asks the Cloud Controller, and remembers its answers briefly.
pub struct Permissions {
    url: String,
    lifetime: Duration,
    client: reqwest::Client,
    cache: Mutex<HashMap<[u8; 32], (Instant, Permission)>>,
}

impl Permissions {
    /// Asks at `config.url` about `config.service_instance_guid`, else `instance_id`.
    pub fn new(config: &CloudControllerConfig, instance_id: &str, client: reqwest::Client) -> Self {
        let guid = config
            .service_instance_guid
            .as_deref()
            .unwrap_or(instance_id);
        let guid: String = url_path_segment(guid);
        Self {
            url: format!("{}/v3/service_instances/{guid}/permissions", config.url),
            lifetime: Duration::from_secs(config.cache_seconds),
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the user of `token` may manage the instance.
    pub async fn of(&self, token: &str) -> Permission {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((at, answer)) = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&digest)
            && at.elapsed() < self.lifetime
        {
            return *answer;
        }
        let answer = self.ask(token).await;
        // Only answers are kept: an outage is asked about again on the next request.
        if answer != Permission::Unavailable && !self.lifetime.is_zero() {
            let mut cache = self
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, (at, _)| at.elapsed() < self.lifetime);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(digest, (Instant::now(), answer));
        }
        answer
    }

    async fn ask(&self, token: &str) -> Permission {
        let response = self
            .client
            .get(&self.url)
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await;
        let mut response = match response {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %super::error_chain(e), "The Cloud Controller could not be asked about permissions");
                return Permission::Unavailable;
            }
        };
        match response.status().as_u16() {
            200 => {}
            401 => return Permission::Unauthenticated,
            403 | 404 => return Permission::Denied,
            status => {
                tracing::error!(
                    status,
                    "The Cloud Controller answered the permissions request with an error"
                );
                return Permission::Unavailable;
            }
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_ANSWER_BYTES {
                        return Permission::Unavailable;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %super::error_chain(e), "The Cloud Controller's permissions answer could not be read");
                    return Permission::Unavailable;
                }
            }
        }
        match serde_json::from_slice::<Answer>(&body) {
            Ok(Answer { manage: true }) => Permission::Manage,
            Ok(Answer { manage: false }) => Permission::Denied,
            Err(e) => {
                tracing::error!(error = %e, "The Cloud Controller's permissions answer has no manage flag");
                Permission::Unavailable
            }
        }
    }
}

/// `text` made safe as one path segment (percent-encoding all but unreserved characters).
fn url_path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guid_cannot_leave_its_path_segment() {
        let config = CloudControllerConfig {
            url: "https://api.example.com".into(),
            service_instance_guid: Some("../v2/info?x=1#".into()),
            cache_seconds: 30,
            ca_cert: None,
        };
        let p = Permissions::new(&config, "ignored", reqwest::Client::new());
        assert_eq!(
            p.url,
            "https://api.example.com/v3/service_instances/..%2Fv2%2Finfo%3Fx%3D1%23/permissions"
        );
        let config = CloudControllerConfig {
            service_instance_guid: None,
            ..config
        };
        let p = Permissions::new(&config, "b02f4682-3c5b", reqwest::Client::new());
        assert!(
            p.url
                .ends_with("/service_instances/b02f4682-3c5b/permissions")
        );
    }
}
