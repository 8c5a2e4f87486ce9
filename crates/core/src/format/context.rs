//! The context stanza (type 2): the backup an archive belongs to, its name, instance and
//! start time, authenticated by the header MAC (`spec/archive-format.md`, "Type 2").
//!
//! A manifest is plain JSON that anyone who can write to the destination can change; the
//! context is what lets a reader tell that an archive is the one its manifest names, and
//! not another valid archive copied over it.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::error::{Error, ErrorKind, Result};

/// Stanza type of the backup context.
pub const STANZA_CONTEXT: u16 = 2;
/// The longest context stanza body accepted.
pub const MAX_CONTEXT_BODY: usize = 1024;
/// Bytes of a context body besides the name and the instance id: two lengths and the time.
const FIXED_LEN: usize = 2 + 2 + 8 + 4;

/// The backup an archive was made for, as bound into its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupContext {
    /// The backup's name.
    pub name: String,
    /// The instance that made it.
    pub instance_id: String,
    /// When the backup started (UTC, to the nanosecond).
    pub started_at: DateTime<Utc>,
}

impl fmt::Display for BackupContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backup {} (instance {}, started {})",
            self.name,
            self.instance_id,
            self.started_at
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        )
    }
}

impl BackupContext {
    /// Refuses a context whose body would be empty-named or exceed [`MAX_CONTEXT_BODY`].
    pub(crate) fn validate(&self) -> Result<()> {
        let len = FIXED_LEN + self.name.len() + self.instance_id.len();
        if len > MAX_CONTEXT_BODY || self.name.is_empty() || self.instance_id.is_empty() {
            return Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "the backup name and instance id must be 1 to {} bytes together",
                    MAX_CONTEXT_BODY - FIXED_LEN
                ),
            ));
        }
        Ok(())
    }

    /// The stanza body: `u16be(len name) ‖ name ‖ u16be(len instance) ‖ instance ‖
    /// i64be(seconds since 1970) ‖ u32be(nanoseconds)`; [`Self::validate`] first.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let len = FIXED_LEN + self.name.len() + self.instance_id.len();
        let mut body = Vec::with_capacity(len);
        for text in [&self.name, &self.instance_id] {
            let n = u16::try_from(text.len()).unwrap_or(u16::MAX);
            body.extend_from_slice(&n.to_be_bytes());
            body.extend_from_slice(text.as_bytes());
        }
        body.extend_from_slice(&self.started_at.timestamp().to_be_bytes());
        body.extend_from_slice(&self.started_at.timestamp_subsec_nanos().to_be_bytes());
        body
    }

    /// Parses a context stanza body; anything but the exact layout is corrupt.
    pub(crate) fn decode(body: &[u8]) -> Result<Self> {
        let bad = |why: &str| Error::corrupt(format!("the archive's context stanza {why}"));
        if body.len() > MAX_CONTEXT_BODY {
            return Err(bad(&format!(
                "is {} bytes long (at most {MAX_CONTEXT_BODY})",
                body.len()
            )));
        }
        let mut rest = body;
        let mut texts = Vec::with_capacity(2);
        for what in ["name", "instance id"] {
            let (len, tail) = rest
                .split_first_chunk::<2>()
                .ok_or_else(|| bad("is truncated"))?;
            let len = usize::from(u16::from_be_bytes(*len));
            if len == 0 || tail.len() < len {
                return Err(bad(&format!("has a {what} of a wrong length")));
            }
            let (text, tail) = tail.split_at(len);
            let text = std::str::from_utf8(text)
                .map_err(|_| bad(&format!("has a {what} that is not UTF-8")))?;
            texts.push(text.to_string());
            rest = tail;
        }
        let (secs, tail) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| bad("is truncated"))?;
        let (nanos, tail) = tail
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("is truncated"))?;
        if !tail.is_empty() {
            return Err(bad(&format!("has {} bytes too many", tail.len())));
        }
        let nanos = u32::from_be_bytes(*nanos);
        let started_at = (nanos < 1_000_000_000)
            .then(|| DateTime::from_timestamp(i64::from_be_bytes(*secs), nanos))
            .flatten()
            .ok_or_else(|| bad("has an invalid start time"))?;
        let instance_id = texts.pop().expect("two texts");
        let name = texts.pop().expect("two texts");
        Ok(Self {
            name,
            instance_id,
            started_at,
        })
    }

    /// Checks that this context is the one a manifest (or file name) claims; a mismatch
    /// is corrupt: the archive belongs to another backup.
    pub fn check(&self, expected: &Self) -> Result<()> {
        if self == expected {
            return Ok(());
        }
        Err(Error::corrupt(format!(
            "the archive belongs to {self}, but its manifest names {expected}: it was swapped or copied from another backup"
        ))
        .with_hint("restore another backup, or the same one from another destination; replace or delete this copy"))
    }

    /// Checks that the archive was made for the backup `name`, as a downloaded file's name
    /// says.
    pub fn check_name(&self, name: &str) -> Result<()> {
        if self.name == name {
            return Ok(());
        }
        Err(Error::corrupt(format!(
            "the archive belongs to backup {}, but its file is named for backup {name}: it was swapped or renamed",
            self.name
        ))
        .with_hint("download the backup again, or pass the archive under its own name"))
    }
}
