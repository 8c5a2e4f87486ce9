//! The YAML configuration: a superset of the original release's `backup.yml`.
//!
//! [`load`] and [`parse`] read the whole file, check everything, and either return a
//! [`Config`] or a [`ConfigError`] listing every problem at once, each as one line
//! `Invalid config - <problem>.` (followed by `missing_properties_message` when a value is
//! missing). A key that no section knows is a problem too. Secrets are [`Secret`]s and
//! never appear in `Debug` output or in problems.
//!
//! Paths: the encryption key files and the API's `bearer_tokens_file` and TLS files, when
//! relative, are resolved against the configuration file's directory by [`load`] (against
//! the working directory by [`parse`]). Every other path is kept as written, so relative
//! ones are relative to the working directory, as in the original.

pub mod alerts;
mod destination;
mod drill;
mod encryption;
mod error;
pub mod file_mode;
mod health;
mod immutability;
mod keys;
mod model;
mod read;
mod retention;
mod section;
#[cfg(test)]
mod tests;
mod timing;

use std::io::Read as _;
use std::path::Path;

pub use drill::DrillConfig;
pub use error::ConfigError;
#[allow(unused_imports)]
pub use health::{
    DEFAULT_HEALTH_INTERVAL, DEFAULT_TOPIC_PREFIX, HealthConfig, KafkaConfig, SaslConfig,
    SaslMechanism,
};
pub use read::is_loopback;
// The whole model is the module's interface; the command line uses what it needs.
#[allow(unused_imports)]
pub use model::{
    ApiConfig, AzureAuth, AzureConfig, CloudControllerConfig, Config, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MISSING_PROPERTIES_MESSAGE, DEFAULT_PARACHUTE_THRESHOLD, DestinationConfig,
    DestinationKind, GcsConfig, LocalConfig, MetricsConfig, RestoreConfig, S3Config, S3Credentials,
    ScpConfig, ServerSideEncryption, TlsConfig, UaaConfig,
};
#[allow(unused_imports)]
pub use service_backup_core::secret::Secret;

/// Reads, parses and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let unreadable = |why: String| ConfigError::new(vec![why], DEFAULT_MISSING_PROPERTIES_MESSAGE);
    // One byte past the limit is enough to refuse the file: a huge one is not read whole.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| {
            file.take(read::MAX_CONFIG_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| {
            unreadable(service_backup_core::Error::io("read config file", path, e).to_string())
        })?;
    if bytes.len() > read::MAX_CONFIG_BYTES {
        return Err(unreadable(read::too_long()));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        unreadable(format!(
            "cannot read config file {}: it is not UTF-8 text",
            path.display()
        ))
    })?;
    // Every problem at once: the file's mode with those of its content.
    let early = file_mode::config_file_problem(path).into_iter().collect();
    let mut config = read::from_text(&text, path.parent(), early)?;
    config.source_path = Some(path.to_path_buf());
    Ok(config)
}

/// Parses and validates configuration text; relative key files are taken from the
/// working directory.
pub fn parse(yaml: &str) -> Result<Config, ConfigError> {
    read::from_text(yaml, None, Vec::new())
}
