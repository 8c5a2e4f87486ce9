//! Public-key recipients (X25519): the recipient string an agent encrypts for, the identity
//! that decrypts, and the type 3 stanza that wraps the file key for one recipient
//! (`spec/archive-format.md`, "Type 3").

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{AeadInOut as _, KeyInit as _};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32m, Hrp};
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::keys::{FileKey, KEY_ID_LEN, KEY_LEN, KeyId, TAG_LEN};
use crate::error::{Error, ErrorKind, Result};

/// Stanza type of the file key wrapped for an X25519 recipient.
pub const STANZA_X25519: u16 = 3;
/// Body length of a type 3 stanza: recipient key id, ephemeral public key, wrapped key, tag.
pub const X25519_BODY_LEN: usize = KEY_ID_LEN + 32 + KEY_LEN + TAG_LEN;

/// Human-readable part of recipient strings (`sbrec1…`).
const RECIPIENT_HRP: &str = "sbrec";
/// Human-readable part of identities (`SB-IDENTITY-1…`, written in capitals).
const IDENTITY_HRP: &str = "sb-identity-";
const RECIPIENT_ID_INFO: &[u8] = b"service-backup recipient id v1";
const WRAP_INFO: &[u8] = b"service-backup x25519 stanza v1";

const RECIPIENT_HINT: &str = "a recipient is the `sbrec1…` line that `service-backup keygen --recipient FILE` prints; copy it whole";

/// An X25519 public key that new archives are encrypted for; it cannot decrypt.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Recipient {
    public: [u8; 32],
    id: KeyId,
}

impl Recipient {
    /// A recipient from its 32-byte public key.
    pub fn from_bytes(public: [u8; 32]) -> Self {
        let hk = Hkdf::<Sha256>::new(None, &public);
        let mut id = [0u8; KEY_ID_LEN];
        hk.expand(RECIPIENT_ID_INFO, &mut id)
            .expect("8 bytes is a valid HKDF-SHA256 output length");
        Self {
            public,
            id: KeyId(id),
        }
    }

    /// Parses a recipient string (`sbrec1…`, Bech32m); a bad checksum or length is a
    /// configuration error.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        // An identity pasted here by mistake is a secret: never show any of it.
        if text.to_ascii_lowercase().starts_with(IDENTITY_HRP) {
            return Err(Error::new(
                ErrorKind::Config,
                "this is an identity (a secret key), not a recipient: give its recipient \
                 string (keygen --recipient prints it)",
            )
            .with_hint(RECIPIENT_HINT));
        }
        let shown = shown_prefix(text);
        let bad = |why: String| {
            Error::new(
                ErrorKind::Config,
                format!("the recipient {shown} is not valid: {why}"),
            )
            .with_hint(RECIPIENT_HINT)
        };
        if !text.to_ascii_lowercase().starts_with("sbrec1") {
            return Err(bad("it does not start with sbrec1".into()));
        }
        let parsed = CheckedHrpstring::new::<Bech32m>(text).map_err(|_| {
            bad(
                "its checksum or characters are wrong: a character was changed, added or left out"
                    .into(),
            )
        })?;
        let bytes: Vec<u8> = parsed.byte_iter().collect();
        let public: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            bad(format!(
                "it holds a key of {} bytes, not 32 (was it cut short?)",
                bytes.len()
            ))
        })?;
        // Clamped scalars are multiples of the cofactor: any one of them agrees on all
        // zeros with a point of low order, and with no other point.
        let probe = StaticSecret::from([1u8; 32]).diffie_hellman(&PublicKey::from(public));
        if !probe.was_contributory() {
            return Err(bad(
                "it is a point of low order, with which no secret can be agreed".into(),
            ));
        }
        Ok(Self::from_bytes(public))
    }

    /// The public key bytes.
    pub fn public_bytes(&self) -> &[u8; 32] {
        &self.public
    }

    /// The recipient's public fingerprint, named like a key id.
    pub fn id(&self) -> KeyId {
        self.id
    }
}

