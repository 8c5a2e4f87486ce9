//! Host key pinning: the `fingerprint` setting, and the key a server presents.
//!
//! Three spellings are accepted, one or more per setting (one a line):
//! - `SHA256:<base64>`, as `ssh-keygen -l` prints it;
//! - `MD5:aa:bb:…` or `aa:bb:…`, as `ssh-keygen -l -E md5` and older OpenSSH print it;
//! - a `known_hosts` line (`[host]:port ssh-ed25519 AAAA…`, as `ssh-keyscan` prints it), which is
//!   what the original release wrote to its `known_hosts` file.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use md5::Md5;
use service_backup_core::{Error, ErrorKind, Result};
use sha2::{Digest as _, Sha256};
use ssh2::{HostKeyType, Session};

/// Host key algorithm preferences, one per key type, tried in turn until the server
/// presents the pinned key (a server may hold several host keys, and the fingerprint in the
/// configuration names one of them).
pub(crate) const KEY_FAMILIES: [&str; 5] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512,rsa-sha2-256,ssh-rsa",
];

/// One accepted host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pin {
    Sha256(Vec<u8>),
    Md5(Vec<u8>),
    Key { family: &'static str, blob: Vec<u8> },
}

/// The host keys the configuration accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostKeyPins(Vec<Pin>);

/// The host key a server presented in one handshake.
#[derive(Debug, Clone)]
pub(crate) struct SeenKey {
    blob: Vec<u8>,
    family: &'static str,
}

fn invalid(what: &str) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("the scp `fingerprint` is not a host key fingerprint: {what}"),
    )
    .with_hint(
        "give it as `ssh-keygen -l -f <host key>.pub` prints it (SHA256:… or MD5:aa:bb:…), \
         or as a known_hosts line",
    )
}

/// The preference string of a public key type.
fn family_of_type(key_type: &str) -> Option<&'static str> {
    match key_type {
        "ssh-ed25519" => Some(KEY_FAMILIES[0]),
        "ecdsa-sha2-nistp256" => Some(KEY_FAMILIES[1]),
        "ecdsa-sha2-nistp384" => Some(KEY_FAMILIES[2]),
        "ecdsa-sha2-nistp521" => Some(KEY_FAMILIES[3]),
        "ssh-rsa" => Some(KEY_FAMILIES[4]),
        _ => None,
    }
}

/// Whether `key_type` is a key type of OpenSSH's that the agent does not check (security
/// keys, certificates, DSA): ssh skips such `known_hosts` lines, and so does the agent.
pub(crate) fn foreign_type(key_type: &str) -> bool {
    family_of_type(key_type).is_none()
        && ["ssh-", "sk-", "ecdsa-", "x509v3-"]
            .iter()
            .any(|prefix| key_type.starts_with(prefix))
}

fn parse_md5(text: &str) -> Option<Vec<u8>> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|pair| {
            (pair.len() == 2)
                .then(|| u8::from_str_radix(pair, 16).ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    (bytes.len() == 16).then_some(bytes)
}

fn parse_line(line: &str) -> Result<Option<Pin>> {
    if let Some(rest) = line
        .strip_prefix("SHA256:")
        .or_else(|| line.strip_prefix("sha256:"))
    {
        let hash = STANDARD_NO_PAD
            .decode(rest.trim_end_matches('='))
            .map_err(|_| invalid("the part after SHA256: is not base64"))?;
        if hash.len() != 32 {
            return Err(invalid("a SHA256 fingerprint has 43 base64 characters"));
        }
        return Ok(Some(Pin::Sha256(hash)));
    }
    let md5 = line
        .strip_prefix("MD5:")
        .or_else(|| line.strip_prefix("md5:"))
        .unwrap_or(line);
    if let Some(hash) = parse_md5(md5) {
        return Ok(Some(Pin::Md5(hash)));
    }
    // A known_hosts line: [markers] [host patterns] key-type base64-key [comment].
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.first().is_some_and(|w| w.starts_with('@')) {
        // @revoked and @cert-authority lines do not name an acceptable host key.
        return Ok(None);
    }
    let Some(i) = words.iter().position(|w| family_of_type(w).is_some()) else {
        return Err(invalid(
            "expected SHA256:…, MD5:…, or a known_hosts line with a key type such as ssh-ed25519",
        ));
    };
    key_pin(words[i], words.get(i + 1).copied())
        .map(Some)
        .map_err(invalid)
}

/// The pin of a `known_hosts` key (`key_type` and its base64 blob), or why it is not one.
pub(crate) fn key_pin(key_type: &str, base64: Option<&str>) -> Result<Pin, &'static str> {
    let family = family_of_type(key_type).ok_or("the key type is not one the agent knows")?;
    let blob = base64
        .and_then(|b| STANDARD.decode(b).ok())
        .ok_or("the known_hosts line has no base64 key after its key type")?;
    // The key blob starts with its own type as an SSH string.
    let named = blob
        .get(4..)
        .is_some_and(|rest| rest.starts_with(key_type.as_bytes()));
    if !named {
        return Err("the known_hosts key does not match its key type");
    }
    Ok(Pin::Key { family, blob })
}

