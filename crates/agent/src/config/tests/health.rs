//! `health`: what it reads, its defaults, and what it refuses.

use std::time::Duration;

use super::super::{SaslMechanism, parse};
use super::{MSG, S3_OK, problems};

fn with_health(health: &str) -> String {
    format!("{S3_OK}health:\n{health}")
}

#[test]
fn health_reads_with_its_defaults() {
    let yaml =
        with_health("  kafka: {brokers: ['127.0.0.1:9092']}\n  tenant_name: t1\n  stdout: true\n");
    let health = parse(&yaml)
        .unwrap_or_else(|e| panic!("{e}"))
        .health
        .expect("health");
    let kafka = health.kafka.expect("kafka");
    assert_eq!(kafka.brokers, ["127.0.0.1:9092"]);
    assert_eq!(kafka.topic_prefix, "health-");
    assert!(kafka.tls_ca_cert.is_none() && kafka.sasl.is_none());
    assert_eq!(health.interval, Duration::from_mins(5));
    assert!(health.stdout);
    assert_eq!(health.tenant_name.as_deref(), Some("t1"));

    let yaml = with_health(
        "  interval: 1s\n  file: /tmp/h.jsonl\n  kafka:\n    brokers: 'a:1,b:2'\n    \
         sasl: {mechanism: scram-sha-256, username: u, password: KAFKASECRET}\n  tenant_name: t\n",
    );
    let health = parse(&yaml)
        .unwrap_or_else(|e| panic!("{e}"))
        .health
        .unwrap();
    assert_eq!(health.interval, Duration::from_secs(1));
    let kafka = health.kafka.unwrap();
    assert_eq!(kafka.brokers, ["a:1", "b:2"]);
    let sasl = kafka.sasl.unwrap();
    assert_eq!(
        (sasl.mechanism, sasl.username.as_str()),
        (SaslMechanism::ScramSha256, "u")
    );
    assert!(!format!("{sasl:?}").contains("KAFKASECRET"));
    assert!(parse(S3_OK).unwrap().health.is_none());
}

#[test]
fn bad_health_settings_are_refused() {
    let cases: &[(&str, &str)] = &[
        (
            "  kafka: {brokers: []}\n  tenant_name: t\n",
            "health.kafka.brokers must list at least one broker as host:port",
        ),
        (
            "  kafka: {brokers: ['kafka:port']}\n  tenant_name: t\n",
            "health.kafka.brokers: \"kafka:port\" is not a broker address such as kafka-0.example.net:9092",
        ),
        // Attack finding 10: user information in a broker address was accepted, then logged
        // in full; the password is not echoed.
        (
            "  kafka: {brokers: ['admin:KAFKAPW@kafka-0:9092']}\n  tenant_name: t\n",
            "health.kafka.brokers: the address of broker kafka-0:9092 holds user information (user:password@); give only host:port and put the credentials in health.kafka.sasl",
        ),
        (
            "  kafka: {brokers: 'a:9092,admin:KAFKAPW@b:9092'}\n  tenant_name: t\n",
            "health.kafka.brokers: the address of broker b:9092 holds user information (user:password@); give only host:port and put the credentials in health.kafka.sasl",
        ),
        (
            "  kafka: {brokers: ['kafka:99999']}\n  tenant_name: t\n",
            "health.kafka.brokers: \"kafka:99999\" is not a broker address such as kafka-0.example.net:9092",
        ),
        (
            "  kafka: {brokers: ['kafka:0']}\n  tenant_name: t\n",
            "health.kafka.brokers: \"kafka:0\" is not a broker address such as kafka-0.example.net:9092",
        ),
        (
            "  kafka: {brokers: ['k:9092']}\n",
            "health.kafka is set but health.tenant_name is not: the topic is <topic_prefix><tenant_name>",
        ),
        (
            "  interval: 0\n",
            "health.interval must be a time from 1s to 24h such as 300, 90s, 5m or 1h, not 0",
        ),
        (
            "  interval: 5 minutes\n",
            "health.interval must be a time from 1s to 24h such as 300, 90s, 5m or 1h, not \"5 minutes\"",
        ),
        (
            "  intervall: 5m\n",
            "unknown key health.intervall; did you mean interval?",
        ),
        (
            "  kafka: {brokers: ['k:1'], sasl: {username: u}}\n  tenant_name: t\n",
            "Missing values for health.kafka.sasl: password",
        ),
        (
            "  kafka: {brokers: ['k:1'], sasl: {mechanism: GSSAPI, username: u, password: KAFKASECRET}}\n  tenant_name: t\n",
            "health.kafka.sasl.mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not \"GSSAPI\"",
        ),
        (
            "  kafka: {brokers: ['k:1'], tls: {ca_cert: nope}}\n  tenant_name: t\n",
            "health.kafka.tls.ca_cert must be the PEM certificate (-----BEGIN CERTIFICATE----- ...) of the CA that signed the brokers' certificates",
        ),
        (
            "  tenant_name: 'a b'\n",
            "health.tenant_name may contain only letters, digits, '.', '_' and '-' (it names a Kafka topic), not \"a b\"",
        ),
        (
            "  stdout: maybe\n",
            "health.stdout must be true or false, not \"maybe\"",
        ),
        (
            "  kafka: k:9092\n",
            "health.kafka must be a mapping of settings, not a string",
        ),
    ];
    for (health, want) in cases {
        let got = problems(&with_health(health));
        let end = if want.ends_with('?') {
            String::new()
        } else if want.starts_with("Missing values") {
            format!(". {MSG}")
        } else {
            ".".to_string()
        };
        assert_eq!(
            got,
            vec![format!("Invalid config - {want}{end}")],
            "for {health:?}"
        );
        assert!(
            got.iter()
                .all(|p| !p.contains("KAFKASECRET") && !p.contains("KAFKAPW"))
        );
    }
}
