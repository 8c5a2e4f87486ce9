//! `alerts`: what it reads in both of the original's shapes and the webhook, and what it
//! refuses (never quoting a secret).

use std::time::Duration;

use super::super::parse;
use super::{S3_OK, problems};

const CC: &str =
    "    cloud_controller: {url: 'https://api.sys/', user: admin, password: PASSWORD1}\n";

#[test]
fn both_shapes_of_the_original_and_the_webhook_are_read() {
    // Release 18 on: `notifications`; the UAA is the one the Cloud Controller names.
    let yaml = format!(
        "{S3_OK}alerts:\n  product_name: Redis\n  config:\n{CC}    notifications: \
         {{service_url: 'https://notifications.sys', cf_org: o, cf_space: s, reply_to: r@x, \
         client_id: c, client_secret: SECRET2}}\n    timeout_seconds: 42\n"
    );
    let alerts = parse(&yaml)
        .unwrap_or_else(|e| panic!("{e}"))
        .alerts
        .expect("alerts");
    assert_eq!(alerts.product_name, "Redis");
    let n = alerts.notifications.expect("notifications");
    assert_eq!(
        (
            n.cloud_controller_url.as_str(),
            n.service_url.as_str(),
            n.cf_org.as_str(),
            n.cf_space.as_str(),
            n.reply_to.as_deref(),
            n.client_id.as_str(),
            n.client_secret.expose(),
            n.uaa_url.as_deref(),
            n.timeout,
            n.retry_limit,
        ),
        (
            "https://api.sys",
            "https://notifications.sys",
            "o",
            "s",
            Some("r@x"),
            "c",
            "SECRET2",
            None,
            Duration::from_secs(42),
            5
        )
    );
    assert!(alerts.webhook.is_none());

    // Release 17.2: `notification_target` with its UAA, and a retry limit.
    let yaml = format!(
        "{S3_OK}alerts:\n  config:\n{CC}    notification_target:\n      url: 'https://n'\n      \
         cf_org: o\n      cf_space: s\n      retry_limit: 2\n      skip_ssl_validation: true\n      \
         authentication: {{uaa: {{url: 'https://uaa', client_id: c, client_secret: x}}}}\n"
    );
    let alerts = parse(&yaml)
        .unwrap_or_else(|e| panic!("{e}"))
        .alerts
        .expect("alerts");
    assert_eq!(alerts.product_name, "service-backup");
    let n = alerts.notifications.expect("notifications");
    assert_eq!(
        (
            n.uaa_url.as_deref(),
            n.retry_limit,
            n.skip_ssl_validation,
            n.timeout
        ),
        (Some("https://uaa"), 2, true, Duration::from_mins(1))
    );

    let yaml = format!(
        "{S3_OK}alerts:\n  webhook:\n    url: 'https://hooks.example/x'\n    headers: \
         {{Authorization: Bearer HOOKSECRET3}}\n    timeout_seconds: 5\n    retry_limit: 0\n"
    );
    let alerts = parse(&yaml)
        .unwrap_or_else(|e| panic!("{e}"))
        .alerts
        .expect("alerts");
    let hook = alerts.webhook.expect("webhook");
    assert_eq!(hook.url, "https://hooks.example/x");
    assert_eq!(hook.headers.len(), 1);
    assert_eq!(
        (hook.headers[0].0.as_str(), hook.headers[0].1.expose()),
        ("Authorization", "Bearer HOOKSECRET3")
    );
    assert_eq!(
        (hook.timeout, hook.retry_limit),
        (Duration::from_secs(5), 0)
    );
    assert!(alerts.notifications.is_none());
}

#[test]
fn empty_alerts_configure_nothing() {
    // The BOSH job renders every key of the spec, empty when not set.
    for empty in [
        "alerts:\n",
        "alerts: {product_name: '', config: {cloud_controller: {url: '', user: '', password: ''}, \
         notifications: {service_url: '', cf_org: '', cf_space: '', reply_to: '', client_id: '', \
         client_secret: ''}, timeout_seconds: 60, skip_ssl_validation: false}}\n",
    ] {
        let config = parse(&format!("{S3_OK}{empty}")).unwrap_or_else(|e| panic!("{e}"));
        assert!(config.alerts.is_none(), "{empty}");
    }
}

