//! The Kafka sink: a bounded queue of events (newest kept) that a task of its own sends to
//! `<topic_prefix><tenant_name>`, reconnecting with backoff; nothing here ever waits on a
//! backup or makes one wait.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{ClientBuilder, Credentials, SaslConfig as KafkaSasl};
use rskafka::record::Record;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{KafkaConfig, SaslMechanism};

/// How many events wait for the broker at most; older ones are dropped first.
pub const QUEUE_CAPACITY: usize = 100;

/// The longest one connection attempt or one send may take.
const ATTEMPT_BUDGET: Duration = Duration::from_secs(10);

/// The first and the longest wait between attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// What waits to be sent, and how many were dropped since the last send.
#[derive(Default)]
struct Pending {
    events: VecDeque<Vec<u8>>,
    dropped: usize,
}

/// The handle the publisher pushes events into.
#[derive(Clone)]
pub struct KafkaSink {
    pending: Arc<Mutex<Pending>>,
    wake: Arc<Notify>,
}

impl KafkaSink {
    /// Starts the sender for `config`, to `topic`, until `cancel`.
    pub fn start(config: &KafkaConfig, topic: String, cancel: CancellationToken) -> Self {
        let sink = Self {
            pending: Arc::default(),
            wake: Arc::new(Notify::new()),
        };
        tokio::spawn(send_forever(config.clone(), topic, sink.clone(), cancel));
        sink
    }

    /// Queues `event` (one JSON object); never waits.
    pub fn push(&self, event: Vec<u8>) {
        {
            let mut p = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if p.events.len() == QUEUE_CAPACITY {
                p.events.pop_front();
                p.dropped += 1;
            }
            p.events.push_back(event);
        }
        self.wake.notify_one();
    }

    fn front(&self) -> Option<Vec<u8>> {
        self.lock().events.front().cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the front event away after it was sent; returns how many had been dropped.
    fn sent(&self) -> usize {
        let mut p = self.lock();
        p.events.pop_front();
        std::mem::take(&mut p.dropped)
    }
}

/// An error's text with the SASL password, should a library ever quote it, masked.
fn scrubbed(text: &str, config: &KafkaConfig) -> String {
    match &config.sasl {
        Some(s) if !s.password.expose().is_empty() => text.replace(s.password.expose(), "***"),
        _ => text.to_string(),
    }
}

async fn connect(config: &KafkaConfig, topic: &str) -> Result<PartitionClient, String> {
    let mut builder = ClientBuilder::new(config.brokers.clone())
        .client_id("service-backup")
        .backoff_config(rskafka::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
            deadline: Some(ATTEMPT_BUDGET),
        });
    if let Some(pem) = &config.tls_ca_cert {
        builder = builder.tls_config(Arc::new(tls_config(pem)?));
    }
    if let Some(sasl) = &config.sasl {
        let credentials =
            Credentials::new(sasl.username.clone(), sasl.password.expose().to_string());
        builder = builder.sasl_config(match sasl.mechanism {
            SaslMechanism::Plain => KafkaSasl::Plain(credentials),
            SaslMechanism::ScramSha256 => KafkaSasl::ScramSha256(credentials),
            SaslMechanism::ScramSha512 => KafkaSasl::ScramSha512(credentials),
        });
    }
    let client = builder.build().await.map_err(|e| e.to_string())?;
    client
        .partition_client(topic.to_string(), 0, UnknownTopicHandling::Error)
        .await
        .map_err(|e| e.to_string())
}

