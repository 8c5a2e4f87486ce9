//! What a `gcs` destination is configured with.

use std::fmt;
use std::time::Duration;

use service_backup_core::destination::{Immutability, RetryPolicy};
use service_backup_core::secret::Secret;

/// Size of the chunks of a resumable upload, unless the settings say otherwise.
pub const DEFAULT_CHUNK_SIZE: usize = 8 * 1024 * 1024;
/// Objects listed per request (the service's maximum is 1000).
pub(crate) const LIST_PAGE_SIZE: u32 = 1000;

/// Settings of a `gcs` destination.
#[derive(Clone)]
pub struct GcsSettings {
    /// The service account's JSON key; `None`: access tokens come from the metadata server
    /// of the VM (its attached service account).
    pub service_account_json: Option<Secret>,
    /// The metadata server's host (and port), for tokens without a key; `None`: the
    /// `GCE_METADATA_HOST` variable, else `metadata.google.internal`.
    pub metadata_host: Option<String>,
    /// PEM of a private certificate authority trusted in addition to the system's roots.
    pub ca_cert: Option<String>,
    /// The project a missing bucket is created in.
    pub project_id: String,
    /// The bucket; created by the first write if it is missing.
    pub bucket_name: String,
    /// The JSON API's base URL; `None`: Google Cloud Storage.
    pub endpoint: Option<String>,
    /// Size of the chunks of a resumable upload: a multiple of [`crate::CHUNK_GRANULARITY`].
    pub chunk_size: usize,
    /// Objects listed per request, at most 1000.
    pub list_page_size: u32,
    /// How requests that fail temporarily are retried.
    pub retry: RetryPolicy,
    /// Object retention on each archive and manifest written; `None`: not retained.
    pub immutability: Option<Immutability>,
    /// A read whose body brings less than 64 KiB within this time is resumed (and given
    /// up after a few resumes), so a silent or trickling connection cannot hang a restore.
    pub stall_timeout: Duration,
}

/// The default of [`GcsSettings::stall_timeout`].
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_mins(1);

impl GcsSettings {
    /// Settings with the default chunk size, page size and retry policy.
    pub fn new(
        service_account_json: Secret,
        project_id: &str,
        bucket_name: &str,
        endpoint: Option<String>,
    ) -> Self {
        Self {
            service_account_json: Some(service_account_json),
            metadata_host: None,
            ca_cert: None,
            project_id: project_id.to_string(),
            bucket_name: bucket_name.to_string(),
            endpoint,
            chunk_size: DEFAULT_CHUNK_SIZE,
            list_page_size: LIST_PAGE_SIZE,
            retry: RetryPolicy::default(),
            immutability: None,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        }
    }
}

impl GcsSettings {
    /// Settings whose access tokens come from the VM's metadata server.
    pub fn from_metadata_server(
        project_id: &str,
        bucket_name: &str,
        endpoint: Option<String>,
    ) -> Self {
        let mut settings = Self::new(Secret::new(""), project_id, bucket_name, endpoint);
        settings.service_account_json = None;
        settings
    }
}

impl fmt::Debug for GcsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsSettings")
            .field("service_account_json", &self.service_account_json)
            .field("metadata_host", &self.metadata_host)
            .field("ca_cert", &self.ca_cert.as_ref().map(|_| "<PEM>"))
            .field("project_id", &self.project_id)
            .field("bucket_name", &self.bucket_name)
            .field("endpoint", &self.endpoint)
            .field("chunk_size", &self.chunk_size)
            .field("list_page_size", &self.list_page_size)
            .field("retry", &self.retry)
            .field("immutability", &self.immutability)
            .field("stall_timeout", &self.stall_timeout)
            .finish()
    }
}
