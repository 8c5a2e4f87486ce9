//! The configuration as the agent uses it, after loading and validation.

use std::path::PathBuf;

use service_backup_core::compression::Algorithm;
use service_backup_core::destination::Immutability;
use service_backup_core::format::Keyring;
use service_backup_core::retention::Policy;

use crate::schedule::{Schedule, Spread};
use service_backup_core::secret::Secret;

/// The default `missing_properties_message`, as in the original job spec.
pub const DEFAULT_MISSING_PROPERTIES_MESSAGE: &str =
    "Provide these missing fields in your manifest.";

/// A valid configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where backups go; empty means backups are disabled.
    pub destinations: Vec<DestinationConfig>,
    /// The folder that is archived (required when there is a destination).
    pub source_folder: Option<PathBuf>,
    /// Command that dumps the data into `source_folder`; tokens split on spaces.
    pub source_executable: Option<String>,
    /// Command run after a successful upload; tokens split on spaces.
    pub cleanup_executable: Option<String>,
    /// The schedule as written (required when there is a destination).
    pub cron_schedule: Option<String>,
    /// `cron_schedule`, parsed.
    pub schedule: Option<Schedule>,
    /// Reject a backup that comes due while one runs, instead of queueing it.
    pub exit_if_in_progress: bool,
    /// At start, run one backup when the schedule fired since the last success.
    pub catch_up: bool,
    /// How this instance's runs are spread (`cron_jitter` or `backup_window`); `None`: at
    /// the schedule's own times.
    pub spread: Option<Spread>,
    /// How often the catalog of each destination is refreshed by a listing of it whole
    /// (`catalog_full_refresh`), and prunes look for leftovers.
    pub catalog_full_refresh: std::time::Duration,
    /// Command whose output identifies the service instance in logs.
    pub service_identifier_executable: Option<String>,
    /// Text that follows every configuration problem.
    pub missing_properties_message: String,
    /// The BOSH deployment name.
    pub deployment_name: Option<String>,
    /// Put `deployment_name` in the remote backup path.
    pub add_deployment_name_to_backup_path: bool,
    /// The encryption keys (current first); `None`: archives are not encrypted.
    pub keyring: Option<Keyring>,
    /// The files the keys were read from (current and previous), resolved.
    pub key_files: Vec<PathBuf>,
    /// How archives are compressed: gzip (the default) or zstd.
    pub compression: Algorithm,
    /// The level of `compression`: gzip 1 to 9, zstd 1 to 19.
    pub compression_level: u32,
    /// Where the task database lives; `None`: the caller's default beside the config.
    pub state_dir: Option<PathBuf>,
    /// The instance id in backup names and the API; `None`: derived at run time.
    pub instance_id: Option<String>,
    /// Restore settings.
    pub restore: RestoreConfig,
    /// Restore drills: `verify_schedule` and `restore_check_executable`.
    pub drill: super::drill::DrillConfig,
    /// How many backups a prune keeps; `None`: nothing is ever deleted.
    pub retention: Option<Policy>,
    /// The HTTP API; `None`: no API.
    pub api: Option<ApiConfig>,
    /// Where failed backups and recoveries are reported; `None`: nowhere.
    pub alerts: Option<super::alerts::AlertsConfig>,
    /// The health events; `None`: none are published.
    pub health: Option<super::HealthConfig>,
    /// Keys of the original that are present but no longer do anything, in a fixed order.
    pub ignored_keys: Vec<String>,
    /// The file this configuration was loaded from, if any.
    pub source_path: Option<PathBuf>,
}

impl Config {
    /// Whether any destination is configured (otherwise backups are disabled).
    pub fn backups_enabled(&self) -> bool {
        !self.destinations.is_empty()
    }
}

/// One destination: an optional name and its type-specific settings.
#[derive(Clone, Debug)]
pub struct DestinationConfig {
    /// The name given in the configuration, if any.
    pub name: Option<String>,
    /// The type and its settings.
    pub kind: DestinationKind,
    /// This destination's own retention, replacing the top-level one.
    pub retention: Option<Policy>,
    /// The lock put on each archive and manifest written (`config.immutability` of an
    /// s3, gcs or azure destination).
    pub immutability: Option<Immutability>,
}

impl DestinationConfig {
    /// The retention that applies here: its own, else `top`.
    pub fn retention_or(&self, top: Option<Policy>) -> Option<Policy> {
        self.retention.or(top)
    }

    /// The name if set, else the type word (`s3`, `local`…).
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.kind.type_word().to_string())
    }
}

/// A destination's type with its settings.
#[derive(Clone, Debug)]
pub enum DestinationKind {
    /// An S3 or S3-compatible bucket.
    S3(S3Config),
    /// An Azure blob container.
    Azure(AzureConfig),
    /// A directory on an SSH server.
    Scp(ScpConfig),
    /// A Google Cloud Storage bucket.
    Gcs(GcsConfig),
    /// A directory on a mounted file system.
    Local(LocalConfig),
}