/// The largest identity file read.
const MAX_IDENTITY_FILE: u64 = 64 * 1024;

/// Longest bad recipient string shown whole in a message.
const SHOWN_CHARS: usize = 20;

/// A bad recipient string as messages show it: quoted, cut to its first characters when
/// long, as a long string may be some other secret pasted by mistake.
fn shown_prefix(text: &str) -> String {
    if text.chars().count() <= SHOWN_CHARS {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(12).collect();
    format!("{head:?}… ({} characters)", text.chars().count())
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hrp = Hrp::parse(RECIPIENT_HRP).expect("a valid human-readable part");
        let text = bech32::encode_lower::<Bech32m>(hrp, &self.public).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({self}, id={})", self.id)
    }
}

impl std::str::FromStr for Recipient {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// The X25519 secret key that opens archives made for its recipient; wiped when dropped,
/// never printed.
#[derive(Clone)]
pub struct Identity {
    secret: StaticSecret,
    recipient: Recipient,
}

impl Identity {
    /// An identity from its 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let recipient = Recipient::from_bytes(PublicKey::from(&secret).to_bytes());
        Self { secret, recipient }
    }

    /// A new random identity from the operating system's generator.
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        crate::random::fill(bytes.as_mut())?;
        Ok(Self::from_bytes(*bytes))
    }

    /// Parses one identity line (`SB-IDENTITY-1…`, Bech32m).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::new(ErrorKind::Config, format!("the identity is not valid: {why}"))
                .with_hint("an identity is the SB-IDENTITY-1… line that `service-backup keygen --recipient FILE` writes")
        };
        let text = text.trim();
        let parsed = CheckedHrpstring::new::<Bech32m>(text)
            .map_err(|_| bad("its checksum or characters are wrong"))?;
        if parsed.hrp().to_lowercase() != IDENTITY_HRP {
            return Err(bad("it does not start with SB-IDENTITY-1"));
        }
        let bytes = Zeroizing::new(parsed.byte_iter().collect::<Vec<u8>>());
        let secret: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| bad("it does not hold 32 bytes"))?;
        Ok(Self::from_bytes(secret))
    }

    /// Reads an identity file: one identity per line, `#` comment lines and blank lines
    /// skipped; refuses a file that other users may read or write.
    pub fn from_file(path: &Path) -> Result<Vec<Self>> {
        use std::io::Read as _;
        super::keys::check_key_file_mode(path)?;
        let file =
            std::fs::File::open(path).map_err(|e| Error::io("read identity file", path, e))?;
        // Read no more than the cap (and one byte to tell): a wrong path given as the
        // identity file, a huge file, must not be read whole.
        let mut text = Zeroizing::new(String::new());
        file.take(MAX_IDENTITY_FILE + 1)
            .read_to_string(&mut text)
            .map_err(|e| Error::io("read identity file", path, e))?;
        if text.len() as u64 > MAX_IDENTITY_FILE {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "identity file {} is larger than 64 KiB; an identity file holds a few \
                     SB-IDENTITY-1… lines",
                    path.display()
                ),
            )
            .with_hint("give the file that `service-backup keygen --recipient FILE` wrote"));
        }
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.push(Self::parse(line).map_err(|e| {
                e.context(format!("identity file {}, line {}", path.display(), n + 1))
            })?);
        }
        if out.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("identity file {} holds no identity", path.display()),
            )
            .with_hint("write one with `service-backup keygen --recipient FILE`"));
        }
        Ok(out)
    }

    /// The identity as its `SB-IDENTITY-1…` line, for writing an identity file.
    pub fn to_text(&self) -> Zeroizing<String> {
        let hrp = Hrp::parse(IDENTITY_HRP).expect("a valid human-readable part");
        let bytes = Zeroizing::new(self.secret.to_bytes());
        Zeroizing::new(
            bech32::encode_upper::<Bech32m>(hrp, bytes.as_ref())
                .expect("32 bytes fit in a Bech32m string"),
        )
    }

    /// The recipient that archives for this identity are encrypted to.
    pub fn recipient(&self) -> Recipient {
        self.recipient
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Identity(recipient id={}, <redacted>)",
            self.recipient.id
        )
    }
}

