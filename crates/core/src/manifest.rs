//! The manifest: what a completed backup records, written beside its archive, last.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::format::BackupContext;

/// The manifest format version this agent writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
/// Manifests larger than this are refused when read. The agent writes about 1 KiB (a
/// source folder path is at most 4 KiB); the bound keeps what a catalog holds of planted
/// manifests small.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;

/// What a completed backup records. Its presence means the backup is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub format_version: u32,
    /// The backup's name, unique across agents.
    pub name: String,
    /// The agent instance that made it.
    pub instance_id: String,
    /// The BOSH deployment, when configured.
    #[serde(default)]
    pub deployment: Option<String>,
    /// When the backup started (UTC).
    pub started_at: DateTime<Utc>,
    /// When its archive was complete in this destination (UTC).
    pub finished_at: DateTime<Utc>,
    /// The folder that was backed up.
    pub source_folder: String,
    /// Number of entries archived (files, directories and links).
    pub file_count: u64,
    /// Bytes of regular file content archived.
    pub plain_bytes: u64,
    /// Bytes of the stored archive object.
    pub stored_bytes: u64,
    /// SHA-256 of the stored archive object, hex.
    pub sha256: String,
    /// File name of the archive object, in the manifest's directory.
    pub archive: String,
    /// How the tar stream is compressed.
    pub compression: Compression,
    /// How the archive is encrypted; absent for a plain `.tar.gz`.
    #[serde(default)]
    pub encryption: Option<Encryption>,
    /// Version of the agent that wrote it.
    pub agent_version: String,
    /// Until when the store keeps the manifest and its archive locked (immutability), if
    /// they were written locked: a prune does not try to delete them before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<DateTime<Utc>>,
}

/// The compression of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    /// `gzip` or `zstd`.
    pub algorithm: String,
    /// The level: gzip 1 to 9, zstd 1 to 19.
    pub level: u32,
}

/// The encryption of an archive: the algorithm and the key's public id, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// The format's algorithm name.
    pub algorithm: String,
    /// The id of the key it was encrypted for.
    pub key_id: String,
}

impl Manifest {
    /// The backup context this manifest claims for its archive.
    pub fn context(&self) -> BackupContext {
        BackupContext {
            name: self.name.clone(),
            instance_id: self.instance_id.clone(),
            started_at: self.started_at,
        }
    }

    /// Parses a manifest, refusing versions this agent does not know.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let manifest: Self = serde_json::from_slice(bytes).map_err(|e| {
            Error::new(
                ErrorKind::Corrupt,
                format!("the backup manifest is not valid: {e}"),
            )
        })?;
        if manifest.format_version > MANIFEST_VERSION {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "the backup manifest has format version {}, newer than this agent reads",
                    manifest.format_version
                ),
            )
            .with_hint("use a newer service-backup"));
        }
        if !crate::layout::is_backup_name(&manifest.name)
            || !crate::layout::is_backup_name(&manifest.archive)
        {
            return Err(Error::new(
                ErrorKind::Corrupt,
                "the backup manifest names an invalid backup or archive file",
            ));
        }
        Ok(manifest)
    }

    /// The manifest as pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        out.push(b'\n');
        out
    }

    /// Whether the archive is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.encryption.is_some()
    }
}

/// Small backups planted in a store by tests: many instances and days without running a
/// backup.
#[cfg(any(test, feature = "testing"))]
pub mod planted {
    use bytes::Bytes;
    use chrono::{DateTime, NaiveDate, Utc};

    use super::{Compression, MANIFEST_VERSION, Manifest};
    use crate::compression::Algorithm;
    use crate::destination::Destination;
    use crate::layout::Layout;

    /// The manifest of a backup of `instance` started and finished at `time`, whose
    /// archive is a plain gzip file of three bytes.
    pub fn manifest(instance: &str, time: DateTime<Utc>) -> Manifest {
        let name = format!("{}-{instance}-0000abcd", time.format("%Y%m%dT%H%M%SZ"));
        Manifest {
            format_version: MANIFEST_VERSION,
            name: name.clone(),
            instance_id: instance.into(),
            deployment: None,
            started_at: time,
            finished_at: time,
            source_folder: "/s".into(),
            file_count: 1,
            plain_bytes: 1,
            stored_bytes: 3,
            sha256: "00".repeat(32),
            archive: format!("{name}.tar.gz"),
            compression: Compression {
                algorithm: "gzip".into(),
                level: 6,
            },
            encryption: None,
            agent_version: "test".into(),
            locked_until: None,
        }
    }

    /// Writes the archive (three bytes) and `manifest` into `dest` under `layout`, in the
    /// day folder `day`; returns the manifest's key.
    pub async fn put(
        dest: &dyn Destination,
        layout: &Layout,
        day: NaiveDate,
        manifest: &Manifest,
    ) -> String {
        let archive_key = layout.archive_key(day, &manifest.name, Algorithm::Gzip, false);
        let manifest_key = layout.manifest_key(day, &manifest.name);
        dest.put(&archive_key, Bytes::from_static(&[0x1f, 0x8b, 0]))
            .await
            .unwrap();
        dest.put(&manifest_key, Bytes::from(manifest.to_json()))
            .await
            .unwrap();
        manifest_key
    }
}
