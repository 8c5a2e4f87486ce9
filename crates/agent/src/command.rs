//! What every command shares: its outcome and error, the configuration loading, the keyring
//! from key files, and the async runtime.

use std::path::{Path, PathBuf};

use service_backup_core::format::{Identity, Key, Keyring};
use service_backup_core::{Error, ErrorKind};

use crate::config::{self, Config};

/// What a command ends with: success, a failure already reported, or an error to print.
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1; the problems were already printed or logged.
    Failed,
}

/// The error of a command: an invalid configuration (all problems) or one error.
pub enum CliError {
    /// The configuration is invalid: every problem, already in final form.
    Config(config::ConfigError),
    /// One error with its kind.
    Error(Error),
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        Self::Error(e)
    }
}

impl From<config::ConfigError> for CliError {
    fn from(e: config::ConfigError) -> Self {
        Self::Config(e)
    }
}

/// The result of a command.
pub type CliResult = Result<Outcome, CliError>;

/// Loads a configuration, logging the original keys that no longer do anything.
pub fn load_config(path: &Path) -> Result<Config, CliError> {
    let config = config::load(path)?;
    for key in &config.ignored_keys {
        tracing::info!(key = %key, "Configuration key is no longer used and is ignored");
    }
    Ok(config)
}

/// A keyring from key files and identity files given on the command line, plus the
/// configuration's keys and recipients.
pub fn keyring(
    config: Option<&Config>,
    key_files: &[PathBuf],
    identity_files: &[PathBuf],
) -> Result<Option<Keyring>, Error> {
    let mut ring = config.and_then(|c| c.keyring.clone());
    for path in key_files {
        let key = Key::from_file(path).map_err(usage_if_config)?;
        match &mut ring {
            Some(r) => r.add_previous(key),
            None => ring = Some(Keyring::new(key)),
        }
    }
    for path in identity_files {
        for identity in Identity::from_file(path).map_err(usage_if_config)? {
            ring.get_or_insert_with(Keyring::default)
                .add_identity(identity);
        }
    }
    Ok(ring)
}

/// Refuses to read backups with a keyring of recipients only (a write-only agent): nothing
/// on this machine opens them, and trying would only fail later, archive by archive.
pub fn refuse_write_only(ring: Option<&Keyring>) -> Result<(), Error> {
    match ring {
        Some(r) if !r.can_decrypt() && !r.recipients().is_empty() => Err(Error::new(
            ErrorKind::Usage,
            "this VM holds no key that opens these backups: encryption has recipients only \
             (public keys, which encrypt and cannot decrypt)",
        )
        .with_hint(
            "restores need --identity FILE, the identity file of a recipient, kept off the VM \
             (an operator's laptop, a vault): run restore, verify or decrypt there with \
             --identity FILE",
        )),
        _ => Ok(()),
    }
}

/// A key file given on the command line that is missing or unusable is bad usage (exit 2).
fn usage_if_config(e: Error) -> Error {
    if matches!(e.kind(), ErrorKind::Config | ErrorKind::NotFound) {
        let hint = e.hint().map(str::to_string);
        let mut out = Error::new(ErrorKind::Usage, e.message().to_string());
        if let Some(h) = hint {
            out = out.with_hint(h);
        }
        out
    } else {
        e
    }
}

/// A tokio runtime for the commands that talk to destinations.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot start the async runtime: {e}"),
            )
        })
}