#[test]
fn bad_alerts_are_refused_without_quoting_secrets() {
    let cases: &[(&str, &str)] = &[
        (
            "alerts:\n  webhook: {headers: {Authorization: Bearer SECRET9}}\n",
            "Missing values for alerts.webhook: url",
        ),
        (
            "alerts:\n  webhook: {url: 'ftp://hooks'}\n",
            "alerts.webhook.url must be an http:// or https:// URL, not \"ftp://hooks\"",
        ),
        // Attack finding 10: the URL was echoed with its password and query token; a
        // user and password were accepted, and a port of 99999.
        (
            "alerts:\n  webhook: {url: 'ftp://u:SECRET9@h/x?token=SECRET9'}\n",
            "alerts.webhook.url must be an http:// or https:// URL, not \"ftp://…@h/x…\"",
        ),
        (
            "alerts:\n  webhook: {url: 'https://u:SECRET9@h/x'}\n",
            "alerts.webhook.url must not hold a user name or password (\"https://…@h/x\"): give \
             credentials in headers or in their own keys",
        ),
        (
            "alerts:\n  webhook: {url: 'https://SECRET9@h/x'}\n",
            "alerts.webhook.url must not hold a user name or password (\"https://…@h/x\")",
        ),
        (
            "alerts:\n  webhook: {url: 'https://h:99999/x?token=SECRET9'}\n",
            "alerts.webhook.url is not a valid URL (invalid port number): \"https://h:99999/x…\"",
        ),
        (
            "alerts:\n  webhook: {url: 'https://h', timeout_seconds: 0}\n",
            "alerts.webhook.timeout_seconds must be a whole number of seconds from 1 to 3600, not 0",
        ),
        (
            "alerts:\n  webhook: {url: 'https://h', retry_limit: 101}\n",
            "alerts.webhook.retry_limit must be a whole number from 0 to 100, not 101",
        ),
        (
            "alerts:\n  webhook: {url: 'https://h', ca_cert: 'not PEM'}\n",
            "alerts.webhook.ca_cert must be a PEM certificate",
        ),
        (
            "alerts:\n  webhook: {url: 'https://h', headers: [SECRET9]}\n",
            "alerts.webhook.headers must be a mapping of header names to values, not a list",
        ),
        (
            "alerts:\n  webhook: {url: 'https://h', headers: {'Bad Name': SECRET9}}\n",
            "alerts.webhook.headers: Bad Name is not a valid header name",
        ),
        (
            "alerts:\n  webhook: {url: 'https://h', headers: {Authorization: \"SECRET9\\x01\"}}\n",
            "alerts.webhook.headers.Authorization must be a non-empty text of visible characters",
        ),
        (
            "alerts:\n  webhook: {url: 'https://h', secret: SECRET9}\n",
            "unknown key alerts.webhook.secret",
        ),
        (
            "alerts:\n  webhok: {url: 'https://h'}\n",
            "unknown key alerts.webhok; did you mean webhook?",
        ),
        (
            "alerts:\n  config:\n    notifications: {service_url: 'https://n', cf_org: o, client_secret: SECRET9}\n",
            "Missing values for alerts.config.notifications: cf_space, client_id",
        ),
        (
            "alerts:\n  config:\n    notifications: {service_url: 'https://n', cf_org: o, cf_space: s, client_id: c, client_secret: SECRET9}\n",
            "Missing values for alerts.config: cloud_controller",
        ),
        (
            "alerts:\n  config:\n    cloud_controller: {url: 'https://api', password: SECRET9}\n    notifications: {service_url: 'https://n', cf_org: o, cf_space: s, client_id: c, client_secret: SECRET9}\n",
            "Missing values for alerts.config.cloud_controller: user",
        ),
        (
            "alerts:\n  config:\n    cloud_controller: {url: 'api.sys', user: u, password: SECRET9}\n    notifications: {service_url: 'https://n', cf_org: o, cf_space: s, client_id: c, client_secret: SECRET9}\n",
            "alerts.config.cloud_controller.url must be an http:// or https:// URL, not \"api.sys\"",
        ),
        (
            "alerts:\n  config:\n    notification_target: {url: 'https://n', cf_org: o, cf_space: s}\n",
            "Missing values for alerts.config.notification_target: authentication.uaa",
        ),
        (
            "alerts:\n  config:\n    notification_target: {url: 'https://n', cf_org: o, cf_space: s, retry_limit: -1, authentication: {uaa: {client_id: c, client_secret: SECRET9}}}\n",
            "alerts.config.notification_target.retry_limit must be a whole number from 0 to 100, not -1",
        ),
        (
            "alerts:\n  config:\n    timeout_seconds: 3601\n",
            "alerts.config.timeout_seconds must be a whole number of seconds from 1 to 3600, not 3601",
        ),
        (
            "alerts:\n  config:\n    timeout_seconds: soon\n",
            "alerts.config.timeout_seconds must be a whole number of seconds from 1 to 3600, not \"soon\"",
        ),
    ];
    for (alerts, expected) in cases {
        let found = problems(&format!("{S3_OK}{alerts}"));
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{alerts:?}: {expected:?} is not in {found:?}"
        );
        let all = found.join("\n");
        assert!(!all.contains("SECRET9"), "{all}");
    }
}
