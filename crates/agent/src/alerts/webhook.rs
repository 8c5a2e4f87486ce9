//! `alerts.webhook`: the alert's JSON body sent (a POST) to a URL, with the configured headers.

use reqwest::header::{CONTENT_TYPE, HeaderValue};

use super::body::Alert;
use super::delivery::{self, Budget};
use crate::config::alerts::WebhookConfig;

/// Sends `alert` to the webhook, with retries within its budget.
pub async fn send(config: &WebhookConfig, alert: &Alert) -> Result<(), String> {
    let budget = Budget::new(config.retry_limit, config.timeout);
    let client = crate::api::auth::platform_client(config.ca_cert.as_deref(), "alerts.webhook")?;
    let body =
        serde_json::to_vec(alert).map_err(|e| format!("the alert cannot be written: {e}"))?;
    delivery::send("webhook", budget, || {
        let mut request = client
            .post(&config.url)
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone());
        for (name, value) in &config.headers {
            // Checked by validate; a value is marked sensitive so that no debug output of
            // the request shows it.
            if let Ok(mut value) = HeaderValue::from_str(value.expose()) {
                value.set_sensitive(true);
                request = request.header(name.as_str(), value);
            }
        }
        request
    })
    .await
    .map(drop)
}
