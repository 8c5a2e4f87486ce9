//! Whether a listed backup is the one its manifest says, judged from its archive's header
//! alone (a few hundred bytes, not the whole archive): the header's context stanza,
//! authenticated by the key, must name the manifest's backup.

use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;

use super::BackupEntry;
use crate::destination::Destination;
use crate::error::{Error, ErrorKind, Result};
use crate::format::{self, ArchiveKind, Keyring};

/// What an archive's header proves about the backup its manifest names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authenticity {
    /// Encrypted, opened with a key we hold, and bound to the manifest's backup.
    Bound,
    /// Encrypted and opened with a key we hold, but written before archives carried a
    /// context: its key proves it is ours, not which backup it is.
    Unbound,
    /// A plain archive: nothing is authenticated.
    Plain,
    /// Encrypted for a configured recipient and naming the manifest's backup, but not
    /// authenticated: an agent with recipients only holds no key that opens it.
    Addressed,
}

/// Reads the first chunks of `chunks` until they hold the whole header of an encrypted
/// archive (or the first bytes of a plain one); returns the chunks read, in order, so that
/// a caller streaming the object can send them first. The rest of the stream is not read.
pub async fn read_head(chunks: &mut BoxStream<'static, Result<Bytes>>) -> Result<Vec<Bytes>> {
    let mut read = Vec::new();
    let mut head = Vec::new();
    loop {
        let need = if head.len() < format::MAGIC.len() {
            None
        } else if ArchiveKind::sniff(&head)? == ArchiveKind::Encrypted {
            format::header_len(&head)?
        } else {
            Some(format::MAGIC.len())
        };
        if need.is_some_and(|n| head.len() >= n) {
            return Ok(read);
        }
        match chunks.next().await.transpose()? {
            Some(chunk) => {
                let room = format::MAX_HEADER_LEN.saturating_sub(head.len());
                head.extend_from_slice(&chunk[..chunk.len().min(room)]);
                read.push(chunk);
            }
            // What was read is all there is: judging it says why it is too short.
            None => return Ok(read),
        }
    }
}

/// Judges the archive whose first bytes are `head` against `entry`'s manifest. An
/// encrypted archive that no key of `keyring` opens, whose header is damaged, or that is
/// bound to another backup is an error of kind [`ErrorKind::Corrupt`] or
/// [`ErrorKind::WrongKey`].
pub fn judge(head: &[u8], keyring: Option<&Keyring>, entry: &BackupEntry) -> Result<Authenticity> {
    if let ArchiveKind::Plain(_) = ArchiveKind::sniff(head)? {
        return Ok(Authenticity::Plain);
    }
    let Some(keyring) = keyring.filter(|k| !k.is_empty()) else {
        return Err(Error::new(
            ErrorKind::WrongKey,
            "the archive is encrypted and no key is configured to authenticate it",
        ));
    };
    if !keyring.can_decrypt() {
        return judge_addressed(head, keyring, entry);
    }
    let header = format::read_header(head, keyring)?;
    match header.context {
        Some(found) => {
            found.check(&entry.manifest.context())?;
            Ok(Authenticity::Bound)
        }
        None => Ok(Authenticity::Unbound),
    }
}

/// Judges an archive by what its header says, unauthenticated, for an agent that holds
/// recipients only: it must be encrypted for one of them and name the manifest's backup.
fn judge_addressed(head: &[u8], keyring: &Keyring, entry: &BackupEntry) -> Result<Authenticity> {
    let header = format::peek_header(head)?;
    let ours = keyring
        .recipients()
        .iter()
        .any(|r| header.recipient_ids.contains(&r.id()));
    if !ours {
        let found: Vec<String> = header
            .recipient_ids
            .iter()
            .map(ToString::to_string)
            .collect();
        return Err(Error::new(
            ErrorKind::WrongKey,
            format!(
                "the archive is encrypted for none of the configured recipients (it names recipient {})",
                if found.is_empty() {
                    "none".to_string()
                } else {
                    found.join(", ")
                }
            ),
        ));
    }
    match header.context {
        Some(found) => {
            found.check(&entry.manifest.context())?;
            Ok(Authenticity::Addressed)
        }
        None => Ok(Authenticity::Unbound),
    }
}

/// Fetches the header of `entry`'s archive from `dest` (only its first chunks) and judges
/// it with [`judge`].
pub async fn authenticate(
    dest: &dyn Destination,
    entry: &BackupEntry,
    keyring: Option<&Keyring>,
) -> Result<Authenticity> {
    let mut object = dest.get(&entry.archive_key).await?;
    let read = read_head(&mut object.chunks).await?;
    // The rest of the object is never fetched: dropping the stream ends the download.
    drop(object);
    let head: Vec<u8> = read.iter().flat_map(|c| c.iter().copied()).collect();
    judge(&head, keyring, entry)
}
