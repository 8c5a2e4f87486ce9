//! `health`: where the health events go (Kafka, a file, stdout), how often they repeat,
//! and the names every event carries (the platform's health exposure schema 1.1).

use std::path::PathBuf;
use std::time::Duration;

use service_backup_core::secret::Secret;

use super::keys;
use super::section::{Problems, Section, scalar_text, shown};

/// The default `health.interval`: an event repeats every 5 minutes.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_mins(5);

/// The default `health.kafka.topic_prefix`.
pub const DEFAULT_TOPIC_PREFIX: &str = "health-";

/// The longest `health.interval` accepted: a day.
const MAX_INTERVAL: Duration = Duration::from_hours(24);

/// `health`.
#[derive(Clone, Debug, Default)]
pub struct HealthConfig {
    /// The Kafka sink.
    pub kafka: Option<KafkaConfig>,
    /// The file sink: one JSON line per event, appended.
    pub file: Option<PathBuf>,
    /// The stdout sink.
    pub stdout: bool,
    /// How often an unchanged status is published again.
    pub interval: Duration,
    /// The tenant (the topic's suffix).
    pub tenant_name: Option<String>,
    /// The space of the service instance.
    pub space_name: Option<String>,
    /// The service's name in the platform's catalog.
    pub cloud_service_name: Option<String>,
    /// The service instance's id.
    pub instance_id: Option<String>,
    /// The service instance's name.
    pub instance_name: Option<String>,
    /// The service instance's plan.
    pub instance_class_name: Option<String>,
}

impl HealthConfig {
    /// Whether any sink is configured.
    pub fn has_sink(&self) -> bool {
        self.kafka.is_some() || self.file.is_some() || self.stdout
    }
}

/// `health.kafka`.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `host:port` of the bootstrap brokers.
    pub brokers: Vec<String>,
    /// The topic is this prefix and the tenant name.
    pub topic_prefix: String,
    /// The CA certificate (PEM) of the brokers, when they speak TLS.
    pub tls_ca_cert: Option<String>,
    /// SASL authentication.
    pub sasl: Option<SaslConfig>,
}

/// The SASL mechanisms accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `PLAIN`.
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

/// `health.kafka.sasl`.
#[derive(Clone, Debug)]
pub struct SaslConfig {
    /// The mechanism (default PLAIN).
    pub mechanism: SaslMechanism,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: Secret,
}

/// Reads `health` from the top-level section; `None` when absent.
pub(super) fn read_health(top: &Section<'_>, problems: &mut Problems) -> Option<HealthConfig> {
    let health = top.section("health", keys::HEALTH, problems)?;
    let kafka = health
        .section("kafka", keys::HEALTH_KAFKA, problems)
        .map(|k| kafka(&k, problems));
    let file = health.path("file", problems);
    let stdout = health.flag("stdout", false, problems);
    let interval = interval(&health, problems);
    let name = |key: &str, problems: &mut Problems| {
        health.text(key, problems).map(|t| t.trim().to_string())
    };
    let tenant_name = name("tenant_name", problems);
    let space_name = name("space_name", problems);
    let cloud_service_name = name("cloud_service_name", problems);
    if let Some(tenant) = &tenant_name
        && !tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        problems.push(format!(
            "health.tenant_name may contain only letters, digits, '.', '_' and '-' (it names a Kafka topic), not \"{tenant}\""
        ));
    }
    if kafka.is_some() && tenant_name.is_none() {
        problems.push(
            "health.kafka is set but health.tenant_name is not: the topic is <topic_prefix><tenant_name>"
                .to_string(),
        );
    }
    let instance = health.section("service_instance", keys::HEALTH_SERVICE_INSTANCE, problems);
    let field = |key: &str, problems: &mut Problems| {
        instance
            .as_ref()
            .and_then(|i| i.text(key, problems))
            .map(|t| t.trim().to_string())
    };
    let instance_id = field("id", problems);
    let instance_name = field("name", problems);
    let instance_class_name = field("instance_class_name", problems);
    Some(HealthConfig {
        kafka,
        file,
        stdout,
        interval,
        tenant_name,
        space_name,
        cloud_service_name,
        instance_id,
        instance_name,
        instance_class_name,
    })
}

