//! What an `s3` destination needs to know: the bucket, the credentials, where the store is,
//! and how the store encrypts what it keeps.

use std::fmt;
use std::time::Duration;

use service_backup_core::destination::{Immutability, RetryPolicy};
use service_backup_core::secret::Secret;

/// The region used when none is configured, as in the original release.
pub const DEFAULT_REGION: &str = "us-east-1";

/// How long a TCP (and TLS) connection may take to open before the attempt fails.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the store may take to answer a request, plus the time its object data takes
/// at 128 KiB/s; past that the attempt fails as temporary and is retried.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_mins(2);

/// Settings of an [`S3Destination`](crate::S3Destination).
#[derive(Clone)]
pub struct S3Settings {
    /// The bucket; created in `region` by the first upload if it does not exist.
    pub bucket_name: String,
    /// Where the credentials of requests come from.
    pub credentials: S3Credentials,
    /// How the store encrypts the objects it keeps; `None`: as the bucket's default says.
    pub server_side_encryption: Option<ServerSideEncryption>,
    /// An S3-compatible endpoint with its scheme (`https://s3.example.internal`); when set,
    /// requests use path-style addressing. `None`: Amazon S3.
    pub endpoint_url: Option<String>,
    /// The region; `None`: [`DEFAULT_REGION`].
    pub region: Option<String>,
    /// PEM of a private certificate authority trusted in addition to the system's roots.
    pub ca_cert: Option<String>,
    /// How requests that failed temporarily (throttling, 5xx, resets, timeouts) are retried.
    pub retry: RetryPolicy,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// How long the store may take to answer a request (see [`DEFAULT_REQUEST_TIMEOUT`]).
    pub request_timeout: Duration,
    /// Object Lock on each archive and manifest written; `None`: objects are not locked.
    pub immutability: Option<Immutability>,
}

impl S3Settings {
    /// Settings for `bucket_name` on Amazon S3 in the default region, with the default
    /// retry policy; set the other fields as needed.
    pub fn new(
        bucket_name: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: Secret,
    ) -> Self {
        Self {
            bucket_name: bucket_name.into(),
            credentials: S3Credentials::Static {
                access_key_id: access_key_id.into(),
                secret_access_key,
            },
            server_side_encryption: None,
            endpoint_url: None,
            region: None,
            ca_cert: None,
            retry: RetryPolicy::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            immutability: None,
        }
    }

    /// Settings for `bucket_name` whose credentials come from the VM (see
    /// [`S3Credentials::EnvOrInstanceProfile`]).
    pub fn from_environment(bucket_name: impl Into<String>) -> Self {
        let mut settings = Self::new(bucket_name, "", Secret::new(""));
        settings.credentials = S3Credentials::EnvOrInstanceProfile;
        settings
    }

    /// The region requests are signed for and buckets are created in.
    pub fn region(&self) -> &str {
        self.region
            .as_deref()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or(DEFAULT_REGION)
    }

    /// The endpoint without any user information or query it may carry, for messages.
    pub(crate) fn endpoint_for_messages(&self) -> Option<String> {
        self.endpoint_url
            .as_deref()
            .map(|url| without_query(&strip_userinfo(url)))
    }
}

/// Where the credentials of an `s3` destination come from.
#[derive(Clone)]
pub enum S3Credentials {
    /// An access key of the configuration; nothing on the VM is read.
    Static {
        /// The access key id.
        access_key_id: String,
        /// The secret access key.
        secret_access_key: Secret,
    },
    /// The SDK's standard chain, first that has some: the `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`) variables, the shared config and
    /// credentials files, web identity (`AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE`),
    /// the ECS container endpoint, the instance profile through `IMDSv2`.
    EnvOrInstanceProfile,
}

impl S3Credentials {
    /// What to check when the store refuses these credentials, for hints.
    pub(crate) fn what_to_check(&self) -> &'static str {
        match self {
            Self::Static { .. } => "access_key_id and secret_access_key",
            Self::EnvOrInstanceProfile => {
                "the credentials this VM provides (AWS_* environment variables, shared credentials files, web identity token, instance profile)"
            }
        }
    }
}

/// How the store encrypts the objects the destination writes (`server_side_encryption`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerSideEncryption {
    /// SSE-S3 (`AES256`): keys the store manages.
    Aes256,
    /// SSE-KMS (`aws:kms`) under `key_id` (an id, ARN or alias), or under the account's
    /// AWS managed key for S3 when `None`.
    Kms {
        /// The KMS key.
        key_id: Option<String>,
    },
}

/// `scheme://user:password@host/…` without `user:password@`.
fn strip_userinfo(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// `url` without its query and fragment.
fn without_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or_default().to_string()
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The access key id is not a secret by itself, but it names the account: keep it
        // out of debug output along with the secret.
        f.debug_struct("S3Settings")
            .field("bucket_name", &self.bucket_name)
            .field("endpoint_url", &self.endpoint_for_messages())
            .field("region", &self.region())
            .field("ca_cert", &self.ca_cert.as_ref().map(|_| "<PEM>"))
            .field(
                "credentials",
                &match self.credentials {
                    S3Credentials::Static { .. } => "static",
                    S3Credentials::EnvOrInstanceProfile => "env_or_instance_profile",
                },
            )
            .field("server_side_encryption", &self.server_side_encryption)
            .field("retry", &self.retry)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("immutability", &self.immutability)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_credentials() {
        let mut s = S3Settings::new("b", "AKIAEXAMPLEKEYID", Secret::new("s3cr3t/KEY+value"));
        s.endpoint_url = Some("https://user:pw@store.example:9000/base".into());
        let text = format!("{s:?}");
        for secret in ["AKIAEXAMPLEKEYID", "s3cr3t/KEY+value", "pw@", "user:"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("https://store.example:9000/base"), "{text}");
    }

    #[test]
    fn region_defaults_to_us_east_1() {
        let mut s = S3Settings::new("b", "k", Secret::new("s"));
        assert_eq!(s.region(), "us-east-1");
        s.region = Some(String::new());
        assert_eq!(s.region(), "us-east-1");
        s.region = Some("eu-central-1".into());
        assert_eq!(s.region(), "eu-central-1");
    }

    #[test]
    fn userinfo_is_stripped() {
        assert_eq!(strip_userinfo("http://a:b@h:1/p@x"), "http://h:1/p@x");
        assert_eq!(strip_userinfo("http://h:1"), "http://h:1");
        assert_eq!(strip_userinfo("h@x"), "x");
        assert_eq!(
            without_query(&strip_userinfo("http://u:p?w@h:1/p?token=t#f")),
            "http://h:1/p"
        );
    }
}