impl DestinationKind {
    /// The `type` word of the configuration.
    pub fn type_word(&self) -> &'static str {
        match self {
            Self::S3(_) => "s3",
            Self::Azure(_) => "azure",
            Self::Scp(_) => "scp",
            Self::Gcs(_) => "gcs",
            Self::Local(_) => "local",
        }
    }
}

/// Settings of an `s3` destination.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// The bucket.
    pub bucket_name: String,
    /// The prefix inside the bucket.
    pub bucket_path: String,
    /// Where the credentials come from (`credentials_source`).
    pub credentials: S3Credentials,
    /// How the store encrypts the objects (`server_side_encryption`, `kms_key_id`);
    /// `None`: as the bucket's default says.
    pub server_side_encryption: Option<ServerSideEncryption>,
    /// An S3-compatible endpoint, always with a scheme (`https://` added when absent).
    pub endpoint_url: Option<String>,
    /// The region.
    pub region: Option<String>,
    /// PEM of a private certificate authority to trust.
    pub ca_cert: Option<String>,
}

/// Where the credentials of an `s3` destination come from.
#[derive(Clone, Debug)]
pub enum S3Credentials {
    /// `credentials_source: static` (the default): the keys of the configuration.
    Static {
        /// The access key id.
        access_key_id: String,
        /// The secret access key.
        secret_access_key: Secret,
    },
    /// `credentials_source: env_or_instance_profile`: the SDK's standard chain
    /// (environment, shared files, web identity, instance profile).
    EnvOrInstanceProfile,
}

/// `server_side_encryption` of an `s3` destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerSideEncryption {
    /// `AES256`: SSE-S3.
    Aes256,
    /// `aws:kms`: SSE-KMS under `kms_key_id`, or the account's aws/s3 key.
    Kms {
        /// `kms_key_id`.
        key_id: Option<String>,
    },
}

/// Settings of an `azure` destination.
#[derive(Clone, Debug)]
pub struct AzureConfig {
    /// The storage account.
    pub storage_account: String,
    /// How requests are authorized.
    pub credentials: AzureAuth,
    /// The container.
    pub container: String,
    /// The prefix inside the container.
    pub path: String,
    /// The blob service's full URL: an `endpoint` given with a scheme.
    pub endpoint: Option<String>,
    /// The base domain of the blob service, such as `core.windows.net`: an `endpoint`
    /// without a scheme (the original's meaning), else `blob_store_base_url`.
    pub blob_store_base_url: Option<String>,
    /// PEM of a private certificate authority to trust beside the system's.
    pub ca_cert: Option<String>,
}

/// How the requests of an `azure` destination are authorized.
#[derive(Clone, Debug)]
pub enum AzureAuth {
    /// `storage_access_key`: the account's key (the original's only way).
    AccessKey(Secret),
    /// `sas_token`: a shared access signature.
    SasToken(Secret),
    /// `credentials_source: managed_identity`, with an optional `client_id`.
    ManagedIdentity {
        /// The client id of a user-assigned identity.
        client_id: Option<String>,
    },
}

impl AzureConfig {
    /// The blob service URL: the full `endpoint`, else `https://ACCOUNT.blob.` and the
    /// base domain, else the public Azure cloud's.
    pub fn blob_endpoint(&self) -> String {
        if let Some(endpoint) = &self.endpoint {
            return endpoint.clone();
        }
        let base = self
            .blob_store_base_url
            .as_deref()
            .unwrap_or("core.windows.net");
        if base.contains("://") {
            return base.trim_end_matches('/').to_string();
        }
        format!(
            "https://{}.blob.{}",
            self.storage_account,
            base.trim_matches('/')
        )
    }
}

/// Settings of an `scp` destination.
#[derive(Clone, Debug)]
pub struct ScpConfig {
    /// The SSH server's host name or address.
    pub server: String,
    /// The SSH user.
    pub user: String,
    /// The directory on the server.
    pub destination: String,
    /// The private key (PEM or OpenSSH format).
    pub key: Secret,
    /// The SSH port (22 unless set).
    pub port: u16,
    /// The server's host key fingerprint to pin, if set.
    pub fingerprint: Option<String>,
}

/// Settings of a `gcs` destination.
#[derive(Clone, Debug)]
pub struct GcsConfig {
    /// The service account's JSON key (only its presence is checked here); `None`:
    /// `credentials_source: metadata`, tokens of the VM's service account.
    pub service_account_json: Option<Secret>,
    /// The Google Cloud project.
    pub project_id: String,
    /// The bucket.
    pub bucket_name: String,
    /// The prefix inside the bucket.
    pub bucket_path: Option<String>,
    /// A custom endpoint (an emulator), always with a scheme.
    pub endpoint: Option<String>,
    /// PEM of a private certificate authority to trust.
    pub ca_cert: Option<String>,
}

/// Settings of a `local` destination.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    /// The directory backups are written under.
    pub path: PathBuf,
}

