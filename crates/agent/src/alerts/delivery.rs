//! One request of an alert with retries: exponential backoff from one second (doubling,
//! at most 16 s, as the original's), at most `retry_limit` retries, all before `deadline`.

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use tokio::time::Instant;

use crate::api::auth::error_chain;

/// The first wait before a retry.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The longest wait before a retry.
const MAX_BACKOFF: Duration = Duration::from_secs(16);

/// The longest single attempt.
const MAX_ATTEMPT: Duration = Duration::from_secs(30);

/// How many retries, and until when.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Retries after the first attempt.
    pub retry_limit: u32,
    /// When the whole alert must be done.
    pub deadline: Instant,
}

impl Budget {
    /// A budget of `retry_limit` retries within `timeout` from now.
    pub fn new(retry_limit: u32, timeout: Duration) -> Self {
        Self {
            retry_limit,
            deadline: Instant::now() + timeout,
        }
    }
}

/// Whether a response is worth another try: a server error, too many requests, or the
/// platform router not knowing the route yet (the original's rule, plus 429).
fn retryable(response: &Response) -> bool {
    let status = response.status();
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::NOT_FOUND
            && response
                .headers()
                .get("x-cf-routererror")
                .is_some_and(|v| v.as_bytes() == b"unknown_route"))
}

/// Sends the request `make` builds (once per attempt) until it answers 2xx; `label` names
/// it in messages (`UAA`, `CF API`, `webhook`). Errors never hold the URL.
pub async fn send(
    label: &str,
    budget: Budget,
    make: impl Fn() -> RequestBuilder,
) -> Result<Response, String> {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 0u32;
    loop {
        let left = budget.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{label} request timed out"));
        }
        let error = match make().timeout(left.min(MAX_ATTEMPT)).send().await {
            Ok(response) if response.status().is_success() => return Ok(response),
            Ok(response) if retryable(&response) => format!(
                "{label} expected to return HTTP 200, got {}",
                response.status().as_u16()
            ),
            Ok(response) => {
                return Err(format!(
                    "{label} expected to return HTTP 200, got {}",
                    response.status().as_u16()
                ));
            }
            Err(e) => error_chain(e),
        };
        if attempt >= budget.retry_limit {
            return Err(format!("Giving up, {label} request failed: {error}"));
        }
        let left = budget.deadline.saturating_duration_since(Instant::now());
        if backoff >= left {
            return Err(format!("Giving up, {label} request failed: {error}"));
        }
        tracing::info!(
            label,
            retry_in_seconds = backoff.as_secs(),
            error = %error,
            "Retrying an alert's request"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        attempt += 1;
    }
}

/// The largest answer body read from the platform (Cloud Controller, UAA): their answers
/// are small, and a larger one must not fill the agent's memory.
pub const MAX_BODY: usize = 1024 * 1024;

/// The body of `response` as JSON of type `T`; a body over [`MAX_BODY`] is refused unread
/// past the limit.
pub async fn json<T: serde::de::DeserializeOwned>(
    label: &str,
    mut response: Response,
) -> Result<T, String> {
    let too_large = || format!("{label} response is larger than 1 MiB; it was not read");
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("{label} response could not be read: {}", error_chain(e)))?
    {
        if bytes.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("{label} response not parseable: {e}"))
}
