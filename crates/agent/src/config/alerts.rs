//! The `alerts` block as the agent uses it: the platform's notifications service (the
//! original's service-alerts-client settings) and a generic webhook.

use std::time::Duration;

use service_backup_core::secret::Secret;

/// The product named in notifications when `alerts.product_name` is not set.
pub const DEFAULT_PRODUCT_NAME: &str = "service-backup";

/// The time budget of one alert when `timeout_seconds` is not set, as the original's.
pub const DEFAULT_ALERT_TIMEOUT: Duration = Duration::from_mins(1);

/// How many times a request of an alert is retried when `retry_limit` is not set.
pub const DEFAULT_RETRY_LIMIT: u32 = 5;

/// Where failed backups and recoveries are reported.
#[derive(Clone, Debug)]
pub struct AlertsConfig {
    /// The product named in notifications (`alerts.product_name`).
    pub product_name: String,
    /// The platform's notifications service; `None`: not configured.
    pub notifications: Option<NotificationsConfig>,
    /// The webhook; `None`: not configured.
    pub webhook: Option<WebhookConfig>,
}

impl AlertsConfig {
    /// Whether any channel is configured.
    pub fn any(&self) -> bool {
        self.notifications.is_some() || self.webhook.is_some()
    }
}

/// The notifications service of the platform and how to reach the space it notifies.
#[derive(Clone, Debug)]
pub struct NotificationsConfig {
    /// The Cloud Controller, which finds the space and names the UAA.
    pub cloud_controller_url: String,
    /// The Cloud Controller user who may read the org and space.
    pub cloud_controller_user: String,
    /// That user's password.
    pub cloud_controller_password: Secret,
    /// The notifications service.
    pub service_url: String,
    /// The org of the space notified.
    pub cf_org: String,
    /// The space notified.
    pub cf_space: String,
    /// The reply-to address of the e-mails, if any.
    pub reply_to: Option<String>,
    /// The UAA client that may send notifications.
    pub client_id: String,
    /// That client's secret.
    pub client_secret: Secret,
    /// The UAA, when given (release 17.2's form); else the Cloud Controller names it.
    pub uaa_url: Option<String>,
    /// The time budget of one alert.
    pub timeout: Duration,
    /// How many times a failed request is retried within `timeout`.
    pub retry_limit: u32,
    /// Whether TLS certificates go unchecked (the original's `skip_ssl_validation`).
    pub skip_ssl_validation: bool,
}

/// A URL that gets a JSON body on each failed backup and each recovery.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Where the body is sent (a POST).
    pub url: String,
    /// Extra headers, such as `Authorization`; their values are secrets.
    pub headers: Vec<(String, Secret)>,
    /// PEM of a private certificate authority to trust.
    pub ca_cert: Option<String>,
    /// The time budget of one alert.
    pub timeout: Duration,
    /// How many times a failed request is retried within `timeout`.
    pub retry_limit: u32,
}