/// `health.interval`: a whole number of seconds, or a number with `s`, `m` or `h`.
fn interval(health: &Section<'_>, problems: &mut Problems) -> Duration {
    let Some(value) = health.get("interval") else {
        return DEFAULT_HEALTH_INTERVAL;
    };
    let parsed = scalar_text(value).and_then(|t| parse_interval(t.trim()));
    match parsed {
        Some(d) if !d.is_zero() && d <= MAX_INTERVAL => d,
        _ => {
            problems.push(format!(
                "health.interval must be a time from 1s to 24h such as 300, 90s, 5m or 1h, not {}",
                shown(value)
            ));
            DEFAULT_HEALTH_INTERVAL
        }
    }
}

/// `300`, `90s`, `5m`, `1h`.
fn parse_interval(text: &str) -> Option<Duration> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number.parse().ok()?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return None,
    };
    n.checked_mul(scale).map(Duration::from_secs)
}

fn kafka(section: &Section<'_>, problems: &mut Problems) -> KafkaConfig {
    let brokers = match section.get("brokers") {
        None => Vec::new(),
        Some(value) => match value {
            serde_norway::Value::Sequence(items) => {
                items.iter().filter_map(scalar_text).collect::<Vec<_>>()
            }
            other => scalar_text(other)
                .map(|t| t.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
        },
    };
    let brokers: Vec<String> = brokers
        .iter()
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect();
    if brokers.is_empty() {
        problems
            .push("health.kafka.brokers must list at least one broker as host:port".to_string());
    }
    for broker in &brokers {
        // user:password@host:port: the password must not reach the message (nor, later, a
        // log line); only what follows the last @ is shown.
        if let Some((_, host)) = broker.rsplit_once('@') {
            problems.push(format!(
                "health.kafka.brokers: the address of broker {host} holds user information (user:password@); give only host:port and put the credentials in health.kafka.sasl"
            ));
            continue;
        }
        let ok = broker.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok || broker.contains(char::is_whitespace) || broker.contains('/') {
            problems.push(format!(
                "health.kafka.brokers: \"{broker}\" is not a broker address such as kafka-0.example.net:9092"
            ));
        }
    }
    let topic_prefix = section.text("topic_prefix", problems).map_or_else(
        || DEFAULT_TOPIC_PREFIX.to_string(),
        |t| t.trim().to_string(),
    );
    let tls_ca_cert = section
        .section("tls", keys::HEALTH_KAFKA_TLS, problems)
        .and_then(|tls| {
            let pem = tls.text("ca_cert", problems);
            if pem
                .as_deref()
                .is_none_or(|p| !p.contains("-----BEGIN CERTIFICATE-----"))
            {
                problems.push(
                    "health.kafka.tls.ca_cert must be the PEM certificate (-----BEGIN CERTIFICATE----- ...) of the CA that signed the brokers' certificates"
                        .to_string(),
                );
            }
            pem
        });
    let sasl = section
        .section("sasl", keys::HEALTH_KAFKA_SASL, problems)
        .and_then(|s| sasl(&s, problems));
    KafkaConfig {
        brokers,
        topic_prefix,
        tls_ca_cert,
        sasl,
    }
}

fn sasl(section: &Section<'_>, problems: &mut Problems) -> Option<SaslConfig> {
    let missing = section.missing(&["username", "password"]);
    if !missing.is_empty() {
        problems.push(format!(
            "Missing values for health.kafka.sasl: {}",
            missing.join(", ")
        ));
    }
    let mechanism = match section
        .text("mechanism", problems)
        .map(|m| m.trim().to_ascii_uppercase())
        .as_deref()
    {
        None | Some("PLAIN") => SaslMechanism::Plain,
        Some("SCRAM-SHA-256") => SaslMechanism::ScramSha256,
        Some("SCRAM-SHA-512") => SaslMechanism::ScramSha512,
        Some(other) => {
            problems.push(format!(
                "health.kafka.sasl.mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not \"{other}\""
            ));
            SaslMechanism::Plain
        }
    };
    let username = section.text("username", problems)?;
    let password = section.secret("password", problems)?;
    Some(SaslConfig {
        mechanism,
        username,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_interval;
    use std::time::Duration;

    #[test]
    fn intervals_take_seconds_minutes_and_hours() {
        assert_eq!(parse_interval("300"), Some(Duration::from_mins(5)));
        assert_eq!(parse_interval("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_interval("5m"), Some(Duration::from_mins(5)));
        assert_eq!(parse_interval("2h"), Some(Duration::from_hours(2)));
        assert_eq!(parse_interval("5 m"), None);
        assert_eq!(parse_interval("1d"), None);
        assert_eq!(parse_interval("-1"), None);
        assert_eq!(parse_interval(""), None);
    }
}
