//! The archive header: magic, version, payload salt, key stanzas and the header MAC
//! (`spec/archive-format.md`, "Header").

use std::io::Read;

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::context::BackupContext;
use super::keyring::Keyring;
use super::keys::{FileKey, KEY_LEN, Key, KeyId};
use super::passphrase::{PassphraseRecipient, PassphraseStanza, no_passphrase_stanza};
use super::recipient::{Recipient, X25519Stanza};
use super::stanza::{Stanza, SymmetricStanza};
use crate::compression::Algorithm;
use crate::error::{Error, ErrorKind, Result};

/// The first 8 bytes of every encrypted archive: `SBACKUP` and the format version 1.
pub const MAGIC: [u8; 8] = *b"SBACKUP\x01";
/// Length of the payload salt.
pub const SALT_LEN: usize = 16;
/// Length of the header MAC.
pub const MAC_LEN: usize = 32;
/// The most stanzas a header may hold.
pub const MAX_STANZAS: usize = 64;
/// The largest stanza body accepted.
pub const MAX_STANZA_BODY: usize = 4096;

const MAC_INFO: &[u8] = b"service-backup header mac v1";
const PAYLOAD_INFO: &[u8] = b"service-backup payload v1";

/// A parsed and authenticated header.
pub(crate) struct OpenedHeader {
    /// The key that the payload stream is encrypted under.
    pub payload_key: Zeroizing<[u8; KEY_LEN]>,
    /// The id of the keyring key, or of the identity's recipient, that opened the header.
    pub key_id: KeyId,
    /// The backup the archive is bound to; `None` for archives written before contexts.
    pub context: Option<BackupContext>,
}

/// Writes the header of a new archive for `key` (a type 1 stanza), every recipient (a
/// type 3 stanza each) and the backup password (a type 4 stanza), bound to `context` when
/// given; returns the header bytes and payload key.
pub(crate) fn seal(
    key: Option<&Key>,
    recipients: &[Recipient],
    passphrase: Option<&PassphraseRecipient>,
    context: Option<&BackupContext>,
) -> Result<(Vec<u8>, Zeroizing<[u8; KEY_LEN]>)> {
    if let Some(c) = context {
        c.validate()?;
    }
    let count = usize::from(key.is_some())
        + recipients.len()
        + usize::from(passphrase.is_some())
        + usize::from(context.is_some());
    if key.is_none() && recipients.is_empty() && passphrase.is_none() {
        return Err(Error::new(
            ErrorKind::Config,
            "an encrypted archive needs a key or a recipient",
        ));
    }
    if count > MAX_STANZAS {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "{} recipients are too many: a header holds at most {MAX_STANZAS} stanzas, the key, the password and the backup context included",
                recipients.len()
            ),
        ));
    }
    let mut file_key: FileKey = Zeroizing::new([0u8; KEY_LEN]);
    crate::random::fill(file_key.as_mut())?;
    let mut salt = [0u8; SALT_LEN];
    crate::random::fill(&mut salt)?;
    let mut stanzas = Vec::with_capacity(count);
    if let Some(key) = key {
        stanzas.push(Stanza::Symmetric(SymmetricStanza::wrap(key, &file_key)?));
    }
    for recipient in recipients {
        stanzas.push(Stanza::X25519(X25519Stanza::wrap(recipient, &file_key)?));
    }
    if let Some(passphrase) = passphrase {
        stanzas.push(Stanza::Passphrase(PassphraseStanza::wrap(
            passphrase, &file_key,
        )?));
    }
    stanzas.extend(context.map(|c| Stanza::Context(c.clone())));
    let header = encode(&salt, &stanzas, &file_key);
    Ok((header, payload_key(&file_key, &salt)))
}

/// Encodes a header with its MAC (deterministic: used by `seal` and by the test vectors).
pub(crate) fn encode(salt: &[u8; SALT_LEN], stanzas: &[Stanza], file_key: &FileKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(salt);
    let count = u16::try_from(stanzas.len()).expect("stanza count is bounded by MAX_STANZAS");
    out.extend_from_slice(&count.to_be_bytes());
    for stanza in stanzas {
        stanza.encode(&mut out);
    }
    let mac = header_mac(file_key, &out);
    out.extend_from_slice(&mac);
    out
}

