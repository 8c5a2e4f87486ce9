//! The probe of `service-backup check`: a small object written, listed, read back and
//! deleted in a destination, under a name that no listing, retention or prune takes for a
//! backup (`Layout::probe_key`).

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use service_backup_core::destination::get_small;
use service_backup_core::{Error, ErrorKind, Result};

use super::Target;

/// How old a probe left by an interrupted check must be before a check removes it: older
/// than any check still running beside it (each takes seconds).
pub const STALE_PROBE: Duration = Duration::hours(1);

/// The most a probe object holds; what is read back must be that small.
const MAX_PROBE_BYTES: usize = 256;

/// What a probe that passed found besides its own object.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Probed {
    /// The key the probe had (now deleted).
    pub key: String,
    /// Probes (and incomplete uploads of probes) left by interrupted checks, removed.
    pub leftovers_removed: usize,
}

/// One step of a probe, for the message of a failure.
#[derive(Debug, Clone, Copy)]
enum Step {
    Write,
    List,
    Read,
    Delete,
}

impl Step {
    fn what(self) -> &'static str {
        match self {
            Self::Write => "cannot write a probe object",
            Self::List => "cannot list the probe object it wrote",
            Self::Read => "cannot read back the probe object it wrote",
            Self::Delete => "cannot delete the probe object it wrote",
        }
    }

    /// What to fix when the store's error says nothing more precise.
    fn fix(self) -> &'static str {
        match self {
            Self::Write => {
                "check the credentials and that they may write to the bucket, container or folder"
            }
            Self::List => "check that the credentials may list objects",
            Self::Read => "check that the credentials may read objects",
            Self::Delete => {
                "check that the credentials may delete objects (retention and prune need it)"
            }
        }
    }

    fn fail(self, e: Error) -> Error {
        let e = e.context(self.what());
        if e.hint().is_some() {
            e
        } else {
            e.with_hint(self.fix())
        }
    }
}

/// Writes, lists, reads back and deletes a probe object in `target` at time `now`, then
/// removes the probes that interrupted checks left there more than [`STALE_PROBE`] ago. A
/// probe written whose later steps fail is still deleted when the store lets it.
pub async fn probe(target: &Target, now: DateTime<Utc>) -> Result<Probed> {
    let dest = &*target.destination;
    // A store that cannot lock what immutability asks for fails the check before any
    // write: the first backup would fail the same way.
    dest.check_immutability().await?;
    let key = target.layout.probe_key(now)?;
    let content = Bytes::from(format!("service-backup check {key}\n"));
    dest.put(&key, content.clone())
        .await
        .map_err(|e| Step::Write.fail(e))?;
    let checked = read_back(target, &key, &content).await;
    let deleted = dest.delete(&key).await.map_err(|e| Step::Delete.fail(e));
    let listed = checked?;
    deleted?;
    let mut removed = 0;
    let stale = |key: &str| {
        target
            .layout
            .probe_time(key)
            .is_some_and(|t| t < now - STALE_PROBE)
    };
    for old in listed.iter().filter(|k| stale(k)) {
        dest.delete(old).await.map_err(|e| Step::Delete.fail(e))?;
        removed += 1;
    }
    // Interrupted uploads of probes: a store that cannot list them is no failure of the
    // check, as prune reports it.
    let stem = target.layout.probe_stem();
    if let Ok(uploads) = dest.list_incomplete(&stem).await {
        for upload in uploads.iter().filter(|u| stale(&u.key)) {
            dest.discard_incomplete(upload)
                .await
                .map_err(|e| Step::Delete.fail(e))?;
            removed += 1;
        }
    }
    Ok(Probed {
        key,
        leftovers_removed: removed,
    })
}

/// Lists the probes of `target`, expecting `key` with `content`'s size among them, and
/// reads `key` back; returns the keys of every probe listed.
async fn read_back(target: &Target, key: &str, content: &Bytes) -> Result<Vec<String>> {
    let dest = &*target.destination;
    let listed = dest
        .list(&target.layout.probe_stem())
        .await
        .map_err(|e| Step::List.fail(e))?;
    let size = u64::try_from(content.len()).unwrap_or(u64::MAX);
    if !listed.iter().any(|o| o.key == key && o.size == size) {
        return Err(Step::List.fail(Error::new(
            ErrorKind::Destination,
            format!("{key} is missing from the listing of {}", dest.describe()),
        )));
    }
    let read = get_small(dest, key, MAX_PROBE_BYTES)
        .await
        .map_err(|e| Step::Read.fail(e))?;
    if read != content[..] {
        return Err(Step::Read.fail(Error::new(
            ErrorKind::Destination,
            format!(
                "{key} in {} holds other bytes than were written",
                dest.describe()
            ),
        )));
    }
    Ok(listed.into_iter().map(|o| o.key).collect())
}