impl HostKeyPins {
    /// Parses the `fingerprint` setting; `None` when it is empty.
    pub(crate) fn parse(text: &str) -> Result<Option<Self>> {
        let mut pins = Vec::new();
        let mut lines = 0;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            lines += 1;
            pins.extend(parse_line(line)?);
        }
        if lines == 0 {
            return Ok(None);
        }
        if pins.is_empty() {
            return Err(invalid("it names no acceptable host key"));
        }
        Ok(Some(Self(pins)))
    }

    /// The pins `pins` (the keys a `known_hosts` file records); `None` when there are none.
    pub(crate) fn of(pins: Vec<Pin>) -> Option<Self> {
        (!pins.is_empty()).then_some(Self(pins))
    }

    /// Whether `seen` is one of the accepted keys.
    pub(crate) fn accept(&self, seen: &SeenKey) -> bool {
        let sha256 = Sha256::digest(&seen.blob);
        self.0.iter().any(|pin| match pin {
            Pin::Sha256(hash) => hash.as_slice() == sha256.as_slice(),
            Pin::Md5(hash) => hash.as_slice() == Md5::digest(&seen.blob).as_slice(),
            Pin::Key { blob, .. } => *blob == seen.blob,
        })
    }

    /// The host key algorithms to ask for first, when the pins say which key type.
    pub(crate) fn preferred_family(&self) -> Option<&'static str> {
        self.0.iter().find_map(|pin| match pin {
            Pin::Key { family, .. } => Some(*family),
            _ => None,
        })
    }

    /// Whether the pins are written in the MD5 form only.
    fn md5_only(&self) -> bool {
        self.0.iter().all(|pin| matches!(pin, Pin::Md5(_)))
    }

    /// The accepted keys, for messages.
    pub(crate) fn describe(&self) -> String {
        let shown: Vec<String> = self
            .0
            .iter()
            .map(|pin| match pin {
                Pin::Sha256(hash) => format!("SHA256:{}", STANDARD_NO_PAD.encode(hash)),
                Pin::Md5(hash) => format!("MD5:{}", md5_hex(hash)),
                Pin::Key { blob, .. } => {
                    format!(
                        "SHA256:{} ({})",
                        STANDARD_NO_PAD.encode(Sha256::digest(blob)),
                        type_name(blob)
                    )
                }
            })
            .collect();
        shown.join(" or ")
    }

    /// The keys a server presented, in the form of these pins, for messages.
    pub(crate) fn describe_seen(&self, seen: &[SeenKey]) -> String {
        let shown: Vec<String> = seen
            .iter()
            .map(|key| {
                if self.md5_only() {
                    format!("{} ({})", key.md5_text(), key.type_name())
                } else {
                    format!("{} ({})", key.sha256_text(), key.type_name())
                }
            })
            .collect();
        shown.join(", ")
    }
}

fn md5_hex(hash: &[u8]) -> String {
    hash.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl SeenKey {
    /// The host key of a session after its handshake.
    pub(crate) fn of(session: &Session) -> Option<Self> {
        let (blob, kind) = session.host_key()?;
        let family = match kind {
            HostKeyType::Ed25519 => KEY_FAMILIES[0],
            HostKeyType::Ecdsa256 => KEY_FAMILIES[1],
            HostKeyType::Ecdsa384 => KEY_FAMILIES[2],
            HostKeyType::Ecdsa521 => KEY_FAMILIES[3],
            HostKeyType::Rsa => KEY_FAMILIES[4],
            _ => "",
        };
        Some(Self {
            blob: blob.to_vec(),
            family,
        })
    }

    /// An ed25519 key with `blob`, for tests.
    #[cfg(test)]
    pub(crate) fn ed25519(blob: Vec<u8>) -> Self {
        Self {
            blob,
            family: KEY_FAMILIES[0],
        }
    }

    /// The host key algorithm preference that yields this key again.
    pub(crate) fn family(&self) -> &'static str {
        self.family
    }

    /// `SHA256:…` as `ssh-keygen -l` prints it.
    pub(crate) fn sha256_text(&self) -> String {
        format!(
            "SHA256:{}",
            STANDARD_NO_PAD.encode(Sha256::digest(&self.blob))
        )
    }

    fn md5_text(&self) -> String {
        format!("MD5:{}", md5_hex(&Md5::digest(&self.blob)))
    }

    /// The key's type as it names itself (`ssh-ed25519`, `ssh-rsa`…).
    pub(crate) fn type_name(&self) -> String {
        type_name(&self.blob)
    }

    /// The key as a `known_hosts` line names it: its type and its base64 blob.
    pub(crate) fn known_hosts_text(&self) -> String {
        format!("{} {}", self.type_name(), STANDARD.encode(&self.blob))
    }
}