/// Reads and authenticates a header from `input` with the keys of `keyring`.
///
/// Nothing of the payload is read. A header that names none of the keyring's keys is
/// refused with [`ErrorKind::WrongKey`]; any damage is [`ErrorKind::Corrupt`].
pub(crate) fn open<R: Read>(input: &mut R, keyring: &Keyring) -> Result<OpenedHeader> {
    let (raw, salt, stanzas, authenticated_len) = parse(input)?;
    let (file_key, key_id) = unwrap_file_key(&stanzas, keyring)?;
    let expected = header_mac(&file_key, &raw[..authenticated_len]);
    if !bool::from(expected.ct_eq(&raw[authenticated_len..])) {
        return Err(Error::corrupt(
            "the archive header fails authentication (it was modified)",
        ));
    }
    Ok(OpenedHeader {
        payload_key: payload_key(&file_key, &salt),
        key_id,
        context: only_context(stanzas)?,
    })
}

/// What a header says before it is authenticated: the recipients it is encrypted for and
/// the backup it names. Anyone could have written these; only [`open`] proves them.
pub(crate) struct PeekedHeader {
    /// The ids of the recipients of its type 3 stanzas.
    pub recipient_ids: Vec<KeyId>,
    /// The backup its context stanza names, if any.
    pub context: Option<BackupContext>,
}

/// Parses a header without authenticating it (for an agent that holds recipients only).
pub(crate) fn peek<R: Read>(input: &mut R) -> Result<PeekedHeader> {
    let (_, _, stanzas, _) = parse(input)?;
    let recipient_ids = stanzas
        .iter()
        .filter_map(|s| match s {
            Stanza::X25519(s) => Some(s.recipient_id),
            Stanza::Symmetric(_)
            | Stanza::Passphrase(_)
            | Stanza::Context(_)
            | Stanza::Unknown { .. } => None,
        })
        .collect();
    Ok(PeekedHeader {
        recipient_ids,
        context: only_context(stanzas)?,
    })
}

/// The raw header, its salt, its stanzas and the length its MAC covers.
type Parsed = (Vec<u8>, [u8; SALT_LEN], Vec<Stanza>, usize);

/// Reads and parses a header from `input`; its MAC is read, not checked.
fn parse<R: Read>(input: &mut R) -> Result<Parsed> {
    let mut raw = Vec::with_capacity(128);
    read_exact_or(
        input,
        &mut raw,
        MAGIC.len(),
        "the archive is empty or shorter than its header",
    )?;
    check_magic(&raw)?;
    read_exact_or(
        input,
        &mut raw,
        SALT_LEN + 2,
        "the archive header is truncated",
    )?;
    let salt: [u8; SALT_LEN] = raw[MAGIC.len()..MAGIC.len() + SALT_LEN]
        .try_into()
        .expect("slice has SALT_LEN bytes");
    let count = usize::from(u16::from_be_bytes([raw[raw.len() - 2], raw[raw.len() - 1]]));
    if count == 0 || count > MAX_STANZAS {
        return Err(Error::corrupt(format!(
            "the archive header lists {count} key stanzas (1 to {MAX_STANZAS} are valid)"
        )));
    }
    let mut stanzas = Vec::with_capacity(count);
    for _ in 0..count {
        let start = raw.len();
        read_exact_or(input, &mut raw, 6, "the archive header is truncated")?;
        let kind = u16::from_be_bytes([raw[start], raw[start + 1]]);
        let len = u32::from_be_bytes(raw[start + 2..start + 6].try_into().expect("4 bytes"));
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_STANZA_BODY {
            return Err(Error::corrupt(format!(
                "a key stanza in the archive header claims {len} bytes (at most {MAX_STANZA_BODY})"
            )));
        }
        read_exact_or(input, &mut raw, len, "the archive header is truncated")?;
        stanzas.push(Stanza::decode(kind, &raw[start + 6..])?);
    }
    // One password per archive: a second stanza would only make a reader derive twice.
    let passwords = stanzas
        .iter()
        .filter(|s| matches!(s, Stanza::Passphrase(_)))
        .count();
    if passwords > 1 {
        return Err(Error::corrupt(format!(
            "the archive header holds {passwords} password stanzas (at most 1)"
        )));
    }
    let authenticated_len = raw.len();
    read_exact_or(input, &mut raw, MAC_LEN, "the archive header is truncated")?;
    Ok((raw, salt, stanzas, authenticated_len))
}

