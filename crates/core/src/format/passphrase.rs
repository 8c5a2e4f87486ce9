//! Backup passwords: the type 4 stanza that wraps the file key for a password
//! (`spec/archive-format.md`, "Type 4").
//!
//! The writer never holds the password. When one is set, scrypt turns it (with a salt
//! drawn then) into an X25519 secret, and only the public half is kept: a
//! [`PassphraseRecipient`]. Each archive then gets a type 3 wrap for that public key, under
//! its own info string, preceded by the scrypt work factor and salt so that a reader holding
//! the password alone can derive the secret again.

use std::fmt;

use zeroize::Zeroizing;

use super::keys::{FileKey, KeyId};
use super::recipient::{Identity, Recipient, UnwrapFailure, X25519_BODY_LEN, X25519Stanza};
use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;

/// Stanza type of the file key wrapped for a backup password.
pub const STANZA_PASSPHRASE: u16 = 4;
/// Length of the scrypt salt of a backup password.
pub const SCRYPT_SALT_LEN: usize = 16;
/// Body length of a type 4 stanza: work factor, scrypt salt, then a type 3 body.
pub const PASSPHRASE_BODY_LEN: usize = 1 + SCRYPT_SALT_LEN + X25519_BODY_LEN;
/// The largest scrypt work factor (log2 N) a reader accepts: 2^20 takes 1 GiB with r = 8.
pub const MAX_WORK_FACTOR: u8 = 20;
/// The work factor (log2 N) new passwords are derived with: 128 MiB, about half a second.
pub const DEFAULT_WORK_FACTOR: u8 = 17;

/// scrypt's block size and parallelism, fixed by the format.
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
const WRAP_INFO: &[u8] = b"service-backup passphrase stanza v1";

/// The hint of a password that opens nothing.
const WRONG_PASSWORD_HINT: &str = "a backup opens with the backup password that was in force when it was made; after a change, older backups keep the previous password";

/// Checks a work factor read from a header or a file, before any work is done with it.
fn check_work_factor(log_n: u8) -> Result<()> {
    if (1..=MAX_WORK_FACTOR).contains(&log_n) {
        return Ok(());
    }
    Err(Error::corrupt(format!(
        "the password stanza asks for a scrypt work factor of 2^{log_n}; 2^1 to 2^{MAX_WORK_FACTOR} are accepted (more would take over 1 GiB of memory): the header was forged or damaged"
    )))
}

/// The X25519 identity a password gives with this salt and work factor.
fn derive(passphrase: &[u8], salt: &[u8; SCRYPT_SALT_LEN], log_n: u8) -> Result<Identity> {
    check_work_factor(log_n)?;
    let params = scrypt::Params::new(log_n, SCRYPT_R, SCRYPT_P).map_err(|_| {
        Error::new(
            ErrorKind::Config,
            format!("scrypt refuses a work factor of 2^{log_n}"),
        )
    })?;
    let mut secret = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(passphrase, salt, &params, secret.as_mut())
        .expect("32 bytes is a valid scrypt output length");
    Ok(Identity::from_bytes(*secret))
}

/// The public half of a backup password: what a writer keeps to add a type 4 stanza to new
/// archives. It cannot open any archive.
#[derive(Clone, PartialEq, Eq)]
pub struct PassphraseRecipient {
    work_factor: u8,
    salt: [u8; SCRYPT_SALT_LEN],
    recipient: Recipient,
}

impl PassphraseRecipient {
    /// Derives the public half of `passphrase` with a fresh random salt and the work factor
    /// `log_n` (1 to [`MAX_WORK_FACTOR`]); the password and the secret are forgotten.
    pub fn derive(passphrase: &Secret, log_n: u8) -> Result<Self> {
        let mut salt = [0u8; SCRYPT_SALT_LEN];
        crate::random::fill(&mut salt)?;
        Self::derive_with_salt(passphrase.expose().as_bytes(), log_n, salt)
    }

    /// Like [`Self::derive`] with the given salt (deterministic, for test vectors).
    pub fn derive_with_salt(
        passphrase: &[u8],
        log_n: u8,
        salt: [u8; SCRYPT_SALT_LEN],
    ) -> Result<Self> {
        let identity = derive(passphrase, &salt, log_n)?;
        Ok(Self {
            work_factor: log_n,
            salt,
            recipient: identity.recipient(),
        })
    }

    /// The public half as it was kept: work factor, salt and X25519 public key; a work
    /// factor out of bounds or a public key of low order is refused.
    pub fn from_parts(log_n: u8, salt: [u8; SCRYPT_SALT_LEN], public: [u8; 32]) -> Result<Self> {
        check_work_factor(log_n).map_err(|_| {
            Error::new(
                ErrorKind::Config,
                format!("a scrypt work factor of 2^{log_n} is out of bounds (2^1 to 2^{MAX_WORK_FACTOR})"),
            )
        })?;
        // A recipient string checks its point; the same check through its parser.
        let recipient = Recipient::parse(&Recipient::from_bytes(public).to_string())?;
        Ok(Self {
            work_factor: log_n,
            salt,
            recipient,
        })
    }

