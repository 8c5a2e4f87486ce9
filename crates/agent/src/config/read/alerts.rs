//! `alerts`: the platform's notifications service (both of the original's shapes) and the
//! webhook. Values are never quoted in problems: the block holds passwords and headers.

use std::time::Duration;

use serde_norway::Value;

use super::super::alerts::{
    AlertsConfig, DEFAULT_ALERT_TIMEOUT, DEFAULT_PRODUCT_NAME, DEFAULT_RETRY_LIMIT,
    NotificationsConfig, WebhookConfig,
};
use super::super::keys;
use super::super::section::{Problems, Section, kind_of, scalar_text, shown, untagged};
use super::platform::{ca_cert, url};

/// The longest time budget of one alert, in seconds: an hour.
const MAX_TIMEOUT_SECONDS: u64 = 3600;

/// The most retries of one request.
const MAX_RETRY_LIMIT: u32 = 100;

/// The most webhook headers.
const MAX_HEADERS: usize = 32;

/// `alerts`, when present; `None` also when it configures no channel (the job's empty one).
pub(super) fn alerts(top: &Section<'_>, problems: &mut Problems) -> Option<AlertsConfig> {
    let alerts = top.section("alerts", keys::ALERTS, problems)?;
    let product_name = alerts.text("product_name", problems).map_or_else(
        || DEFAULT_PRODUCT_NAME.to_string(),
        |t| t.trim().to_string(),
    );
    let notifications = alerts
        .section("config", keys::ALERTS_CONFIG, problems)
        .and_then(|config| notifications(&config, problems));
    let webhook = alerts
        .section("webhook", keys::ALERTS_WEBHOOK, problems)
        .and_then(|webhook| read_webhook(&webhook, problems));
    let config = AlertsConfig {
        product_name,
        notifications,
        webhook,
    };
    config.any().then_some(config)
}

/// `timeout_seconds` of `section`: whole seconds from 1 to an hour.
fn timeout(section: &Section<'_>, problems: &mut Problems) -> Duration {
    let Some(value) = section.get("timeout_seconds") else {
        return DEFAULT_ALERT_TIMEOUT;
    };
    match scalar_text(value).and_then(|t| t.trim().parse::<u64>().ok()) {
        Some(n) if (1..=MAX_TIMEOUT_SECONDS).contains(&n) => Duration::from_secs(n),
        _ => {
            problems.push(format!(
                "{} must be a whole number of seconds from 1 to {MAX_TIMEOUT_SECONDS}, not {}",
                section.name("timeout_seconds"),
                shown(value)
            ));
            DEFAULT_ALERT_TIMEOUT
        }
    }
}

/// `retry_limit` of `section`, when set: 0 to [`MAX_RETRY_LIMIT`].
fn retry_limit(section: &Section<'_>, problems: &mut Problems) -> Option<u32> {
    let value = section.get("retry_limit")?;
    match scalar_text(value).and_then(|t| t.trim().parse::<u32>().ok()) {
        Some(n) if n <= MAX_RETRY_LIMIT => Some(n),
        _ => {
            problems.push(format!(
                "{} must be a whole number from 0 to {MAX_RETRY_LIMIT}, not {}",
                section.name("retry_limit"),
                shown(value)
            ));
            None
        }
    }
}

/// Trimmed text, when set and not blank.
fn text(section: &Section<'_>, key: &str, problems: &mut Problems) -> Option<String> {
    section.text(key, problems).map(|t| t.trim().to_string())
}

/// Reports the keys of `wanted` that `section` lacks, as the other sections do.
fn required(section: &Section<'_>, wanted: &[&'static str], what: &str, problems: &mut Problems) {
    let missing = section.missing(wanted);
    if !missing.is_empty() {
        problems.push(format!("Missing values for {what}: {}", missing.join(", ")));
    }
}

/// Whether any of `keys` has a value in `section` (the job renders every key, empty).
fn any_set(section: &Section<'_>, keys: &[&'static str]) -> bool {
    section.missing(keys).len() < keys.len()
}

