//! The keys each section of the configuration knows; [`Section::known`] refuses the others.
//!
//! A key that nothing reads is refused rather than ignored: a misspelled `retention` or
//! `encryption` would otherwise silently turn pruning or encryption off.
//!
//! [`Section::known`]: super::section::Section::known

use serde_norway::Value;

use super::section::{Problems, check_mapping, kind_of, untagged};

/// The top level: the original's keys, ours, and the original's keys that no longer do
/// anything ([`IGNORED`]).
pub(super) const TOP: &[&str] = &[
    "destinations",
    "source_folder",
    "source_executable",
    "cleanup_executable",
    "cron_schedule",
    "exit_if_in_progress",
    "service_identifier_executable",
    "missing_properties_message",
    "deployment_name",
    "add_deployment_name_to_backup_path",
    "encryption",
    "compression",
    "compression_level",
    "state_dir",
    "instance_id",
    "restore",
    "retention",
    "api",
    "aws_cli_path",
    "azure_cli_path",
    "backup_user",
    "alerts",
];

/// Keys of the original release that are accepted and no longer do anything.
pub(super) const IGNORED: [&str; 4] = ["aws_cli_path", "azure_cli_path", "backup_user", "alerts"];

/// Each item of `destinations`.
pub(super) const DESTINATION: &[&str] = &["type", "name", "config", "retention"];

/// The `config` of a destination of type `type_word` (one of the known types).
pub(super) fn destination_config(type_word: &str) -> &'static [&'static str] {
    match type_word {
        "s3" => &[
            "bucket_name",
            "bucket_path",
            "access_key_id",
            "secret_access_key",
            "endpoint_url",
            "region",
            "ca_cert",
        ],
        "azure" => &[
            "storage_account",
            "storage_access_key",
            "container",
            "path",
            "endpoint",
            "blob_store_base_url",
        ],
        "scp" => &[
            "server",
            "user",
            "destination",
            "key",
            "port",
            "fingerprint",
        ],
        "gcs" => &[
            "service_account_json",
            "project_id",
            "bucket_name",
            "bucket_path",
            "endpoint",
        ],
        _ => &["path"],
    }
}

/// `encryption`.
pub(super) const ENCRYPTION: &[&str] = &["key_file", "key", "previous_key_files", "recipients"];

/// `retention`, at the top and per destination.
pub(super) const RETENTION: &[&str] = &[
    "keep_last",
    "keep_days",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
];

/// `restore`.
pub(super) const RESTORE: &[&str] = &["target_folder", "restore_executable"];

/// `api`.
pub(super) const API: &[&str] = &[
    "listen",
    "bearer_tokens_file",
    "tls",
    "allow_plaintext",
    "max_connections",
    "metrics",
    "uaa",
    "cloud_controller",
];

/// `api.uaa`.
pub(super) const API_UAA: &[&str] = &[
    "jwks_url",
    "token_keys_url",
    "issuer",
    "audience",
    "required_scopes",
    "leeway_seconds",
    "ca_cert",
];

/// `api.cloud_controller`.
pub(super) const API_CLOUD_CONTROLLER: &[&str] =
    &["url", "service_instance_guid", "cache_seconds", "ca_cert"];

/// `api.tls`.
pub(super) const API_TLS: &[&str] = &["cert_file", "key_file"];

/// `api.metrics`.
pub(super) const API_METRICS: &[&str] = &[
    "namespace",
    "org_guid",
    "space_guid",
    "instance_guid",
    "internal_instance_name",
    "internal_service_name",
    "node",
    "parachute_threshold",
];

/// The shape of a block whose values are not read, only its keys checked.
pub(super) enum Shape {
    /// Any value.
    Value,
    /// A mapping of these keys (or nothing).
    Map(&'static [(&'static str, Shape)]),
}

/// `alerts`, as the original's job spec rendered it (service-alerts-client's config from
/// release 18 on), with release 17.2's `notification_target` form beside `notifications`.
pub(super) const ALERTS: Shape = Shape::Map(&[
    ("product_name", Shape::Value),
    (
        "config",
        Shape::Map(&[
            (
                "cloud_controller",
                Shape::Map(&[
                    ("url", Shape::Value),
                    ("user", Shape::Value),
                    ("password", Shape::Value),
                ]),
            ),
            (
                "notifications",
                Shape::Map(&[
                    ("service_url", Shape::Value),
                    ("cf_org", Shape::Value),
                    ("cf_space", Shape::Value),
                    ("reply_to", Shape::Value),
                    ("client_id", Shape::Value),
                    ("client_secret", Shape::Value),
                ]),
            ),
            (
                "notification_target",
                Shape::Map(&[
                    ("url", Shape::Value),
                    ("skip_ssl_validation", Shape::Value),
                    ("cf_org", Shape::Value),
                    ("cf_space", Shape::Value),
                    ("reply_to", Shape::Value),
                    (
                        "authentication",
                        Shape::Map(&[(
                            "uaa",
                            Shape::Map(&[
                                ("url", Shape::Value),
                                ("client_id", Shape::Value),
                                ("client_secret", Shape::Value),
                            ]),
                        )]),
                    ),
                ]),
            ),
            ("timeout_seconds", Shape::Value),
            ("skip_ssl_validation", Shape::Value),
        ]),
    ),
]);

/// Checks the keys of `value` (found at `path`, e.g. `alerts`) against `shape`, at every
/// level; values are never quoted (the block holds passwords).
pub(super) fn check_shape(value: &Value, shape: &Shape, path: &str, problems: &mut Problems) {
    let Shape::Map(entries) = shape else {
        return;
    };
    let map = match untagged(value) {
        Value::Null => return,
        Value::Mapping(map) => map,
        other => {
            problems.push(format!(
                "{path} must be a mapping of settings, not {}",
                kind_of(other)
            ));
            return;
        }
    };
    let known: Vec<&str> = entries.iter().map(|(key, _)| *key).collect();
    check_mapping(map, &known, "", &format!("{path}."), problems);
    for (key, child) in *entries {
        if let Some(value) = map.get(*key) {
            check_shape(value, child, &format!("{path}.{key}"), problems);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::section::closest;
    use super::*;

    #[test]
    fn typos_find_their_key_and_strangers_find_none() {
        assert_eq!(closest("retension", TOP), Some("retention"));
        assert_eq!(closest("compresion", TOP), Some("compression"));
        assert_eq!(closest("state_dirr", TOP), Some("state_dir"));
        assert_eq!(closest("encyption", TOP), Some("encryption"));
        assert_eq!(
            closest("previous_keyfiles", ENCRYPTION),
            Some("previous_key_files")
        );
        assert_eq!(
            closest("parachute_treshold", API_METRICS),
            Some("parachute_threshold")
        );
        assert_eq!(
            closest("bucket_nme", destination_config("s3")),
            Some("bucket_name")
        );
        assert_eq!(closest("Source_Folder", TOP), Some("source_folder"));
        assert_eq!(closest("colour", TOP), None);
        assert_eq!(closest("zzz", RETENTION), None);
        assert_eq!(closest("keep_everything", RETENTION), None);
        assert_eq!(closest("tls_cert", API), None);
    }

    #[test]
    fn every_ignored_key_is_known() {
        for key in IGNORED {
            assert!(TOP.contains(&key), "{key}");
        }
    }
}