/// The type a key blob names itself with (`ssh-ed25519`, `ssh-rsa`…). The server sends it:
/// anything but printable ASCII becomes `?`, so that it cannot forge log lines.
fn type_name(blob: &[u8]) -> String {
    let len = blob
        .get(..4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    blob.get(4..4_usize.saturating_add(len)).map_or_else(
        || "unknown".into(),
        |t| {
            t.iter()
                .map(|&b| {
                    if b.is_ascii_graphic() {
                        char::from(b)
                    } else {
                        '?'
                    }
                })
                .collect()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ed25519 public key blob (type "ssh-ed25519" and 32 key bytes).
    fn ed25519_blob() -> Vec<u8> {
        let mut blob = Vec::new();
        blob.extend_from_slice(&11u32.to_be_bytes());
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&32u32.to_be_bytes());
        blob.extend((0..32u8).map(|i| i.wrapping_mul(7)));
        blob
    }

    fn seen(blob: Vec<u8>) -> SeenKey {
        SeenKey {
            blob,
            family: KEY_FAMILIES[0],
        }
    }

    #[test]
    fn sha256_form_matches_the_hash_of_the_key() {
        let key = seen(ed25519_blob());
        let text = key.sha256_text();
        assert!(
            text.starts_with("SHA256:") && !text.ends_with('='),
            "{text}"
        );
        let pins = HostKeyPins::parse(&text).unwrap().unwrap();
        assert!(pins.accept(&key));
        let padded = HostKeyPins::parse(&format!("{text}=")).unwrap().unwrap();
        assert!(padded.accept(&key));
        let other = HostKeyPins::parse("SHA256:ut/TKiqGfMHNh+Xz07R3nQolzhUbULWvAK1U0LOkC38")
            .unwrap()
            .unwrap();
        assert!(!other.accept(&key));
        assert_eq!(key.type_name(), "ssh-ed25519");
    }

    #[test]
    fn md5_forms_with_and_without_prefix() {
        let key = seen(ed25519_blob());
        let hex = md5_hex(&Md5::digest(ed25519_blob()));
        for text in [format!("MD5:{hex}"), hex.to_uppercase()] {
            let pins = HostKeyPins::parse(&text).unwrap().unwrap();
            assert!(pins.accept(&key), "{text}");
            assert_eq!(
                pins.describe_seen(std::slice::from_ref(&key)),
                format!("MD5:{hex} (ssh-ed25519)")
            );
        }
        let other = HostKeyPins::parse("MD5:00:01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f")
            .unwrap()
            .unwrap();
        assert!(!other.accept(&key));
    }

    #[test]
    fn known_hosts_lines_pin_the_key_and_its_type() {
        let blob = ed25519_blob();
        let line = format!(
            "[10.0.0.5]:2222 ssh-ed25519 {} root@host",
            STANDARD.encode(&blob)
        );
        let pins = HostKeyPins::parse(&format!("# scanned\n{line}\n@revoked * ssh-rsa AAAA\n"))
            .unwrap()
            .unwrap();
        assert!(pins.accept(&seen(blob.clone())));
        assert_eq!(pins.preferred_family(), Some("ssh-ed25519"));
        let mut other = blob.clone();
        *other.last_mut().unwrap() ^= 1;
        assert!(!pins.accept(&seen(other)));
        // Without host patterns too.
        let bare = format!("ssh-ed25519 {}", STANDARD.encode(&blob));
        assert!(
            HostKeyPins::parse(&bare)
                .unwrap()
                .unwrap()
                .accept(&seen(blob))
        );
    }

    #[test]
    fn empty_is_unset_and_nonsense_is_refused() {
        assert_eq!(HostKeyPins::parse("").unwrap(), None);
        assert_eq!(HostKeyPins::parse("  \n").unwrap(), None);
        for bad in [
            "SHA256:not base64!",
            "SHA256:AAAA",
            "aa:bb",
            "hello",
            "host ssh-ed25519",
            "host ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ==",
            "@revoked host ssh-ed25519 AAAA",
        ] {
            let err = HostKeyPins::parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
            assert!(err.to_string().contains("ssh-keygen -l"), "{err}");
        }
    }
}