/// The context stanza of a header, refusing more than one.
fn only_context(stanzas: Vec<Stanza>) -> Result<Option<BackupContext>> {
    let mut contexts = stanzas.into_iter().filter_map(|s| match s {
        Stanza::Context(c) => Some(c),
        Stanza::Symmetric(_)
        | Stanza::X25519(_)
        | Stanza::Passphrase(_)
        | Stanza::Unknown { .. } => None,
    });
    let context = contexts.next();
    let more = contexts.count();
    if more > 0 {
        return Err(Error::corrupt(format!(
            "the archive header holds {} context stanzas (at most 1)",
            more + 1
        )));
    }
    Ok(context)
}

/// The length of the header that starts `prefix`, from its stanza lengths alone (nothing
/// is authenticated); `None` if `prefix` is too short to tell. Malformed counts and
/// lengths are refused as [`open`] refuses them.
pub(crate) fn header_len(prefix: &[u8]) -> Result<Option<usize>> {
    if prefix.len() < MAGIC.len() {
        return Ok(None);
    }
    check_magic(&prefix[..MAGIC.len()])?;
    let mut at = MAGIC.len() + SALT_LEN;
    let Some(count) = prefix.get(at..at + 2) else {
        return Ok(None);
    };
    let count = usize::from(u16::from_be_bytes([count[0], count[1]]));
    if count == 0 || count > MAX_STANZAS {
        return Err(Error::corrupt(format!(
            "the archive header lists {count} key stanzas (1 to {MAX_STANZAS} are valid)"
        )));
    }
    at += 2;
    for _ in 0..count {
        let Some(head) = prefix.get(at..at + 6) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(head[2..6].try_into().expect("4 bytes"));
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_STANZA_BODY {
            return Err(Error::corrupt(format!(
                "a key stanza in the archive header claims {len} bytes (at most {MAX_STANZA_BODY})"
            )));
        }
        at += 6 + len;
    }
    Ok(Some(at + MAC_LEN))
}

fn check_magic(raw: &[u8]) -> Result<()> {
    if raw[..7] == MAGIC[..7] && raw[7] != MAGIC[7] {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "the archive is of format version {}, which this version of service-backup does not read",
                raw[7]
            ),
        )
        .with_hint("use a newer service-backup to read it"));
    }
    if raw != MAGIC {
        let what = match Algorithm::sniff(raw) {
            Some(Algorithm::Gzip) => "the archive is a plain .tar.gz, not encrypted",
            Some(Algorithm::Zstd) => "the archive is a plain .tar.zst, not encrypted",
            None => "the input is not a service-backup encrypted archive",
        };
        return Err(Error::new(ErrorKind::Corrupt, what).with_hint(
            "an encrypted archive starts with SBACKUP; plain .tar.gz and .tar.zst backups need no decryption",
        ));
    }
    Ok(())
}

