//! The keys each section of the configuration knows; [`Section::known`] refuses the others.
//!
//! A key that nothing reads is refused rather than ignored: a misspelled `retention` or
//! `encryption` would otherwise silently turn pruning or encryption off.
//!
//! [`Section::known`]: super::section::Section::known

/// The top level: the original's keys, ours, and the original's keys that no longer do
/// anything ([`IGNORED`]).
pub(super) const TOP: &[&str] = &[
    "destinations",
    "source_folder",
    "source_executable",
    "cleanup_executable",
    "cron_schedule",
    "exit_if_in_progress",
    "catch_up",
    "cron_jitter",
    "backup_window",
    "catalog_full_refresh",
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
    "verify_schedule",
    "restore_check_executable",
    "restore_check_timeout",
    "retention",
    "api",
    "aws_cli_path",
    "azure_cli_path",
    "backup_user",
    "alerts",
    "health",
];

/// Keys of the original release that are accepted and no longer do anything.
pub(super) const IGNORED: [&str; 3] = ["aws_cli_path", "azure_cli_path", "backup_user"];

/// Each item of `destinations`.
pub(super) const DESTINATION: &[&str] = &["type", "name", "config", "retention"];

/// The `config` of a destination of type `type_word` (one of the known types).
pub(super) fn destination_config(type_word: &str) -> &'static [&'static str] {
    match type_word {
        "s3" => &[
            "bucket_name",
            "immutability",
            "bucket_path",
            "access_key_id",
            "secret_access_key",
            "endpoint_url",
            "region",
            "ca_cert",
            "credentials_source",
            "server_side_encryption",
            "kms_key_id",
        ],
        "azure" => &[
            "storage_account",
            "immutability",
            "storage_access_key",
            "container",
            "path",
            "endpoint",
            "blob_store_base_url",
            "sas_token",
            "credentials_source",
            "client_id",
            "ca_cert",
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
            "immutability",
            "project_id",
            "bucket_name",
            "bucket_path",
            "endpoint",
            "credentials_source",
            "ca_cert",
        ],
        _ => &["path"],
    }
}

/// `immutability`, in the `config` of an s3, gcs or azure destination.
pub(super) const IMMUTABILITY: &[&str] = &["mode", "days"];

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

/// `alerts`.
pub(super) const ALERTS: &[&str] = &["product_name", "config", "webhook"];

/// `health`.
pub(super) const HEALTH: &[&str] = &[
    "kafka",
    "file",
    "stdout",
    "interval",
    "tenant_name",
    "space_name",
    "cloud_service_name",
    "service_instance",
];

/// `health.kafka`.
pub(super) const HEALTH_KAFKA: &[&str] = &["brokers", "topic_prefix", "tls", "sasl"];

/// `health.kafka.tls`.
pub(super) const HEALTH_KAFKA_TLS: &[&str] = &["ca_cert"];

/// `health.kafka.sasl`.
pub(super) const HEALTH_KAFKA_SASL: &[&str] = &["mechanism", "username", "password"];

/// `health.service_instance`.
pub(super) const HEALTH_SERVICE_INSTANCE: &[&str] = &["id", "name", "instance_class_name"];

/// `alerts.config`: service-alerts-client's settings as the original's job spec rendered
/// them (release 18 on), with release 17.2's `notification_target` beside `notifications`.
pub(super) const ALERTS_CONFIG: &[&str] = &[
    "cloud_controller",
    "notifications",
    "notification_target",
    "timeout_seconds",
    "skip_ssl_validation",
    "retry_limit",
];

/// `alerts.config.cloud_controller`.
pub(super) const ALERTS_CLOUD_CONTROLLER: &[&str] = &["url", "user", "password"];

/// `alerts.config.notifications`.
pub(super) const ALERTS_NOTIFICATIONS: &[&str] = &[
    "service_url",
    "cf_org",
    "cf_space",
    "reply_to",
    "client_id",
    "client_secret",
];

/// `alerts.config.notification_target` (release 17.2).
pub(super) const ALERTS_NOTIFICATION_TARGET: &[&str] = &[
    "url",
    "skip_ssl_validation",
    "cf_org",
    "cf_space",
    "reply_to",
    "authentication",
    "retry_limit",
];

/// `alerts.config.notification_target.authentication`.
pub(super) const ALERTS_AUTHENTICATION: &[&str] = &["uaa"];

/// `alerts.config.notification_target.authentication.uaa`.
pub(super) const ALERTS_UAA: &[&str] = &["url", "client_id", "client_secret"];

/// `alerts.webhook`.
pub(super) const ALERTS_WEBHOOK: &[&str] = &[
    "url",
    "headers",
    "ca_cert",
    "timeout_seconds",
    "retry_limit",
];

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