/// `alerts.config`: the notifications service, when its URL is set.
fn notifications(config: &Section<'_>, problems: &mut Problems) -> Option<NotificationsConfig> {
    let timeout = timeout(config, problems);
    let skip_ssl_validation = config.flag("skip_ssl_validation", false, problems);
    let mut retries = retry_limit(config, problems);
    let cc = config.section("cloud_controller", keys::ALERTS_CLOUD_CONTROLLER, problems);
    // Release 18's `notifications` is read when both shapes are given.
    let (service_url, cf_org, cf_space, reply_to, client_id, client_secret, uaa_url, skip) =
        if let Some(n) = config
            .section("notifications", keys::ALERTS_NOTIFICATIONS, problems)
            .filter(|n| any_set(n, keys::ALERTS_NOTIFICATIONS))
        {
            required(
                &n,
                &[
                    "service_url",
                    "cf_org",
                    "cf_space",
                    "client_id",
                    "client_secret",
                ],
                "alerts.config.notifications",
                problems,
            );
            (
                url(&n, "service_url", problems),
                text(&n, "cf_org", problems),
                text(&n, "cf_space", problems),
                text(&n, "reply_to", problems),
                text(&n, "client_id", problems),
                n.secret("client_secret", problems),
                None,
                false,
            )
        } else if let Some(t) = config
            .section(
                "notification_target",
                keys::ALERTS_NOTIFICATION_TARGET,
                problems,
            )
            .filter(|t| {
                any_set(t, &["url", "cf_org", "cf_space", "reply_to"]) || t.has("authentication")
            })
        {
            required(
                &t,
                &["url", "cf_org", "cf_space"],
                "alerts.config.notification_target",
                problems,
            );
            retries = retry_limit(&t, problems).or(retries);
            let skip = t.flag("skip_ssl_validation", false, problems);
            let uaa = t
                .section("authentication", keys::ALERTS_AUTHENTICATION, problems)
                .and_then(|a| a.section("uaa", keys::ALERTS_UAA, problems));
            let (uaa_url, client_id, client_secret) = if let Some(uaa) = &uaa {
                required(
                    uaa,
                    &["client_id", "client_secret"],
                    "alerts.config.notification_target.authentication.uaa",
                    problems,
                );
                (
                    url(uaa, "url", problems),
                    text(uaa, "client_id", problems),
                    uaa.secret("client_secret", problems),
                )
            } else {
                problems.push(
                    "Missing values for alerts.config.notification_target: authentication.uaa"
                        .to_string(),
                );
                (None, None, None)
            };
            (
                url(&t, "url", problems),
                text(&t, "cf_org", problems),
                text(&t, "cf_space", problems),
                text(&t, "reply_to", problems),
                client_id,
                client_secret,
                uaa_url,
                skip,
            )
        } else {
            return None;
        };
    // The space is found by its org's and its own name, as the original did.
    let (cc_url, cc_user, cc_password) = if let Some(cc) = &cc {
        required(
            cc,
            &["url", "user", "password"],
            "alerts.config.cloud_controller",
            problems,
        );
        (
            url(cc, "url", problems),
            text(cc, "user", problems),
            cc.secret("password", problems),
        )
    } else {
        problems.push(
            "Missing values for alerts.config: cloud_controller (the space to notify is \
             found through it)"
                .to_string(),
        );
        (None, None, None)
    };
    Some(NotificationsConfig {
        cloud_controller_url: cc_url?,
        cloud_controller_user: cc_user?,
        cloud_controller_password: cc_password?,
        service_url: service_url?,
        cf_org: cf_org?,
        cf_space: cf_space?,
        reply_to,
        client_id: client_id?,
        client_secret: client_secret?,
        uaa_url,
        timeout,
        retry_limit: retries.unwrap_or(DEFAULT_RETRY_LIMIT),
        skip_ssl_validation: skip_ssl_validation || skip,
    })
}

/// `alerts.webhook`.
fn read_webhook(webhook: &Section<'_>, problems: &mut Problems) -> Option<WebhookConfig> {
    if webhook.missing(&["url"]).contains(&"url") {
        problems.push("Missing values for alerts.webhook: url".to_string());
    }
    let url = url(webhook, "url", problems);
    let headers = headers(webhook.get("headers"), problems);
    let ca_cert = ca_cert(webhook, problems);
    let timeout = timeout(webhook, problems);
    let retry_limit = retry_limit(webhook, problems).unwrap_or(DEFAULT_RETRY_LIMIT);
    Some(WebhookConfig {
        url: url?,
        headers,
        ca_cert,
        timeout,
        retry_limit,
    })
}

/// `alerts.webhook.headers`: a mapping of header names to values (secrets, never quoted).
fn headers(value: Option<&Value>, problems: &mut Problems) -> Vec<(String, super::super::Secret)> {
    let Some(value) = value else {
        return Vec::new();
    };
    let Value::Mapping(map) = untagged(value) else {
        problems.push(format!(
            "alerts.webhook.headers must be a mapping of header names to values, not {}",
            kind_of(value)
        ));
        return Vec::new();
    };
    if map.len() > MAX_HEADERS {
        problems.push(format!(
            "alerts.webhook.headers has {} headers; at most {MAX_HEADERS} are allowed",
            map.len()
        ));
        return Vec::new();
    }
    let mut out = Vec::new();
    for (name, value) in map {
        let Some(name) = name.as_str() else {
            continue;
        };
        let shown_name = super::super::section::escaped(name);
        if name.is_empty() || reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.push(format!(
                "alerts.webhook.headers: {shown_name} is not a valid header name"
            ));
            continue;
        }
        let text = scalar_text(value).filter(|t| !t.trim().is_empty());
        match text {
            Some(t) if reqwest::header::HeaderValue::from_str(t.trim()).is_ok() => {
                out.push((name.to_string(), super::super::Secret::new(t.trim())));
            }
            _ => problems.push(format!(
                "alerts.webhook.headers.{shown_name} must be a non-empty text of visible \
                 characters (its value is not shown)"
            )),
        }
    }
    out
}
