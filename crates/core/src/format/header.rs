//! The archive header: magic, version, payload salt, key stanzas and the header MAC
//! (`spec/archive-format.md`, "Header").

use std::io::Read;

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::context::BackupContext;
use super::keys::{FileKey, KEY_LEN, Key, KeyId, Keyring};
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
    /// The id of the keyring key that opened the header.
    pub key_id: KeyId,
    /// The backup the archive is bound to; `None` for archives written before contexts.
    pub context: Option<BackupContext>,
}

/// Writes the header of a new archive for `key`, bound to `context` when given; returns
/// the header bytes and payload key.
pub(crate) fn seal(
    key: &Key,
    context: Option<&BackupContext>,
) -> Result<(Vec<u8>, Zeroizing<[u8; KEY_LEN]>)> {
    if let Some(c) = context {
        c.validate()?;
    }
    let mut file_key: FileKey = Zeroizing::new([0u8; KEY_LEN]);
    crate::random::fill(file_key.as_mut())?;
    let mut salt = [0u8; SALT_LEN];
    crate::random::fill(&mut salt)?;
    let stanza = SymmetricStanza::wrap(key, &file_key)?;
    let mut stanzas = vec![Stanza::Symmetric(stanza)];
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
    let authenticated_len = raw.len();
    read_exact_or(input, &mut raw, MAC_LEN, "the archive header is truncated")?;

    let symmetric: Vec<&SymmetricStanza> = stanzas
        .iter()
        .filter_map(|s| match s {
            Stanza::Symmetric(s) => Some(s),
            Stanza::Context(_) | Stanza::Unknown { .. } => None,
        })
        .collect();
    // Every stanza for a key we hold is tried: one damaged stanza does not hide another.
    let mut candidates = symmetric
        .iter()
        .filter_map(|s| keyring.find(s.key_id).map(|k| (*s, k)))
        .peekable();
    if candidates.peek().is_none() {
        return Err(wrong_key(&symmetric, keyring));
    }
    let mut opened = None;
    let mut first_error = None;
    for (stanza, key) in candidates {
        match stanza.unwrap(key) {
            Ok(file_key) => {
                opened = Some((file_key, key));
                break;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let Some((file_key, key)) = opened else {
        return Err(first_error.expect("at least one stanza was tried"));
    };
    let expected = header_mac(&file_key, &raw[..authenticated_len]);
    if !bool::from(expected.ct_eq(&raw[authenticated_len..])) {
        return Err(Error::corrupt(
            "the archive header fails authentication (it was modified)",
        ));
    }
    let mut contexts = stanzas.into_iter().filter_map(|s| match s {
        Stanza::Context(c) => Some(c),
        Stanza::Symmetric(_) | Stanza::Unknown { .. } => None,
    });
    let context = contexts.next();
    let more = contexts.count();
    if more > 0 {
        return Err(Error::corrupt(format!(
            "the archive header holds {} context stanzas (at most 1)",
            more + 1
        )));
    }
    Ok(OpenedHeader {
        payload_key: payload_key(&file_key, &salt),
        key_id: key.id(),
        context,
    })
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

fn wrong_key(stanzas: &[&SymmetricStanza], keyring: &Keyring) -> Error {
    let wanted: Vec<String> = stanzas.iter().map(|s| s.key_id.to_string()).collect();
    let held: Vec<String> = keyring.ids().iter().map(ToString::to_string).collect();
    let wanted = if wanted.is_empty() {
        "a kind of key this version does not know".to_string()
    } else {
        format!("key id {}", wanted.join(" or "))
    };
    let held = if held.is_empty() {
        "no key was given".to_string()
    } else {
        format!("the given keys have id {}", held.join(", "))
    };
    Error::new(
        ErrorKind::WrongKey,
        format!("the archive was encrypted for {wanted}, but {held}"),
    )
    .with_hint(
        "use the key the backup was made with; keep rotated keys in encryption.previous_key_files",
    )
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