/// The file key wrapped for the X25519 recipient `recipient_id`.
#[derive(Clone, Debug)]
pub(crate) struct X25519Stanza {
    pub recipient_id: KeyId,
    pub ephemeral: [u8; 32],
    /// The wrapped file key followed by its tag.
    pub wrapped: [u8; KEY_LEN + TAG_LEN],
}

impl X25519Stanza {
    /// Wraps `file_key` for `recipient` under a fresh ephemeral key pair.
    pub fn wrap(recipient: &Recipient, file_key: &FileKey) -> Result<Self> {
        let mut secret = Zeroizing::new([0u8; 32]);
        crate::random::fill(secret.as_mut())?;
        Self::wrap_with_ephemeral(recipient, file_key, *secret)
    }

    /// Wraps `file_key` for `recipient` with the given ephemeral secret (deterministic, for
    /// test vectors).
    pub fn wrap_with_ephemeral(
        recipient: &Recipient,
        file_key: &FileKey,
        ephemeral_secret: [u8; 32],
    ) -> Result<Self> {
        Self::wrap_with_info(recipient, file_key, ephemeral_secret, WRAP_INFO)
    }

    /// Wraps `file_key` for `recipient` with a wrap key derived under `info`: type 3 and
    /// the passphrase stanza (type 4) differ only in it.
    pub(super) fn wrap_with_info(
        recipient: &Recipient,
        file_key: &FileKey,
        ephemeral_secret: [u8; 32],
        info: &[u8],
    ) -> Result<Self> {
        let secret = StaticSecret::from(ephemeral_secret);
        let ephemeral = PublicKey::from(&secret).to_bytes();
        let shared = secret.diffie_hellman(&PublicKey::from(recipient.public));
        if !shared.was_contributory() {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "the recipient {recipient} is a low-order point: no secret can be agreed with it"
                ),
            ));
        }
        let cipher = wrap_cipher(shared.as_bytes(), &ephemeral, &recipient.public, info);
        let mut wrapped = [0u8; KEY_LEN + TAG_LEN];
        wrapped[..KEY_LEN].copy_from_slice(file_key.as_ref());
        let tag = cipher
            .encrypt_inout_detached(
                &Nonce::from([0u8; 12]),
                &recipient.id.0,
                (&mut wrapped[..KEY_LEN]).into(),
            )
            .expect("AES-GCM encrypts 32 bytes");
        wrapped[KEY_LEN..].copy_from_slice(&tag);
        Ok(Self {
            recipient_id: recipient.id,
            ephemeral,
            wrapped,
        })
    }

    /// The body of the stanza.
    pub fn body(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(X25519_BODY_LEN);
        body.extend_from_slice(&self.recipient_id.0);
        body.extend_from_slice(&self.ephemeral);
        body.extend_from_slice(&self.wrapped);
        body
    }

    /// Parses a type 3 body, which must be exactly [`X25519_BODY_LEN`] bytes.
    pub fn decode(body: &[u8]) -> Result<Self> {
        if body.len() != X25519_BODY_LEN {
            return Err(Error::corrupt(format!(
                "a recipient key stanza is {} bytes long, not {X25519_BODY_LEN}",
                body.len()
            )));
        }
        let (id, rest) = body.split_at(KEY_ID_LEN);
        let (ephemeral, wrapped) = rest.split_at(32);
        Ok(Self {
            recipient_id: KeyId(id.try_into().expect("KEY_ID_LEN bytes")),
            ephemeral: ephemeral.try_into().expect("32 bytes"),
            wrapped: wrapped.try_into().expect("KEY_LEN + TAG_LEN bytes"),
        })
    }

    /// Recovers the file key with `identity`, whose recipient id matches this stanza's.
    pub fn unwrap(&self, identity: &Identity) -> Result<FileKey> {
        self.unwrap_with_info(identity, WRAP_INFO)
            .map_err(|failure| match failure {
                UnwrapFailure::LowOrder => Error::corrupt(format!(
                    "the key stanza for recipient {} has an ephemeral key of low order (its shared secret is all zeros): the header was forged",
                    self.recipient_id
                )),
                UnwrapFailure::Authentication => Error::corrupt(format!(
                    "the key stanza for recipient {} fails authentication (the header was modified)",
                    self.recipient_id
                )),
            })
    }

    /// Recovers the file key with `identity` and a wrap key derived under `info`.
    pub(super) fn unwrap_with_info(
        &self,
        identity: &Identity,
        info: &[u8],
    ) -> std::result::Result<FileKey, UnwrapFailure> {
        let shared = identity
            .secret
            .diffie_hellman(&PublicKey::from(self.ephemeral));
        if !shared.was_contributory() {
            return Err(UnwrapFailure::LowOrder);
        }
        let cipher = wrap_cipher(
            shared.as_bytes(),
            &self.ephemeral,
            &identity.recipient.public,
            info,
        );
        let mut file_key: FileKey = Zeroizing::new([0u8; KEY_LEN]);
        file_key.copy_from_slice(&self.wrapped[..KEY_LEN]);
        let tag = Tag::try_from(&self.wrapped[KEY_LEN..]).expect("TAG_LEN bytes");
        cipher
            .decrypt_inout_detached(
                &Nonce::from([0u8; 12]),
                &self.recipient_id.0,
                file_key.as_mut_slice().into(),
                &tag,
            )
            .map_err(|_| UnwrapFailure::Authentication)?;
        Ok(file_key)
    }
}