/// A TLS client configuration that trusts the CA of `pem` alone.
fn tls_config(pem: &str) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("health.kafka.tls.ca_cert: {e:?}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("health.kafka.tls.ca_cert: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

async fn send_forever(
    config: KafkaConfig,
    topic: String,
    sink: KafkaSink,
    cancel: CancellationToken,
) {
    let mut client: Option<PartitionClient> = None;
    let mut wait = BACKOFF.0;
    let mut failing = false;
    loop {
        let Some(event) = sink.front() else {
            tokio::select! {
                () = sink.wake.notified() => continue,
                () = cancel.cancelled() => return,
            }
        };
        let attempt = async {
            if client.is_none() {
                client = Some(connect(&config, &topic).await?);
            }
            let Some(c) = &client else {
                return Err("no connection".to_string());
            };
            let record = Record {
                key: None,
                value: Some(event),
                headers: BTreeMap::new(),
                timestamp: chrono::Utc::now(),
            };
            c.produce(vec![record], Compression::NoCompression)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(ATTEMPT_BUDGET * 2, attempt) => {
                r.unwrap_or_else(|_| Err("the broker did not answer in time".to_string()))
            }
            () = cancel.cancelled() => return,
        };
        match outcome {
            Ok(()) => {
                let dropped = sink.sent();
                if dropped > 0 {
                    tracing::warn!(dropped, topic = %topic, "{dropped} health events were dropped while the Kafka brokers could not be reached (the newest {QUEUE_CAPACITY} were kept)");
                }
                if failing {
                    tracing::info!(topic = %topic, "Health events reach Kafka again");
                    failing = false;
                }
                wait = BACKOFF.0;
            }
            Err(e) => {
                client = None;
                if !failing {
                    tracing::warn!(topic = %topic, error = %scrubbed(&e, &config), "Health events cannot be sent to Kafka; they are kept (the newest {QUEUE_CAPACITY}) and sent when a broker answers");
                    failing = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = cancel.cancelled() => return,
                }
                wait = (wait * 2).min(BACKOFF.1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SaslConfig;
    use service_backup_core::secret::Secret;

    #[test]
    fn the_sasl_password_never_shows_in_an_error() {
        let config = KafkaConfig {
            brokers: vec!["127.0.0.1:1".into()],
            topic_prefix: "health-".into(),
            tls_ca_cert: None,
            sasl: Some(SaslConfig {
                mechanism: SaslMechanism::Plain,
                username: "u".into(),
                password: Secret::new("KAFKA-PASSWORD-1"),
            }),
        };
        assert_eq!(
            scrubbed("auth failed for u:KAFKA-PASSWORD-1", &config),
            "auth failed for u:***"
        );
        assert!(!format!("{config:?}").contains("KAFKA-PASSWORD-1"));
    }

    #[test]
    fn a_ca_cert_that_is_no_certificate_is_refused_not_a_panic() {
        let err = tls_config("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert!(err.contains("health.kafka.tls.ca_cert"), "{err}");
    }

    #[tokio::test]
    async fn a_broker_that_is_down_makes_push_return_at_once() {
        let config = KafkaConfig {
            brokers: vec![format!("127.0.0.1:{}", service_backup_testkit::free_port())],
            topic_prefix: "health-".into(),
            tls_ca_cert: None,
            sasl: None,
        };
        let cancel = CancellationToken::new();
        let sink = KafkaSink::start(&config, "health-t".into(), cancel.clone());
        let start = std::time::Instant::now();
        for i in 0..QUEUE_CAPACITY * 3 {
            sink.push(i.to_string().into_bytes());
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        assert!(sink.lock().events.len() <= QUEUE_CAPACITY);
        cancel.cancel();
    }

    #[test]
    fn a_full_queue_keeps_the_newest_and_counts_the_dropped() {
        let sink = KafkaSink {
            pending: Arc::default(),
            wake: Arc::new(Notify::new()),
        };
        for i in 0..QUEUE_CAPACITY + 5 {
            sink.push(i.to_string().into_bytes());
        }
        assert_eq!(sink.front(), Some(b"5".to_vec()));
        assert_eq!(sink.sent(), 5);
        assert_eq!(sink.sent(), 0);
        assert_eq!(sink.lock().events.len(), QUEUE_CAPACITY - 2);
        assert_eq!(
            sink.lock().events.back(),
            Some(&(QUEUE_CAPACITY + 4).to_string().into_bytes())
        );
    }
}