    /// The scrypt work factor, log2 N.
    pub fn work_factor(&self) -> u8 {
        self.work_factor
    }

    /// The scrypt salt, drawn when the password was set.
    pub fn salt(&self) -> &[u8; SCRYPT_SALT_LEN] {
        &self.salt
    }

    /// The X25519 public key the password's secret belongs to.
    pub fn public_bytes(&self) -> &[u8; 32] {
        self.recipient.public_bytes()
    }

    /// The public fingerprint of this password (its recipient id), named like a key id.
    pub fn id(&self) -> KeyId {
        self.recipient.id()
    }
}

impl fmt::Debug for PassphraseRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PassphraseRecipient(id={}, 2^{})",
            self.recipient.id(),
            self.work_factor
        )
    }
}

/// A reader's backup password: opens archives that carry a type 4 stanza for it. Never
/// printed, wiped when dropped.
#[derive(Clone)]
pub struct Passphrase {
    secret: Secret,
    max_work_factor: u8,
}

impl Passphrase {
    /// A password, accepting work factors up to [`MAX_WORK_FACTOR`].
    pub fn new(secret: Secret) -> Self {
        Self {
            secret,
            max_work_factor: MAX_WORK_FACTOR,
        }
    }

    /// Lowers the largest work factor this reader derives with (never above
    /// [`MAX_WORK_FACTOR`]): the fuzz targets keep each execution short with it.
    #[must_use]
    pub fn with_max_work_factor(mut self, log_n: u8) -> Self {
        self.max_work_factor = log_n.min(MAX_WORK_FACTOR);
        self
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// The file key wrapped for a backup password.
#[derive(Clone, Debug)]
pub(crate) struct PassphraseStanza {
    pub work_factor: u8,
    pub salt: [u8; SCRYPT_SALT_LEN],
    pub inner: X25519Stanza,
}

impl PassphraseStanza {
    /// Wraps `file_key` for `recipient` under a fresh ephemeral key pair.
    pub fn wrap(recipient: &PassphraseRecipient, file_key: &FileKey) -> Result<Self> {
        let mut secret = Zeroizing::new([0u8; 32]);
        crate::random::fill(secret.as_mut())?;
        Self::wrap_with_ephemeral(recipient, file_key, *secret)
    }

    /// Wraps `file_key` for `recipient` with the given ephemeral secret (deterministic, for
    /// test vectors).
    pub fn wrap_with_ephemeral(
        recipient: &PassphraseRecipient,
        file_key: &FileKey,
        ephemeral_secret: [u8; 32],
    ) -> Result<Self> {
        let inner = X25519Stanza::wrap_with_info(
            &recipient.recipient,
            file_key,
            ephemeral_secret,
            WRAP_INFO,
        )?;
        Ok(Self {
            work_factor: recipient.work_factor,
            salt: recipient.salt,
            inner,
        })
    }

    /// The body of the stanza.
    pub fn body(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(PASSPHRASE_BODY_LEN);
        body.push(self.work_factor);
        body.extend_from_slice(&self.salt);
        body.extend_from_slice(&self.inner.body());
        body
    }

    /// Parses a type 4 body: exactly [`PASSPHRASE_BODY_LEN`] bytes, and a work factor
    /// within bounds, checked here so that no reader ever starts scrypt with a forged one.
    pub fn decode(body: &[u8]) -> Result<Self> {
        if body.len() != PASSPHRASE_BODY_LEN {
            return Err(Error::corrupt(format!(
                "a password stanza is {} bytes long, not {PASSPHRASE_BODY_LEN}",
                body.len()
            )));
        }
        check_work_factor(body[0])?;
        let (salt, rest) = body[1..].split_at(SCRYPT_SALT_LEN);
        Ok(Self {
            work_factor: body[0],
            salt: salt.try_into().expect("SCRYPT_SALT_LEN bytes"),
            inner: X25519Stanza::decode(rest)?,
        })
    }

    /// Recovers the file key with `passphrase`: derives its secret with this stanza's salt
    /// and work factor, and refuses a password whose public key is not the stanza's.
    pub fn unwrap(&self, passphrase: &Passphrase) -> Result<FileKey> {
        if self.work_factor > passphrase.max_work_factor {
            return Err(Error::corrupt(format!(
                "the password stanza asks for a scrypt work factor of 2^{}, above this reader's limit of 2^{}",
                self.work_factor, passphrase.max_work_factor
            )));
        }
        let identity = derive(
            passphrase.secret.expose().as_bytes(),
            &self.salt,
            self.work_factor,
        )?;
        if identity.recipient().id() != self.inner.recipient_id {
            return Err(Error::new(
                ErrorKind::WrongKey,
                "the password does not open this backup: its password stanza was made for another password",
            )
            .with_hint(WRONG_PASSWORD_HINT));
        }
        self.inner
            .unwrap_with_info(&identity, WRAP_INFO)
            .map_err(|failure| {
                Error::corrupt(match failure {
                    UnwrapFailure::LowOrder => "the password stanza has an ephemeral key of low order (its shared secret is all zeros): the header was forged",
                    UnwrapFailure::Authentication => "the password stanza fails authentication (the header was modified)",
                })
            })
    }
}

/// The message of a reader holding a password for an archive without a type 4 stanza.
pub(crate) fn no_passphrase_stanza() -> Error {
    Error::new(
        ErrorKind::WrongKey,
        "this backup carries no password stanza: it was made before a backup password was set (or the password was removed); ask the operator",
    )
    .with_hint("the operator can decrypt or restore it with the agent's key; backups made after a password is set open with that password")
}

#[cfg(test)]
mod tests {
    use super::super::keys::KEY_LEN;
    use super::*;

    /// A small work factor: the logic is the same, and the tests stay fast.
    const FAST: u8 = 4;

    fn passphrase(text: &str) -> Passphrase {
        Passphrase::new(Secret::new(text))
    }

    #[test]
    fn a_stanza_opens_with_its_password_only() {
        let recipient = PassphraseRecipient::derive(&Secret::new("correct horse"), FAST).unwrap();
        let file_key: FileKey = Zeroizing::new([7u8; KEY_LEN]);
        let stanza = PassphraseStanza::wrap(&recipient, &file_key).unwrap();
        let parsed = PassphraseStanza::decode(&stanza.body()).unwrap();
        assert_eq!(
            *parsed.unwrap(&passphrase("correct horse")).unwrap(),
            *file_key
        );
        let e = parsed.unwrap(&passphrase("correct horsf")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongKey);
        assert!(e.message().contains("does not open this backup"), "{e}");
        assert!(!e.message().contains("horse"), "{e}");
    }

    #[test]
    fn each_password_change_draws_a_new_salt() {
        let secret = Secret::new("the same password");
        let a = PassphraseRecipient::derive(&secret, FAST).unwrap();
        let b = PassphraseRecipient::derive(&secret, FAST).unwrap();
        assert_ne!(a.salt(), b.salt());
        assert_ne!(a.id(), b.id());
        let again =
            PassphraseRecipient::derive_with_salt(b"the same password", FAST, *a.salt()).unwrap();
        assert_eq!(again, a);
        assert_eq!(
            PassphraseRecipient::from_parts(FAST, *a.salt(), *a.public_bytes()).unwrap(),
            a
        );
    }

    #[test]
    fn work_factors_out_of_bounds_are_refused_before_any_work() {
        let recipient = PassphraseRecipient::derive(&Secret::new("pw"), FAST).unwrap();
        let file_key: FileKey = Zeroizing::new([1u8; KEY_LEN]);
        let mut body = PassphraseStanza::wrap(&recipient, &file_key)
            .unwrap()
            .body();
        for log_n in [0, MAX_WORK_FACTOR + 1, 40, 255] {
            body[0] = log_n;
            // 2^40 would ask scrypt for 1 TiB: that this returns at all shows it never ran.
            let started = std::time::Instant::now();
            let e = PassphraseStanza::decode(&body).unwrap_err();
            assert!(started.elapsed() < std::time::Duration::from_millis(100));
            assert_eq!(e.kind(), ErrorKind::Corrupt);
            assert!(
                e.message()
                    .contains(&format!("a scrypt work factor of 2^{log_n};")),
                "{e}"
            );
        }
        assert!(PassphraseRecipient::from_parts(21, [0; 16], *recipient.public_bytes()).is_err());
        assert!(PassphraseRecipient::from_parts(FAST, [0; 16], [0; 32]).is_err());
        body[0] = 12;
        let limited = passphrase("pw").with_max_work_factor(10);
        let e = PassphraseStanza::decode(&body)
            .unwrap()
            .unwrap(&limited)
            .unwrap_err();
        assert!(
            e.message().contains("above this reader's limit of 2^10"),
            "{e}"
        );
    }

    #[test]
    fn a_body_of_another_length_is_invalid() {
        for len in [0, PASSPHRASE_BODY_LEN - 1, PASSPHRASE_BODY_LEN + 1] {
            let e = PassphraseStanza::decode(&vec![FAST; len]).unwrap_err();
            assert!(
                e.message()
                    .contains(&format!("a password stanza is {len} bytes long, not 105")),
                "{e}"
            );
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let shown = format!("{:?}", passphrase("hunter2hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