/// Why an X25519 wrap did not open; each stanza type words its own message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UnwrapFailure {
    /// The ephemeral key is of low order: the shared secret is all zeros.
    LowOrder,
    /// The wrapped key fails authentication.
    Authentication,
}

/// The AES-256-GCM cipher of a type 3 (or 4) stanza: its key is derived from the shared
/// secret, salted with both public keys so that it belongs to this one agreement.
fn wrap_cipher(
    shared: &[u8; 32],
    ephemeral: &[u8; 32],
    recipient: &[u8; 32],
    info: &[u8],
) -> Aes256Gcm {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral);
    salt[32..].copy_from_slice(recipient);
    let hk = Hkdf::<Sha256>::new(Some(&salt), shared);
    let mut wrap_key = Zeroizing::new([0u8; KEY_LEN]);
    hk.expand(info, wrap_key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Aes256Gcm::new(&(*wrap_key).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_strings_round_trip_and_name_their_key() {
        let identity = Identity::generate().unwrap();
        let text = identity.recipient().to_string();
        assert!(text.starts_with("sbrec1"), "{text}");
        let parsed = Recipient::parse(&text).unwrap();
        assert_eq!(parsed, identity.recipient());
        assert_eq!(Recipient::parse(&text.to_uppercase()).unwrap(), parsed);
        let again = Identity::parse(&identity.to_text()).unwrap();
        assert_eq!(again.recipient(), identity.recipient());
        assert!(identity.to_text().starts_with("SB-IDENTITY-1"));
    }

    #[test]
    fn a_changed_character_or_wrong_length_is_refused() {
        let text = Identity::generate().unwrap().recipient().to_string();
        let mut chars: Vec<char> = text.chars().collect();
        let i = chars.len() - 10;
        chars[i] = if chars[i] == 'q' { 'p' } else { 'q' };
        let typo: String = chars.into_iter().collect();
        let e = Recipient::parse(&typo).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("checksum"), "{e}");

        let hrp = Hrp::parse(RECIPIENT_HRP).unwrap();
        let short = bech32::encode_lower::<Bech32m>(hrp, &[7u8; 31]).unwrap();
        let e = Recipient::parse(&short).unwrap_err();
        assert!(e.message().contains("31 bytes, not 32"), "{e}");

        let zero = bech32::encode_lower::<Bech32m>(hrp, &[0u8; 32]).unwrap();
        let e = Recipient::parse(&zero).unwrap_err();
        assert!(e.message().contains("a point of low order"), "{e}");

        let e = Recipient::parse("age1qqqq").unwrap_err();
        assert!(e.message().contains("does not start with sbrec1"), "{e}");
        assert!(e.message().contains("\"age1qqqq\""), "{e}");
    }

    #[test]
    fn an_identity_or_a_long_string_is_never_shown_whole() {
        let identity = Identity::generate().unwrap();
        let secret = identity.to_text();
        for text in [(*secret).clone(), secret.to_lowercase()] {
            let e = Recipient::parse(&text).unwrap_err();
            let shown = format!("{e} {}", e.hint().unwrap_or_default());
            assert!(
                shown.contains("this is an identity (a secret key), not a recipient"),
                "{shown}"
            );
            assert!(!shown.contains(&text[12..]), "{shown}");
        }
        let long = format!("sbrec1{}", "x".repeat(60));
        let e = Recipient::parse(&long).unwrap_err();
        assert!(!e.message().contains(&long), "{e}");
        assert!(
            e.message().contains("\"sbrec1xxxxxx\"… (66 characters)"),
            "{e}"
        );
    }

    #[test]
    fn debug_never_shows_the_identity() {
        let identity = Identity::generate().unwrap();
        let shown = format!("{identity:?}");
        assert!(!shown.contains(identity.to_text().as_str()));
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn a_stanza_opens_with_its_identity_only() {
        let alice = Identity::generate().unwrap();
        let bob = Identity::generate().unwrap();
        let file_key: FileKey = Zeroizing::new([9u8; KEY_LEN]);
        let stanza = X25519Stanza::wrap(&alice.recipient(), &file_key).unwrap();
        let parsed = X25519Stanza::decode(&stanza.body()).unwrap();
        assert_eq!(*parsed.unwrap(&alice).unwrap(), *file_key);
        let e = parsed.unwrap(&bob).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        let mut low = parsed.clone();
        low.ephemeral = [0u8; 32];
        let e = low.unwrap(&alice).unwrap_err();
        assert!(e.message().contains("low order"), "{e}");
        assert!(X25519Stanza::decode(&[0u8; X25519_BODY_LEN - 1]).is_err());
    }

    #[test]
    fn identity_files_skip_comments_and_refuse_open_modes() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.txt");
        let a = Identity::generate().unwrap();
        let b = Identity::generate().unwrap();
        let text = format!(
            "# recipient: {}\n\n{}\n  # another\n{}\n",
            a.recipient(),
            a.to_text().as_str(),
            b.to_text().as_str()
        );
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ids = Identity::from_file(&path).unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[1].recipient(), b.recipient());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Identity::from_file(&path).is_err());
        std::fs::write(&path, "# nothing\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = Identity::from_file(&path).unwrap_err();
        assert!(e.message().contains("holds no identity"), "{e}");
        // Attack finding 13: a file of 200 MB was read whole. Over 64 KiB is refused.
        let big = format!("{}\n{}", a.to_text().as_str(), "#".repeat(64 * 1024));
        std::fs::write(&path, big).unwrap();
        let e = Identity::from_file(&path).unwrap_err();
        assert!(e.message().contains("is larger than 64 KiB"), "{e}");
        let fits = format!("{}\n{}", a.to_text().as_str(), "#".repeat(60 * 1024));
        std::fs::write(&path, fits).unwrap();
        assert_eq!(Identity::from_file(&path).unwrap().len(), 1);
    }
}
