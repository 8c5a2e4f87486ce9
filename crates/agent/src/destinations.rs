//! Builds the configured destinations (the store, its name and the path layout in it) and
//! finds backups in them; [`probe`] checks that one can be written, listed, read and
//! deleted.

pub mod probe;

use std::sync::Arc;

use futures::stream::{BoxStream, StreamExt as _};
#[cfg(feature = "azure")]
use service_backup_azure::{AzureCredentials, AzureDestination, AzureSettings, ManagedIdentity};
use service_backup_core::catalog::{BackupEntry, list_backups};
use service_backup_core::destination::{Destination, LocalDestination};
#[cfg(feature = "azure")]
use service_backup_core::destination::{Immutability, RetryPolicy};
use service_backup_core::layout::Layout;
use service_backup_core::{Error, ErrorKind, Result};
#[cfg(feature = "gcs")]
use service_backup_gcs::{GcsDestination, GcsSettings};
#[cfg(feature = "s3")]
use service_backup_s3::{S3Destination, S3Settings};
#[cfg(feature = "scp")]
use service_backup_scp::{ScpDestination, ScpSettings};

#[cfg(feature = "gcs")]
use crate::config::GcsConfig;
#[cfg(feature = "s3")]
use crate::config::S3Config;
#[cfg(feature = "scp")]
use crate::config::ScpConfig;
#[cfg(feature = "azure")]
use crate::config::{AzureAuth, AzureConfig};
use crate::config::{Config, DestinationConfig, DestinationKind};
#[cfg(feature = "scp")]
use crate::context;

/// A destination ready to use: its name in logs and on the command line, the store, and
/// where this agent's backups live in it.
pub use service_backup_core::ops::backup::Target;

/// A destination with its complete backups.
pub type Listing = (Target, Vec<BackupEntry>);

/// The layout of a destination: its path setting, then the deployment name if asked for.
fn layout(config: &Config, path: &str) -> Layout {
    let deployment = config
        .deployment_name
        .as_deref()
        .filter(|_| config.add_deployment_name_to_backup_path);
    Layout::new(path, deployment)
}

/// The file in `state_dir` that records the host keys of `scp` servers on first use.
pub const KNOWN_HOSTS_FILE: &str = "known_hosts";

/// An `scp` destination; it connects on first use, so building it does no I/O. Without a
/// `fingerprint`, host keys are trusted on first use and recorded in `state_dir`, where every
/// command of this configuration finds them.
#[cfg(feature = "scp")]
fn scp_destination(config: &Config, scp: &ScpConfig) -> Result<ScpDestination> {
    let mut settings = ScpSettings::new(&scp.server, &scp.user, &scp.destination, scp.key.clone());
    settings.port = scp.port;
    settings.fingerprint.clone_from(&scp.fingerprint);
    settings.known_hosts = Some(context::state_dir(config).join(KNOWN_HOSTS_FILE));
    ScpDestination::new(settings)
}

/// Builds one destination.
pub fn build(config: &Config, dest: &DestinationConfig) -> Result<Target> {
    let name = dest.display_name();
    // Each arm builds its store; the error of any names the destination once, below.
    let built: Result<(Arc<dyn Destination>, Layout)> = match &dest.kind {
        DestinationKind::Local(local) => Ok((
            Arc::new(LocalDestination::new(&local.path)),
            layout(config, ""),
        )),
        #[cfg(feature = "azure")]
        DestinationKind::Azure(azure) => azure_destination(azure, dest.immutability).map(|d| {
            (
                Arc::new(d) as Arc<dyn Destination>,
                layout(config, &azure.path),
            )
        }),
        // Backups go straight under `destination`, as the original's did: it is the path.
        #[cfg(feature = "scp")]
        DestinationKind::Scp(scp) => scp_destination(config, scp)
            .map(|d| (Arc::new(d) as Arc<dyn Destination>, layout(config, ""))),
        // Sends no request: the client connects on first use.
        #[cfg(feature = "s3")]
        DestinationKind::S3(s3) => S3Destination::new(&S3Settings {
            immutability: dest.immutability,
            ..s3_settings(s3)
        })
        .map(|d| {
            (
                Arc::new(d) as Arc<dyn Destination>,
                layout(config, &s3.bucket_path),
            )
        }),
        // Checks the service account key; sends no request until first use.
        #[cfg(feature = "gcs")]
        DestinationKind::Gcs(gcs) => GcsDestination::new(GcsSettings {
            immutability: dest.immutability,
            ..gcs_settings(gcs)
        })
        .map(|d| {
            let path = gcs.bucket_path.as_deref().unwrap_or("");
            (Arc::new(d) as Arc<dyn Destination>, layout(config, path))
        }),
        // A destination whose feature this build was made without.
        #[cfg(not(all(feature = "s3", feature = "azure", feature = "gcs", feature = "scp")))]
        other => return Err(not_in_this_build(&name, other.type_word())),
    };
    let (destination, layout) = built.map_err(|e| e.context(format!("destination {name}")))?;
    Ok(Target {
        name,
        destination,
        layout,
    })
}

/// The error for a destination of type `word` in a build without its feature.
#[cfg(not(all(feature = "s3", feature = "azure", feature = "gcs", feature = "scp")))]
fn not_in_this_build(name: &str, word: &str) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("destination {name}: this build of service-backup has no {word} destination"),
    )
    .with_hint(format!(
        "use a build with the `{word}` feature (the default build has every destination)"
    ))
}

