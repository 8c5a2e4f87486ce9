//! Refreshing a catalog of the backups a destination holds without reading it whole: a
//! refresh lists only the keys after a cursor and reads only the manifests it has not read
//! before, a bounded number at once; a full refresh lists everything and says what is gone.
//!
//! Keys sort by the day folder of a backup's start (in the writing agent's local time),
//! then by its start in UTC. A manifest is written when its backup ends, so a refresh can
//! find a new manifest that sorts before keys it saw earlier: a backup that started before
//! the last refresh and ended after it, or one written by an agent whose local date is
//! behind another's. The cursor therefore starts [`LOOKBACK_DAYS`] day folders before the
//! previous refresh, not after the greatest key seen; anything older still (a backup that
//! ran for more than a day) is found by the next full refresh.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Days, Utc};
use futures::StreamExt as _;

use super::BackupEntry;
use crate::destination::{Destination, ObjectMeta, get_small};
use crate::error::Result;
use crate::layout::{self, Layout};
use crate::manifest::{MAX_MANIFEST_BYTES, Manifest};

/// How many day folders before the previous refresh an incremental refresh lists again:
/// one for agents whose local date differs by up to a day, one for backups that ran up to
/// a day.
pub const LOOKBACK_DAYS: u64 = 2;

/// How many manifests a refresh reads at once.
pub const READ_CONCURRENCY: usize = 16;

/// What a refresh lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything under the layout's prefix: what is not listed is gone.
    Full,
    /// Only the keys after this one.
    After(String),
}

impl Scope {
    /// The incremental scope of a refresh after one that started at `previous`.
    pub fn since(layout: &Layout, previous: DateTime<Utc>) -> Self {
        let day = previous
            .date_naive()
            .checked_sub_days(Days::new(LOOKBACK_DAYS))
            .unwrap_or(chrono::NaiveDate::MIN);
        Self::After(layout.day_prefix(day))
    }
}

/// What a refresh knows of a manifest it listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Read, and its archive is listed beside it.
    Sound(Box<BackupEntry>),
    /// Unreadable, not the backup its key names, or without its archive.
    Damaged {
        /// Why it cannot be used.
        problem: String,
    },
    /// Listed but not read in this refresh (another instance's, when only this instance's
    /// are read).
    Unread,
}

/// One manifest key a refresh listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The manifest's key.
    pub manifest_key: String,
    /// The backup name its key gives.
    pub name: String,
    /// What is known of it.
    pub found: Found,
}

/// What a refresh found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// The manifests read in this refresh, and those left unread.
    pub changed: Vec<Listed>,
    /// Every manifest key listed: the catalog drops the others within the range listed
    /// (all of them after a full refresh, those after [`Refreshed::listed_after`] after an
    /// incremental one, whose listing of that range is as complete).
    pub present: HashSet<String>,
    /// The key the listing started after; `None` for a full refresh.
    pub listed_after: Option<String>,
    /// Manifest keys read before whose archive the listing no longer holds.
    pub lost_archive: Vec<String>,
    /// How many objects the refresh listed.
    pub objects_listed: usize,
}

/// What a refresh is asked to do besides listing.
#[derive(Debug, Clone, Copy)]
pub struct Reading<'a> {
    /// This agent's instance id: its manifests are read first.
    pub instance_id: &'a str,
    /// Whether the manifests of other instances are read too (else they are left
    /// [`Found::Unread`]).
    pub others: bool,
    /// How many manifests are read at once (at least one).
    pub concurrency: usize,
}

/// Lists `scope` of `layout` in `dest` and reads the manifests listed that `known` (the
/// manifest keys already read) does not hold, this instance's first.
pub async fn refresh<S: std::hash::BuildHasher>(
    dest: &dyn Destination,
    layout: &Layout,
    scope: &Scope,
    known: &HashSet<String, S>,
    reading: Reading<'_>,
) -> Result<Refreshed> {
    let prefix = layout.prefix();
    let objects = match scope {
        Scope::Full => dest.list(&prefix).await?,
        Scope::After(start) => dest.list_after(&prefix, start).await?,
    };
    let archives = archives_by_folder_and_name(layout, &objects);
    let mut manifests: Vec<(String, String)> = objects
        .iter()
        .filter_map(|o| Some((o.key.clone(), layout.parse_manifest_key(&o.key)?)))
        .collect();
    let objects_listed = objects.len();
    drop(objects);
    let lost_archive = manifests
        .iter()
        .filter(|(key, name)| {
            known.contains(key) && !archives.contains_key(&folder_name(key, name))
        })
        .map(|(key, _)| key.clone())
        .collect();
    let present = manifests.iter().map(|(k, _)| k.clone()).collect();
    let listed_after = match scope {
        Scope::Full => None,
        Scope::After(start) => Some(start.clone()),
    };
    manifests.retain(|(key, _)| !known.contains(key));
    // This instance's first (a stable sort keeps the key order within each group).
    manifests.sort_by_key(|(_, name)| !layout::name_is_of_instance(name, reading.instance_id));
    let (to_read, unread): (Vec<_>, Vec<_>) = manifests.into_iter().partition(|(_, name)| {
        reading.others || layout::name_is_of_instance(name, reading.instance_id)
    });
    let archives = &archives;
    let mut changed: Vec<Listed> = futures::stream::iter(to_read)
        .map(|(manifest_key, name)| async move {
            let found = read_one(dest, &manifest_key, &name, archives).await;
            Listed {
                manifest_key,
                name,
                found,
            }
        })
        .buffered(reading.concurrency.max(1))
        .collect()
        .await;
    changed.extend(unread.into_iter().map(|(manifest_key, name)| Listed {
        manifest_key,
        name,
        found: Found::Unread,
    }));
    Ok(Refreshed {
        changed,
        present,
        listed_after,
        lost_archive,
        objects_listed,
    })
}

/// The folder of `key` and the backup `name`, as the key of [`archives_by_folder_and_name`].
fn folder_name(key: &str, name: &str) -> String {
    Layout::sibling(key, name)
}

/// The archives listed, by their folder and backup name, with their keys and sizes.
fn archives_by_folder_and_name(
    layout: &Layout,
    objects: &[ObjectMeta],
) -> HashMap<String, (String, u64)> {
    objects
        .iter()
        .filter_map(|o| {
            let name = layout.parse_archive_key(&o.key)?;
            Some((folder_name(&o.key, &name), (o.key.clone(), o.size)))
        })
        .collect()
}

/// Reads one manifest and judges it against its key and the archives listed.
async fn read_one(
    dest: &dyn Destination,
    manifest_key: &str,
    name: &str,
    archives: &HashMap<String, (String, u64)>,
) -> Found {
    let manifest = match get_small(dest, manifest_key, MAX_MANIFEST_BYTES)
        .await
        .and_then(|bytes| Manifest::from_json(&bytes))
    {
        Ok(m) => m,
        Err(e) => {
            return Found::Damaged {
                problem: format!("the manifest cannot be read: {e}"),
            };
        }
    };
    if manifest.name != name {
        return Found::Damaged {
            problem: "the manifest's name does not match its key".to_string(),
        };
    }
    let archive_key = Layout::sibling(manifest_key, &manifest.archive);
    match archives.get(&folder_name(manifest_key, name)) {
        Some((key, size)) if *key == archive_key => Found::Sound(Box::new(BackupEntry {
            manifest,
            manifest_key: manifest_key.to_string(),
            archive_key,
            archive_size: *size,
        })),
        _ => Found::Damaged {
            problem: format!("its archive {archive_key} is missing"),
        },
    }
}

#[cfg(test)]
mod tests;
