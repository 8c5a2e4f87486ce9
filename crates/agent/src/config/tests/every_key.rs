//! The fixture of every key: it holds each key that a section knows, and it is valid, so
//! the check of unknown keys refuses no real key.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;

use serde_norway::{Mapping, Value};

use super::super::keys;
use super::super::load;
use super::fixture;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const PREVIOUS: &str = "//////////////////////////////////////////8=";

fn keys_of(value: Option<&Value>) -> BTreeSet<String> {
    value
        .and_then(Value::as_mapping)
        .map(|map| {
            map.keys()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The keys of `known` that `found` lacks, named with `place`.
fn lacking(place: &str, known: &[&str], found: &BTreeSet<String>) -> Vec<String> {
    known
        .iter()
        .filter(|key| !found.contains(**key))
        .map(|key| format!("{place}{key}"))
        .collect()
}

#[test]
fn the_fixture_holds_every_known_key() {
    let text = std::fs::read_to_string(fixture("every_key_of_ours.yml")).expect("fixture");
    let top: Mapping = serde_norway::from_str(&text).expect("YAML");
    let get = |key: &str| top.get(key);
    // `backup_window` cannot stand beside `cron_jitter`: the config tests cover it.
    let top_keys: Vec<&str> = keys::TOP
        .iter()
        .copied()
        .filter(|k| *k != "backup_window")
        .collect();
    let mut missing = lacking("", &top_keys, &keys_of(Some(&Value::Mapping(top.clone()))));
    let destinations = get("destinations")
        .and_then(Value::as_sequence)
        .expect("destinations");
    let mut outer = BTreeSet::new();
    for type_word in ["s3", "azure", "scp", "gcs", "local"] {
        let mut config = BTreeSet::new();
        for item in destinations {
            outer.extend(keys_of(Some(item)));
            if item.get("type").and_then(Value::as_str) == Some(type_word) {
                config.extend(keys_of(item.get("config")));
            }
        }
        missing.extend(lacking(
            &format!("{type_word} config."),
            keys::destination_config(type_word),
            &config,
        ));
    }
    missing.extend(lacking("destinations[].", keys::DESTINATION, &outer));
    // An inline `key` cannot stand beside `key_file`: the encryption tests cover it.
    let encryption: Vec<&str> = keys::ENCRYPTION
        .iter()
        .copied()
        .filter(|k| *k != "key")
        .collect();
    missing.extend(lacking(
        "encryption.",
        &encryption,
        &keys_of(get("encryption")),
    ));
    missing.extend(lacking("restore.", keys::RESTORE, &keys_of(get("restore"))));
    missing.extend(lacking(
        "retention.",
        keys::RETENTION,
        &keys_of(get("retention")),
    ));
    let api = get("api");
    missing.extend(lacking("api.", keys::API, &keys_of(api)));
    let in_api = |key: &str| api.and_then(|a| a.get(key));
    missing.extend(lacking("api.tls.", keys::API_TLS, &keys_of(in_api("tls"))));
    missing.extend(lacking(
        "api.metrics.",
        keys::API_METRICS,
        &keys_of(in_api("metrics")),
    ));
    // `token_keys_url` cannot stand beside `jwks_url` (the same keys): the config tests
    // cover it.
    let uaa: Vec<&str> = keys::API_UAA
        .iter()
        .copied()
        .filter(|k| *k != "token_keys_url")
        .collect();
    missing.extend(lacking("api.uaa.", &uaa, &keys_of(in_api("uaa"))));
    missing.extend(lacking(
        "api.cloud_controller.",
        keys::API_CLOUD_CONTROLLER,
        &keys_of(in_api("cloud_controller")),
    ));
    let alerts = get("alerts");
    missing.extend(lacking("alerts.", keys::ALERTS, &keys_of(alerts)));
    let config = alerts.and_then(|a| a.get("config"));
    let in_config = |key: &str| config.and_then(|c| c.get(key));
    missing.extend(lacking(
        "alerts.config.",
        keys::ALERTS_CONFIG,
        &keys_of(config),
    ));
    missing.extend(lacking(
        "alerts.config.cloud_controller.",
        keys::ALERTS_CLOUD_CONTROLLER,
        &keys_of(in_config("cloud_controller")),
    ));
    missing.extend(lacking(
        "alerts.config.notifications.",
        keys::ALERTS_NOTIFICATIONS,
        &keys_of(in_config("notifications")),
    ));
    let target = in_config("notification_target");
    missing.extend(lacking(
        "alerts.config.notification_target.",
        keys::ALERTS_NOTIFICATION_TARGET,
        &keys_of(target),
    ));
    let authentication = target.and_then(|t| t.get("authentication"));
    missing.extend(lacking(
        "alerts.config.notification_target.authentication.",
        keys::ALERTS_AUTHENTICATION,
        &keys_of(authentication),
    ));
    missing.extend(lacking(
        "alerts.config.notification_target.authentication.uaa.",
        keys::ALERTS_UAA,
        &keys_of(authentication.and_then(|a| a.get("uaa"))),
    ));
    missing.extend(lacking(
        "alerts.webhook.",
        keys::ALERTS_WEBHOOK,
        &keys_of(alerts.and_then(|a| a.get("webhook"))),
    ));
    let health = get("health");
    missing.extend(lacking("health.", keys::HEALTH, &keys_of(health)));
    let in_health = |key: &str| health.and_then(|h| h.get(key));
    let kafka = in_health("kafka");
    missing.extend(lacking(
        "health.kafka.",
        keys::HEALTH_KAFKA,
        &keys_of(kafka),
    ));
    let in_kafka = |key: &str| kafka.and_then(|k| k.get(key));
    missing.extend(lacking(
        "health.kafka.tls.",
        keys::HEALTH_KAFKA_TLS,
        &keys_of(in_kafka("tls")),
    ));
    missing.extend(lacking(
        "health.kafka.sasl.",
        keys::HEALTH_KAFKA_SASL,
        &keys_of(in_kafka("sasl")),
    ));
    missing.extend(lacking(
        "health.service_instance.",
        keys::HEALTH_SERVICE_INSTANCE,
        &keys_of(in_health("service_instance")),
    ));
    assert!(missing.is_empty(), "the fixture lacks {missing:?}");
}

#[test]
fn the_fixture_of_every_key_is_valid_beside_its_key_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, key) in [("backup.key", KEY), ("previous.key", PREVIOUS)] {
        let path = dir.path().join(name);
        std::fs::write(&path, key).expect("write key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let path = dir.path().join("every_key_of_ours.yml");
    std::fs::copy(fixture("every_key_of_ours.yml"), &path).expect("copy");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.destinations.len(), 7);
    assert_eq!(config.keyring.expect("keyring").ids().len(), 2);
    assert_eq!(config.compression_level, 9);
    let api = config.api.expect("api");
    assert_eq!(
        (api.max_connections, api.metrics.parachute_threshold),
        (64, 90)
    );
    assert_eq!(api.metrics.node.as_deref(), Some("kafka-0"));
    assert_eq!(api.metrics.org_guid.as_deref(), Some("3b2d8c5e-org"));
    assert_eq!(
        config.destinations[0].retention.and_then(|p| p.keep_last),
        Some(3)
    );
    assert_eq!(config.retention.and_then(|p| p.keep_monthly), Some(6));
    assert!(config.catch_up);
    assert_eq!(
        config.catalog_full_refresh,
        std::time::Duration::from_hours(12)
    );
    assert_eq!(
        config.spread,
        Some(crate::schedule::Spread::Jitter(chrono::TimeDelta::minutes(
            30
        )))
    );
}
