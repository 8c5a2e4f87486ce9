//! `immutability:` in the config of s3, gcs and azure destinations: values and bad input.

use service_backup_core::destination::{Immutability, LockMode};

use super::super::parse;
use super::problems;

const GCS: &str = "service_account_json: '{}', project_id: p, bucket_name: b";
const AZURE: &str = "storage_account: a, storage_access_key: k, container: c, path: p";
const S3: &str = "bucket_name: b, bucket_path: p, access_key_id: a, secret_access_key: s";

fn with(type_word: &str, settings: &str, lock: &str) -> String {
    format!(
        "destinations:\n- type: {type_word}\n  name: d\n  config: {{{settings}, immutability: {lock}}}\nsource_folder: /s\ncron_schedule: '@daily'\n"
    )
}

#[test]
fn immutability_is_read_for_each_store_that_locks() {
    for (type_word, settings) in [("s3", S3), ("gcs", GCS), ("azure", AZURE)] {
        let config = parse(&with(type_word, settings, "{mode: Compliance, days: '30'}"))
            .unwrap_or_else(|e| panic!("{type_word}: {e}"));
        assert_eq!(
            config.destinations[0].immutability,
            Some(Immutability {
                mode: LockMode::Compliance,
                days: 30
            }),
            "{type_word}"
        );
    }
    let config = parse(&with("s3", S3, "{mode: governance, days: 36500}")).unwrap();
    assert_eq!(
        config.destinations[0].immutability.map(|i| i.mode),
        Some(LockMode::Governance)
    );
    let config = parse(&with("s3", S3, "null")).unwrap();
    assert_eq!(config.destinations[0].immutability, None, "null is absent");
}

#[test]
fn bad_immutability_values_are_named() {
    let line = |p: &str| format!("Invalid config - s3 destination \"d\": {p}.");
    let table = [
        (
            "{mode: legal-hold, days: 3}",
            vec![line(
                "immutability.mode must be governance or compliance, not \"legal-hold\"",
            )],
        ),
        (
            "{mode: governance, days: 0}",
            vec![line(
                "immutability.days must be a whole number of days from 1 to 36500, not 0",
            )],
        ),
        (
            "{mode: compliance, days: 36501}",
            vec![line(
                "immutability.days must be a whole number of days from 1 to 36500, not 36501",
            )],
        ),
        (
            "{mode: compliance, days: 1.5}",
            vec![line(
                "immutability.days must be a whole number of days from 1 to 36500, not 1.5",
            )],
        ),
        (
            "{days: 3}",
            vec![line(
                "immutability.mode is missing: give governance or compliance",
            )],
        ),
        (
            "{mode: governance}",
            vec![line(
                "immutability.days is missing: give how many days each backup stays locked (1 to 36500)",
            )],
        ),
        (
            "30",
            vec![line(
                "immutability must be a mapping such as {mode: governance, days: 30}, not a number",
            )],
        ),
        (
            "{mode: governance, days: 3, until: 2030}",
            vec![line(
                "unknown key destinations[0].config.immutability.until; the keys here are mode, days",
            )],
        ),
    ];
    for (lock, expected) in table {
        assert_eq!(problems(&with("s3", S3, lock)), expected, "{lock}");
    }
}

#[test]
fn only_stores_that_lock_know_immutability() {
    let yaml = "destinations:\n- type: local\n  name: d\n  config: {path: /b, immutability: {mode: governance, days: 3}}\nsource_folder: /s\ncron_schedule: '@daily'\n";
    let shown = problems(yaml);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(
        shown[0].contains("unknown key destinations[0].config.immutability"),
        "{shown:?}"
    );
}
