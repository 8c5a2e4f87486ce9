//! What any answer from a Google endpoint (the storage API, the token endpoint) needs:
//! a bounded read of its body, and the reason of a request that got none.

use reqwest::Response;

/// Why a request got no answer, in a few words, without the URL (which for an upload
/// session is a credential of its own).
pub(crate) fn transport_reason(err: &reqwest::Error) -> String {
    let mut reason = if err.is_timeout() {
        "no answer in time".to_string()
    } else if err.is_connect() {
        "connection refused or unreachable".to_string()
    } else {
        "the connection failed".to_string()
    };
    let mut source = std::error::Error::source(err);
    let mut deepest = None;
    while let Some(s) = source {
        deepest = Some(s.to_string());
        source = s.source();
    }
    if let Some(d) = deepest.filter(|d| !d.contains("://")) {
        let d = d.split(" (os error").next().unwrap_or_default();
        reason = format!("{reason} ({d})");
    }
    reason
}

/// Reads at most `limit` bytes of an answer's body.
pub(crate) async fn read_limited(
    mut response: Response,
    limit: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}
