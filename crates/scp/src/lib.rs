//! The `scp` destination of service-backup: a directory on an SSH server, written over SFTP.
//!
//! Objects are files below the `destination` directory, in directories created as needed.
//! An object is written to a hidden temporary file beside its final name and renamed into
//! place when complete, so it is either absent or whole; hidden names are never listed.
//!
//! `ssh2` (libssh2) blocks, so every SSH call runs on a blocking thread, never on the async
//! runtime's workers. Connections are made on first use (building a destination does no
//! I/O) and kept in a small pool between requests.

mod connection;
mod errors;
mod files;
mod fingerprint;
mod known_hosts;
mod upload;

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use service_backup_core::destination::{
    Destination, IncompleteUpload, ObjectMeta, ObjectStream, RetryPolicy, Upload,
    blocking_read_stream, temp_target,
};
use service_backup_core::secret::Secret;
use service_backup_core::{Error, ErrorKind, Result};

use crate::connection::Remote;
use crate::upload::{ScpUpload, Transfer};

/// The port of an SSH server unless configured otherwise.
pub const DEFAULT_PORT: u16 = 22;

/// How long one SSH request may wait for the server unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of an `scp` destination.
#[derive(Clone, Debug)]
pub struct ScpSettings {
    /// The SSH server's host name or address.
    pub server: String,
    /// The SSH port.
    pub port: u16,
    /// The user to log in as.
    pub user: String,
    /// The directory on the server that holds the objects (relative: to the user's home).
    pub destination: String,
    /// The private key (RSA PEM, or RSA/ECDSA/ed25519 in OpenSSH format), without passphrase.
    pub key: Secret,
    /// The server's host key: `SHA256:…` or `MD5:…` as `ssh-keygen -l` prints it, or
    /// `known_hosts` lines; `None`: the key recorded in `known_hosts` is required.
    pub fingerprint: Option<String>,
    /// The `known_hosts` file (OpenSSH's format) that, when `fingerprint` is `None`, records
    /// the host key a server presents first and is checked on every later connection; with
    /// neither, any host key is accepted and an error is logged once.
    pub known_hosts: Option<PathBuf>,
    /// How long one SSH request (connect, handshake, read, write) may wait for the server.
    pub timeout: Duration,
    /// Retries of requests that failed temporarily (a broken connection, a timeout).
    pub retry: RetryPolicy,
}

impl ScpSettings {
    /// Settings with the default port, timeout and retries, no host key pinned and no
    /// `known_hosts` file.
    pub fn new(
        server: impl Into<String>,
        user: impl Into<String>,
        destination: impl Into<String>,
        key: Secret,
    ) -> Self {
        Self {
            server: server.into(),
            port: DEFAULT_PORT,
            user: user.into(),
            destination: destination.into(),
            key,
            fingerprint: None,
            known_hosts: None,
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
        }
    }
}

/// A destination in a directory on an SSH server, over SFTP.
#[derive(Clone)]
pub struct ScpDestination {
    remote: Arc<Remote>,
}

impl fmt::Debug for ScpDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScpDestination")
            .field("settings", &self.remote.settings)
            .finish_non_exhaustive()
    }
}

impl ScpDestination {
    /// A destination with `settings`; checks the fingerprint's form, and connects only on
    /// first use.
    pub fn new(settings: ScpSettings) -> Result<Self> {
        Ok(Self {
            remote: Arc::new(Remote::new(settings)?),
        })
    }
}

/// Runs blocking SSH work on a blocking thread.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    // Lines logged on the thread keep the run's fields (backup_guid, identifier).
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("an SSH task failed: {e}")))?
}

impl ScpDestination {
    /// Runs `op` with the shared state on a blocking thread, retrying temporary failures.
    async fn retried<T, F>(&self, what: &str, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Arc<Remote>) -> Result<T> + Clone + Send + 'static,
    {
        self.remote
            .settings
            .retry
            .run(what, || {
                let remote = self.remote.clone();
                let op = op.clone();
                blocking(move || op(&remote))
            })
            .await
    }
}

#[async_trait]
impl Destination for ScpDestination {
    fn describe(&self) -> String {
        let s = &self.remote.settings;
        format!("scp {}@{}:{}", s.user, s.server, s.destination)
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn Upload>> {
        let target = self.remote.path_of(key)?;
        let transfer = self
            .retried("sftp create", move |remote| {
                Transfer::begin(remote, &target)
            })
            .await?;
        Ok(Box::new(ScpUpload::new(self.remote.clone(), transfer)))
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let target = self.remote.path_of(key)?;
        self.retried("sftp put", move |remote| {
            upload::put_whole(remote, &target, &data)
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<ObjectStream> {
        let path = self.remote.path_of(key)?;
        let (reader, size) = self
            .retried("sftp open", move |remote| remote.open_reader(&path, 0))
            .await?;
        Ok(ObjectStream {
            size: Some(size),
            chunks: blocking_read_stream(reader, format!("{key} in {}", self.describe())),
        })
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<ObjectStream> {
        use std::io::Read as _;
        let path = self.remote.path_of(key)?;
        let start = range.start;
        let (reader, size) = self
            .retried("sftp open", move |remote| remote.open_reader(&path, start))
            .await?;
        let len = range.end.min(size).saturating_sub(start);
        Ok(ObjectStream {
            size: Some(len),
            chunks: blocking_read_stream(reader.take(len), format!("{key} in {}", self.describe())),
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let prefix = prefix.to_string();
        self.retried("sftp list", move |remote| {
            remote.run(|conn| remote.list(&conn.sftp, &prefix))
        })
        .await
    }

    async fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectMeta>> {
        let (prefix, start_after) = (prefix.to_string(), start_after.to_string());
        self.retried("sftp list", move |remote| {
            remote.run(|conn| remote.list_after(&conn.sftp, &prefix, &start_after))
        })
        .await
    }

    async fn list_page(
        &self,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<(Vec<ObjectMeta>, bool)> {
        let (prefix, start_after) = (prefix.to_string(), start_after.to_string());
        self.retried("sftp list", move |remote| {
            remote.run(|conn| remote.list_page(&conn.sftp, &prefix, &start_after, limit))
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.remote.path_of(key)?;
        self.retried("sftp delete", move |remote| {
            remote.run(|conn| remote.remove(&conn.sftp, &path))
        })
        .await
    }

    async fn list_incomplete(&self, prefix: &str) -> Result<Vec<IncompleteUpload>> {
        let owned = prefix.to_string();
        let temps = self
            .retried("sftp list", move |remote| {
                remote.run(|conn| remote.list_temporary(&conn.sftp, &owned))
            })
            .await?;
        Ok(temps
            .into_iter()
            .filter_map(|t| {
                let key = temp_target(&t.key)?;
                key.starts_with(prefix).then_some(IncompleteUpload {
                    key,
                    handle: t.key,
                    started: t.last_modified,
                })
            })
            .collect())
    }

    async fn discard_incomplete(&self, upload: &IncompleteUpload) -> Result<()> {
        // Only ever a temporary file of an upload, never an object.
        if temp_target(&upload.handle).is_none() {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("{:?} is not a temporary file of an upload", upload.handle),
            ));
        }
        self.delete(&upload.handle).await
    }
}