/// Recovers the file key from the first stanza that a key, identity or password of
/// `keyring` opens.
///
/// Every stanza for a key or identity we hold is tried: one damaged stanza does not hide
/// another. The password stanza comes last, as scrypt takes a second where the others take
/// microseconds. Nothing is tried when nothing fits, and the error then names what the
/// header asks for and what was given.
fn unwrap_file_key(stanzas: &[Stanza], keyring: &Keyring) -> Result<(FileKey, KeyId)> {
    let mut tried = 0;
    let mut first_error = None;
    let cheap_first = stanzas
        .iter()
        .filter(|s| !matches!(s, Stanza::Passphrase(_)))
        .chain(
            stanzas
                .iter()
                .filter(|s| matches!(s, Stanza::Passphrase(_))),
        );
    for stanza in cheap_first {
        let result = match stanza {
            Stanza::Symmetric(s) => keyring.find(s.key_id).map(|k| (s.unwrap(k), s.key_id)),
            Stanza::X25519(s) => keyring
                .find_identity(s.recipient_id)
                .map(|i| (s.unwrap(i), s.recipient_id)),
            Stanza::Passphrase(s) => keyring
                .passphrase()
                .map(|p| (s.unwrap(p), s.inner.recipient_id)),
            Stanza::Context(_) | Stanza::Unknown { .. } => None,
        };
        let Some((result, id)) = result else {
            continue;
        };
        tried += 1;
        match result {
            Ok(file_key) => return Ok((file_key, id)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error
        .filter(|_| tried > 0)
        .unwrap_or_else(|| wrong_key(stanzas, keyring)))
}

fn wrong_key(stanzas: &[Stanza], keyring: &Keyring) -> Error {
    // A password was given and the archive has no stanza for one (a password stanza, when
    // there is one, is always tried): older than the password.
    if keyring.passphrase().is_some() {
        return no_passphrase_stanza();
    }
    let mut wanted = Vec::new();
    for stanza in stanzas {
        match stanza {
            Stanza::Symmetric(s) => wanted.push(format!("key id {}", s.key_id)),
            Stanza::X25519(s) => wanted.push(format!("recipient {}", s.recipient_id)),
            Stanza::Passphrase(_) => wanted.push("a backup password".to_string()),
            Stanza::Context(_) | Stanza::Unknown { .. } => {}
        }
    }
    let wanted = if wanted.is_empty() {
        "a kind of key this version does not know".to_string()
    } else {
        wanted.join(" or ")
    };
    let keys: Vec<String> = keyring.ids().iter().map(ToString::to_string).collect();
    let identities: Vec<String> = keyring
        .identities()
        .iter()
        .map(|i| i.recipient().id().to_string())
        .collect();
    let mut held = Vec::new();
    if !keys.is_empty() {
        held.push(format!("the given keys have id {}", keys.join(", ")));
    }
    if !identities.is_empty() {
        held.push(format!(
            "the given identities are for recipient {}",
            identities.join(", ")
        ));
    }
    let (held, hint) = if !held.is_empty() {
        (
            held.join(" and "),
            "use the key or identity the backup was made for; keep rotated keys in encryption.previous_key_files",
        )
    } else if keyring.recipients().is_empty() {
        (
            "no key was given".to_string(),
            "use the key the backup was made with; keep rotated keys in encryption.previous_key_files",
        )
    } else {
        (
            "only recipients are configured here: they encrypt new backups and cannot open any"
                .to_string(),
            "restore with --identity FILE, the identity file of a recipient (kept off this machine)",
        )
    };
    Error::new(
        ErrorKind::WrongKey,
        format!("the archive was encrypted for {wanted}, but {held}"),
    )
    .with_hint(hint)
}

fn read_exact_or<R: Read>(input: &mut R, raw: &mut Vec<u8>, n: usize, what: &str) -> Result<()> {
    let start = raw.len();
    raw.resize(start + n, 0);
    let mut filled = 0;
    while filled < n {
        match input.read(&mut raw[start + filled..]) {
            Ok(0) => return Err(Error::corrupt(what)),
            Ok(k) => filled += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(super::from_io(e, "read the archive")),
        }
    }
    Ok(())
}

fn header_mac(file_key: &FileKey, header: &[u8]) -> [u8; MAC_LEN] {
    let hk = Hkdf::<Sha256>::new(None, file_key.as_ref());
    let mut mac_key = Zeroizing::new([0u8; 32]);
    hk.expand(MAC_INFO, mac_key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    let mut mac =
        Hmac::<Sha256>::new_from_slice(mac_key.as_ref()).expect("HMAC takes keys of any length");
    mac.update(header);
    mac.finalize().into_bytes().into()
}

/// The payload key of a vector archive.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn payload_key_for_vectors(
    file_key: &FileKey,
    salt: &[u8; SALT_LEN],
) -> Zeroizing<[u8; KEY_LEN]> {
    payload_key(file_key, salt)
}

fn payload_key(file_key: &FileKey, salt: &[u8; SALT_LEN]) -> Zeroizing<[u8; KEY_LEN]> {
    let hk = Hkdf::<Sha256>::new(Some(salt), file_key.as_ref());
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    hk.expand(PAYLOAD_INFO, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key
}
