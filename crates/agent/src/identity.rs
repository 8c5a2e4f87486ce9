//! Who this agent is: its instance id (configured, else the service identifier's output,
//! else the host name) and its host name.

use service_backup_core::Result;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::executables;

/// The instance id: configured, else the service identifier, else the host name.
pub fn instance_id(config: &Config, identifier: Option<&str>) -> String {
    config
        .instance_id
        .clone()
        .or_else(|| identifier.filter(|s| !s.is_empty()).map(str::to_string))
        .unwrap_or_else(host_name)
}

/// The output of the configured service identifier executable, if one is configured.
pub async fn service_identifier(
    config: &Config,
    cancel: &CancellationToken,
) -> Option<Result<String>> {
    let cmd = config.service_identifier_executable.as_ref()?;
    Some(executables::run("service identifier executable", cmd, cancel).await)
}

/// This agent's instance id, as a backup run would find it (running the service identifier
/// executable if one is configured).
pub async fn this_instance(config: &Config) -> String {
    let identifier = service_identifier(config, &CancellationToken::new())
        .await
        .and_then(|r| {
            r.map_err(|e| tracing::warn!(error = %e, "Service identifier command returned error"))
                .ok()
        });
    instance_id(config, identifier.as_deref())
}

/// The instance id the API serves: configured, else the service identifier's output, else
/// the host name (as a backup run names it).
pub async fn served_instance(config: &Config, cancel: &CancellationToken) -> String {
    let identifier = match config.instance_id {
        Some(_) => None,
        None => service_identifier(config, cancel).await.and_then(|r| {
            r.inspect_err(
                |e| tracing::error!(error = %e, "Service identifier command returned error"),
            )
            .ok()
        }),
    };
    instance_id(config, identifier.as_deref())
}

/// The machine's host name, else `localhost`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