/// The `azure` destination of `config`, its blobs locked by `immutability`; it connects on
/// first use.
#[cfg(feature = "azure")]
fn azure_destination(
    config: &AzureConfig,
    immutability: Option<Immutability>,
) -> Result<AzureDestination> {
    let credentials = match &config.credentials {
        AzureAuth::AccessKey(key) => AzureCredentials::AccessKey(key.clone()),
        AzureAuth::SasToken(token) => AzureCredentials::SasToken(token.clone()),
        AzureAuth::ManagedIdentity { client_id } => {
            AzureCredentials::ManagedIdentity(ManagedIdentity {
                client_id: client_id.clone(),
                endpoint: None,
            })
        }
    };
    AzureDestination::new(AzureSettings {
        storage_account: config.storage_account.clone(),
        credentials,
        container: config.container.clone(),
        endpoint: config.blob_endpoint(),
        ca_cert: config.ca_cert.clone(),
        immutability,
        retry: RetryPolicy::default(),
        stall_timeout: service_backup_azure::DEFAULT_STALL_TIMEOUT,
    })
}

/// The settings of an `s3` destination, with the default retry policy and timeouts.
#[cfg(feature = "s3")]
fn s3_settings(s3: &S3Config) -> S3Settings {
    use crate::config::{S3Credentials, ServerSideEncryption};
    use service_backup_s3::ServerSideEncryption as Sse;
    let mut settings = match &s3.credentials {
        S3Credentials::Static {
            access_key_id,
            secret_access_key,
        } => S3Settings::new(&s3.bucket_name, access_key_id, secret_access_key.clone()),
        S3Credentials::EnvOrInstanceProfile => S3Settings::from_environment(&s3.bucket_name),
    };
    settings.server_side_encryption = s3.server_side_encryption.as_ref().map(|e| match e {
        ServerSideEncryption::Aes256 => Sse::Aes256,
        ServerSideEncryption::Kms { key_id } => Sse::Kms {
            key_id: key_id.clone(),
        },
    });
    settings.endpoint_url.clone_from(&s3.endpoint_url);
    settings.region.clone_from(&s3.region);
    settings.ca_cert.clone_from(&s3.ca_cert);
    settings
}

/// The settings of a `gcs` destination, with the default chunk size and retry policy.
#[cfg(feature = "gcs")]
fn gcs_settings(gcs: &GcsConfig) -> GcsSettings {
    let mut settings = match &gcs.service_account_json {
        Some(key) => GcsSettings::new(
            key.clone(),
            &gcs.project_id,
            &gcs.bucket_name,
            gcs.endpoint.clone(),
        ),
        None => GcsSettings::from_metadata_server(
            &gcs.project_id,
            &gcs.bucket_name,
            gcs.endpoint.clone(),
        ),
    };
    settings.ca_cert.clone_from(&gcs.ca_cert);
    settings
}

/// Builds every destination, or only the one named `only`.
pub fn select(config: &Config, only: Option<&str>) -> Result<Vec<Result<Target>>> {
    let chosen: Vec<&DestinationConfig> = config
        .destinations
        .iter()
        .filter(|d| only.is_none_or(|n| d.display_name() == n))
        .collect();
    if chosen.is_empty() {
        let names: Vec<String> = config
            .destinations
            .iter()
            .map(DestinationConfig::display_name)
            .collect();
        return Err(match only {
            Some(n) => Error::new(
                ErrorKind::Usage,
                format!("there is no destination named {n}"),
            )
            .with_hint(format!("configured destinations: {}", names.join(", "))),
            None => Error::new(
                ErrorKind::Config,
                "no destination is configured (backups are disabled)",
            ),
        });
    }
    Ok(chosen.into_iter().map(|d| build(config, d)).collect())
}

/// Every destination (or only the one named `only`) with its complete backups, in
/// configuration order, each listed only when the stream reaches it; a destination that
/// cannot be built or listed yields its error, which names it.
pub fn backups(config: &Config, only: Option<&str>) -> Result<BoxStream<'static, Result<Listing>>> {
    let targets = select(config, only)?;
    Ok(futures::stream::iter(targets)
        .then(|target| async move {
            let target = target?;
            let entries = list_backups(&*target.destination, &target.layout)
                .await
                .map_err(|e| e.context(format!("destination {}", target.name)))?;
            Ok((target, entries))
        })
        .boxed())
}

/// The backup `name` in each destination (or only the one named `only`) that has it, in
/// configuration order, each destination listed only when the stream reaches it; one that
/// cannot be built or listed yields its error.
pub fn find_backup(
    config: &Config,
    only: Option<&str>,
    name: &str,
) -> Result<BoxStream<'static, Result<(Target, BackupEntry)>>> {
    let name = name.to_string();
    Ok(backups(config, only)?
        .filter_map(move |listed| {
            let found = match listed {
                Ok((target, entries)) => entries
                    .into_iter()
                    .find(|e| e.manifest.name == name)
                    .map(|entry| Ok((target, entry))),
                Err(e) => Some(Err(e)),
            };
            std::future::ready(found)
        })
        .boxed())
}

#[cfg(all(test, feature = "azure"))]
mod tests {
    #[test]
    fn azure_takes_immutability_from_the_destinations_config() {
        let yaml = "destinations:\n- type: azure\n  name: blobs\n  config: {storage_account: acct, storage_access_key: a2V5, container: c, path: p, immutability: {mode: governance, days: 3}}\nsource_folder: /src\ncron_schedule: '@daily'\n";
        let config = crate::config::parse(yaml).expect("the key is valid for azure");
        let built = super::build(&config, &config.destinations[0]);
        assert!(built.is_ok(), "{:?}", built.err());
    }
}
