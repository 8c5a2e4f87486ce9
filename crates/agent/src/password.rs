//! The backup password of application developers: only its public half is kept, in the
//! state dir, so that every new backup carries a password stanza
//! (`spec/archive-format.md`, "Type 4") while the agent never holds the password.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service_backup_core::format::{DEFAULT_WORK_FACTOR, PassphraseRecipient, SCRYPT_SALT_LEN};
use service_backup_core::secret::Secret;
use service_backup_core::{Error, ErrorKind, Result};

/// The file in the state dir that keeps the public half of the backup password.
pub const PASSWORD_FILE: &str = "backup-password.json";

/// The fewest characters a backup password may have.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// The most characters a backup password may have (scrypt takes any length; this bounds
/// what a request makes the agent hash).
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// The most of the password file read: it holds one small JSON object.
const MAX_FILE_BYTES: u64 = 1024;

/// One password derivation at a time: each takes 128 MiB for most of a second.
static DERIVING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the password file holds: the password's public half, never the password.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    /// The scrypt work factor, log2 N.
    work_factor: u8,
    /// The scrypt salt, hex.
    scrypt_salt: String,
    /// The X25519 public key of the derived secret, hex.
    public_key: String,
    /// When the password was set.
    set_at: DateTime<Utc>,
}

/// The backup password in force: its public half and when it was set.
#[derive(Debug, Clone)]
pub struct BackupPassword {
    /// What new archives get a password stanza for.
    pub recipient: PassphraseRecipient,
    /// When it was set.
    pub set_at: DateTime<Utc>,
}

/// The password file of `state_dir`.
pub fn file(state_dir: &Path) -> PathBuf {
    state_dir.join(PASSWORD_FILE)
}

/// Why a password is refused, in the words of a 422; `None` if it is accepted.
pub fn problem(password: &str) -> Option<String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Some(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters (it has {chars})"
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Some(format!(
            "the password must have at most {MAX_PASSWORD_CHARS} characters (it has {chars})"
        ));
    }
    // Such passwords are accepted by scrypt but are weaker than their length says, and
    // control characters cannot be typed back at a prompt.
    if password.chars().any(char::is_control) {
        return Some("the password must not hold control characters".to_string());
    }
    if password.chars().all(char::is_whitespace) {
        return Some("the password must not be only whitespace".to_string());
    }
    None
}

/// The backup password set in `state_dir`, if any; a file that cannot be read or is not
/// valid is an error, for the caller to report (never taken for an absent password).
pub fn load(state_dir: &Path) -> Result<Option<BackupPassword>> {
    use std::io::Read as _;
    let path = file(state_dir);
    let bad = |why: String| {
        Error::new(
            ErrorKind::Config,
            format!("the backup password file {} {why}", path.display()),
        )
        .with_hint("set the backup password again (PUT /backups/password), or remove it (DELETE /backups/password)")
    };
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read the backup password file", &path, e)),
    };
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read the backup password file", &path, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(bad(format!("is larger than {MAX_FILE_BYTES} bytes")));
    }
    let stored: Stored =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("is not valid: {e}")))?;
    let salt: [u8; SCRYPT_SALT_LEN] = hex::decode(&stored.scrypt_salt)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("has a salt that is not 16 bytes of hex".into()))?;
    let public: [u8; 32] = hex::decode(&stored.public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("has a public key that is not 32 bytes of hex".into()))?;
    let recipient = PassphraseRecipient::from_parts(stored.work_factor, salt, public)
        .map_err(|e| bad(format!("is not valid: {}", e.message())))?;
    Ok(Some(BackupPassword {
        recipient,
        set_at: stored.set_at,
    }))
}

/// Derives the public half of `password` (on a blocking thread, one at a time) and keeps
/// it in `state_dir`, replacing the file at once (mode 0600); the password is forgotten.
pub async fn set(state_dir: &Path, password: Secret) -> Result<BackupPassword> {
    let _one = DERIVING.lock().await;
    let dir = state_dir.to_path_buf();
    service_backup_core::blocking(move || {
        let recipient = PassphraseRecipient::derive(&password, DEFAULT_WORK_FACTOR)?;
        drop(password);
        let set = BackupPassword {
            recipient,
            set_at: Utc::now(),
        };
        write(&dir, &set)?;
        Ok(set)
    })
    .await
}

fn write(state_dir: &Path, password: &BackupPassword) -> Result<()> {
    let path = file(state_dir);
    let stored = Stored {
        work_factor: password.recipient.work_factor(),
        scrypt_salt: hex::encode(password.recipient.salt()),
        public_key: hex::encode(password.recipient.public_bytes()),
        set_at: password.set_at,
    };
    let io = |e: std::io::Error| Error::io("write the backup password file", &path, e);
    std::fs::create_dir_all(state_dir).map_err(io)?;
    // NamedTempFile creates its file with mode 0600, which the rename keeps.
    let mut temp = tempfile::NamedTempFile::new_in(state_dir).map_err(io)?;
    serde_json::to_writer(&mut temp, &stored).map_err(|e| io(e.into()))?;
    temp.write_all(b"\n").map_err(io)?;
    temp.as_file().sync_all().map_err(io)?;
    temp.persist(&path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Removes the backup password of `state_dir`; whether there was one.
pub fn remove(state_dir: &Path) -> Result<bool> {
    let path = file(state_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("remove the backup password file", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_file_keeps_the_public_half_only_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let password = "a password for the developers";
        let set = set(dir.path(), Secret::new(password)).await.unwrap();
        let text = std::fs::read_to_string(file(dir.path())).unwrap();
        assert!(!text.contains(password), "{text}");
        let mode = std::fs::metadata(file(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.recipient, set.recipient);
        assert_eq!(loaded.recipient.work_factor(), DEFAULT_WORK_FACTOR);
        assert!(remove(dir.path()).unwrap());
        assert!(!remove(dir.path()).unwrap());
        assert!(load(dir.path()).unwrap().is_none());
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_silent_absence() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(file(dir.path()), "{}").unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(e.message().contains("is not valid"), "{e}");
        std::fs::write(
            file(dir.path()),
            r#"{"work_factor": 40, "scrypt_salt": "00000000000000000000000000000000", "public_key": "0900000000000000000000000000000000000000000000000000000000000000", "set_at": "2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(e.message().contains("2^40"), "{e}");
    }

    #[test]
    fn short_and_long_passwords_are_refused() {
        assert_eq!(
            problem("eleven char").as_deref(),
            Some("the password must have at least 12 characters (it has 11)")
        );
        assert_eq!(problem("twelve chars"), None);
        assert!(problem(&"x".repeat(1025)).unwrap().contains("at most 1024"));
        for control in [
            "\0".repeat(12),
            "tab\tinside it".to_string(),
            "twelve chars\u{7f}".to_string(),
        ] {
            assert_eq!(
                problem(&control).as_deref(),
                Some("the password must not hold control characters")
            );
        }
        for blank in [" ".repeat(12), "\u{a0}\u{2003}".repeat(6)] {
            assert_eq!(
                problem(&blank).as_deref(),
                Some("the password must not be only whitespace")
            );
        }
        assert_eq!(problem("  spaces   around  "), None);
    }
}