/// Settings of restores.
#[derive(Clone, Debug, Default)]
pub struct RestoreConfig {
    /// Where restores are extracted; `None`: `source_folder`.
    pub target_folder: Option<PathBuf>,
    /// Command run after a restore; tokens split on spaces.
    pub restore_executable: Option<String>,
}

/// Settings of the HTTP API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// The address and port to listen on, such as `127.0.0.1:8443`.
    pub listen: String,
    /// The file of accepted bearer tokens, one a line (optional when `uaa` is set).
    pub bearer_tokens_file: Option<PathBuf>,
    /// The platform's token issuer, whose JWTs are accepted beside the static tokens.
    pub uaa: Option<UaaConfig>,
    /// The platform's Cloud Controller, which decides who may manage the instance.
    pub cloud_controller: Option<CloudControllerConfig>,
    /// TLS, if set; otherwise plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Plain HTTP on an address that is not loopback is accepted (and logged as an error).
    pub allow_plaintext: bool,
    /// The most connections served at once; when all are taken, the one idle the longest
    /// is closed to make room.
    pub max_connections: usize,
    /// What `GET /metrics` reports under which names.
    pub metrics: MetricsConfig,
}

/// The platform's token issuer (`api.uaa`): whose JWTs the API accepts.
#[derive(Clone, Debug)]
pub struct UaaConfig {
    /// Where the signing keys are published (`jwks_url`, or the UAA's `token_keys_url`).
    pub keys_url: String,
    /// The `iss` claim a token must carry.
    pub issuer: String,
    /// The `aud` a token must include, when set.
    pub audience: Option<String>,
    /// Scopes a token must carry, all of them.
    pub required_scopes: Vec<String>,
    /// Seconds of clock difference allowed on `exp` and `nbf`.
    pub leeway_seconds: u64,
    /// PEM of a private CA trusted for `keys_url`, beside the public roots.
    pub ca_cert: Option<String>,
}

/// The default of `api.uaa.leeway_seconds`.
pub const DEFAULT_JWT_LEEWAY_SECONDS: u64 = 30;

/// The platform's Cloud Controller (`api.cloud_controller`): asked whether a token's user
/// may manage the service instance.
#[derive(Clone, Debug)]
pub struct CloudControllerConfig {
    /// The API's base URL, such as `https://api.example.com`.
    pub url: String,
    /// The service instance guid asked about, when it is not the agent's instance id.
    pub service_instance_guid: Option<String>,
    /// Seconds an answer is kept per token.
    pub cache_seconds: u64,
    /// PEM of a private CA trusted for `url`, beside the public roots.
    pub ca_cert: Option<String>,
}

/// The default of `api.cloud_controller.cache_seconds`.
pub const DEFAULT_PERMISSION_CACHE_SECONDS: u64 = 30;

impl ApiConfig {
    /// The warning for plain HTTP on an address other machines reach (only with
    /// `allow_plaintext`), printed by `validate` and logged as an error at start.
    pub fn plaintext_warning(&self) -> Option<String> {
        (self.tls.is_none() && !super::is_loopback(&self.listen)).then(|| {
            format!(
                "api.allow_plaintext is set: the API serves plain HTTP on {}, which other \
                 machines reach, so bearer tokens and downloaded backups cross the network \
                 unencrypted; set api.tls to encrypt them",
                self.listen
            )
        })
    }
}

/// The default of `api.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// The largest `api.max_connections` accepted.
pub const MAX_MAX_CONNECTIONS: usize = 16_384;

/// The used share of a disk, in percent, at which parachute activates by default.
pub const DEFAULT_PARACHUTE_THRESHOLD: u64 = 80;

/// Settings of the API's metrics (`api.metrics`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// The whole path every metric starts with; `None`: the a9s namespace of the parts
    /// below.
    pub namespace: Option<String>,
    /// The Cloud Foundry organization's guid (first part of the a9s namespace).
    pub org_guid: Option<String>,
    /// The Cloud Foundry space's guid.
    pub space_guid: Option<String>,
    /// The service instance's guid; `None`: the instance id served.
    pub instance_guid: Option<String>,
    /// The internal name of the service instance (the BOSH deployment).
    pub internal_instance_name: Option<String>,
    /// The internal name of the service; `None`: `service-backup`.
    pub internal_service_name: Option<String>,
    /// The node; `None`: `deployment_name`, else the host name.
    pub node: Option<String>,
    /// The used share of a disk, in percent, at which parachute activates (0: never),
    /// unless one was set through the API.
    pub parachute_threshold: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            org_guid: None,
            space_guid: None,
            instance_guid: None,
            internal_instance_name: None,
            internal_service_name: None,
            node: None,
            parachute_threshold: DEFAULT_PARACHUTE_THRESHOLD,
        }
    }
}

/// TLS files of the HTTP API.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// The certificate chain, PEM.
    pub cert_file: PathBuf,
    /// The private key, PEM.
    pub key_file: PathBuf,
}
