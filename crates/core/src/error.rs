//! The one error type of service-backup.
//!
//! Rules every error follows:
//! - `message` says what went wrong in the user's words, naming the file, backup, entry or
//!   destination concerned; `hint` says what to do about it.
//! - No secret (key, password, token, private key) is ever put in an error, not even in part.
//! - `kind` decides how the caller reacts (the agent maps `Config` and `Usage` to exit 2,
//!   everything else to exit 1); `temporary` says whether the same call may succeed later.

use std::fmt;
use std::path::Path;

/// What kind of failure an [`Error`] is.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration or a key file is unusable.
    Config,
    /// A command was called the wrong way.
    Usage,
    /// The archive is damaged, tampered with, truncated, or not an archive of ours.
    Corrupt,
    /// None of the configured keys opens the archive.
    WrongKey,
    /// An archive entry would land outside the restore target, or is of a refused type.
    UnsafeEntry,
    /// A file, backup or object does not exist.
    NotFound,
    /// Reading or writing the local file system failed.
    Io,
    /// A destination refused or failed a request.
    Destination,
    /// The operation was cancelled before it finished.
    Cancelled,
    /// The store refused to delete or overwrite an object because it is locked (S3 Object
    /// Lock, GCS object retention, an Azure immutability policy), until `until` if known.
    Locked {
        /// When the lock ends, if the store said.
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// An error with its kind, the user-facing message, and what to do about it.
pub struct Error {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
    temporary: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a user-facing message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            hint: None,
            temporary: false,
            source: None,
        }
    }

    /// Adds what the user should do about it.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Marks the error as temporary: the same call may succeed later.
    #[must_use]
    pub fn temporary(mut self) -> Self {
        self.temporary = true;
        self
    }

    /// Keeps the underlying cause for `source()` chains.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// A local I/O failure on `path`, with the operating system's reason.
    pub fn io(action: &str, path: &Path, err: std::io::Error) -> Self {
        let kind = if err.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::NotFound
        } else {
            ErrorKind::Io
        };
        let hint = match err.kind() {
            std::io::ErrorKind::PermissionDenied => {
                Some("check the owner and mode of the path, and the user the agent runs as")
            }
            std::io::ErrorKind::StorageFull => Some("free disk space and try again"),
            _ => None,
        };
        let mut e = Self::new(
            kind,
            format!("cannot {action} {}: {}", path.display(), plain_io(&err)),
        );
        if let Some(h) = hint {
            e = e.with_hint(h);
        }
        e.with_source(err)
    }

    /// The archive is damaged or not an archive of ours.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message).with_hint(
            "the archive is damaged or was modified; restore another backup or download it again",
        )
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The object is locked until `until` (if known): a refusal that a prune reports as
    /// "kept", never as a failure.
    pub fn locked(
        message: impl Into<String>,
        until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Self {
        Self::new(ErrorKind::Locked { until }, message)
    }

    /// Whether the store refused because the object is locked, and until when if known.
    pub fn locked_until(&self) -> Option<Option<chrono::DateTime<chrono::Utc>>> {
        match self.kind {
            ErrorKind::Locked { until } => Some(until),
            _ => None,
        }
    }

    /// Whether the same call may succeed later.
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// The message, without the hint.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What the user should do, if known.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Prefixes the message with context, such as the destination or backup concerned.
    #[must_use]
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The error with the path `from` written as `to` in its message and hint: a folder
    /// worked in through another path to it than the one its user knows.
    #[must_use]
    pub fn with_path_shown(mut self, from: &Path, to: &Path) -> Self {
        let (from, to) = (from.display().to_string(), to.display().to_string());
        self.message = self.message.replace(&from, &to);
        if let Some(hint) = &mut self.hint {
            *hint = hint.replace(&from, &to);
        }
        self
    }
}

/// Finds an error of ours carried inside an I/O error, at any depth (the tar crate wraps
/// the errors of the reader it unpacks from).
pub fn find_in_io(err: &std::io::Error) -> Option<Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = err
        .get_ref()
        .map(|e| e as &(dyn std::error::Error + 'static));
    while let Some(e) = current {
        if let Some(ours) = e.downcast_ref::<Error>() {
            let mut copy = Error::new(ours.kind, ours.message.clone());
            copy.hint.clone_from(&ours.hint);
            copy.temporary = ours.temporary;
            return Some(copy);
        }
        current = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|e| e as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// The OS reason of an I/O error without Rust's "(os error N)" suffix.
fn plain_io(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("hint", &self.hint)
            .field("temporary", &self.temporary)
            .finish_non_exhaustive()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_names_the_path_and_reason_without_os_code() {
        let err = Error::io(
            "read",
            Path::new("/srv/dump/a.rdb"),
            std::io::Error::from_raw_os_error(13),
        );
        assert_eq!(err.kind(), ErrorKind::Io);
        let text = err.to_string();
        assert!(
            text.starts_with("cannot read /srv/dump/a.rdb: Permission denied"),
            "{text}"
        );
        assert!(!text.contains("os error"), "{text}");
        assert!(text.contains("check the owner"), "{text}");
    }

    #[test]
    fn missing_file_is_not_found() {
        let err = Error::io(
            "open",
            Path::new("/nope"),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn context_prefixes_the_message() {
        let err = Error::new(ErrorKind::Destination, "bucket missing").context("destination s3");
        assert_eq!(err.to_string(), "destination s3: bucket missing");
    }
}
