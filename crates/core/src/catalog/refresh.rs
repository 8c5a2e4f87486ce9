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
use futures::future::BoxFuture;

use super::BackupEntry;
use crate::destination::{Destination, ListingGuard, ObjectMeta, get_small};
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
    /// After a full refresh, the archives listed without a manifest beside them (every
    /// instance's, stale or not), for a prune to judge; `None` after an incremental one.
    pub orphans: Option<Vec<ObjectMeta>>,
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

/// About how many listed objects a refresh holds before reading and recording them, and
/// how many keys it asks a store for at once: S3 answers 1,000 at most, a `local` walk
/// that many (it rereads the folder it resumes in, so it pages by large steps), and a store
/// that cannot stop a listing early everything ([`Destination::list_page`]).
pub const BATCH: usize = 10_000;

/// At most how many manifests read a refresh holds before handing them to its sink.
pub const WRITE_EVERY: usize = 256;

/// Where a refresh puts what it finds as the listing goes, a folder or more at a time, so
/// that a listing of a large prefix is never held whole.
pub trait Sink: Send {
    /// Which manifest keys from `first` to `last` (both included) were read before.
    fn known(&mut self, first: String, last: String) -> BoxFuture<'_, Result<HashSet<String>>>;
    /// Records what the refresh found in some folders: `changed`, `present`,
    /// `lost_archive` and `objects_listed` of those folders.
    fn write(&mut self, found: Refreshed) -> BoxFuture<'_, Result<()>>;
}

/// Lists `scope` of `layout` in `dest` and reads the manifests listed that `known` (the
/// manifest keys already read) does not hold, this instance's first; everything it found,
/// at once (for tests and small stores: [`refresh_into`] holds one folder at a time).
pub async fn refresh<S: std::hash::BuildHasher + Sync>(
    dest: &dyn Destination,
    layout: &Layout,
    scope: &Scope,
    known: &HashSet<String, S>,
    reading: Reading<'_>,
) -> Result<Refreshed> {
    /// Gathers every batch into one.
    struct All<'k, S> {
        known: &'k HashSet<String, S>,
        found: Refreshed,
    }
    impl<S: std::hash::BuildHasher + Sync> Sink for All<'_, S> {
        fn known(&mut self, first: String, last: String) -> BoxFuture<'_, Result<HashSet<String>>> {
            let known = self
                .known
                .iter()
                .filter(|k| **k >= first && **k <= last)
                .cloned()
                .collect();
            Box::pin(async move { Ok(known) })
        }
        fn write(&mut self, found: Refreshed) -> BoxFuture<'_, Result<()>> {
            self.found.changed.extend(found.changed);
            self.found.present.extend(found.present);
            self.found.lost_archive.extend(found.lost_archive);
            Box::pin(async { Ok(()) })
        }
    }
    let mut all = All {
        known,
        found: Refreshed::default(),
    };
    let summary = refresh_into(dest, layout, scope, &mut all, reading).await?;
    let mut found = all.found;
    // This instance's first (a stable sort keeps the key order within each group).
    found
        .changed
        .sort_by_key(|l| !layout::name_is_of_instance(&l.name, reading.instance_id));
    Ok(Refreshed {
        listed_after: summary.listed_after,
        objects_listed: summary.objects_listed,
        orphans: summary.orphans,
        ..found
    })
}

/// Lists `scope` of `layout` in `dest` page by page and hands `sink` what it finds a folder
/// at a time (the manifests `sink` has not read are read, this instance's first within the
/// folder); returns what the refresh did as a whole: `listed_after`, `objects_listed` and,
/// after a full refresh, the archives without a manifest. About [`BATCH`] objects are held
/// at once, whatever the listing's length.
pub async fn refresh_into(
    dest: &dyn Destination,
    layout: &Layout,
    scope: &Scope,
    sink: &mut dyn Sink,
    reading: Reading<'_>,
) -> Result<Refreshed> {
    refresh_paged(dest, layout, scope, sink, reading, BATCH, BATCH).await
}

/// [`refresh_into`] with pages of `page` keys and batches of about `batch` objects.
async fn refresh_paged(
    dest: &dyn Destination,
    layout: &Layout,
    scope: &Scope,
    sink: &mut dyn Sink,
    reading: Reading<'_>,
    page_size: usize,
    batch: usize,
) -> Result<Refreshed> {
    let prefix = layout.prefix();
    let listed_after = match scope {
        Scope::Full => None,
        Scope::After(start) => Some(start.clone()),
    };
    let mut after = listed_after.clone().unwrap_or_default();
    // Whole folders wait here until there are about BATCH objects, so that the manifests
    // of several folders are read at once; the last folder may still grow.
    let mut pending: Vec<ObjectMeta> = Vec::new();
    let mut orphans = (*scope == Scope::Full).then(Vec::new);
    let mut objects_listed = 0;
    let mut guard = ListingGuard::new(
        dest.describe(),
        format!("list the objects under {prefix:?}"),
    );
    loop {
        let (page, more) = dest.list_page(&prefix, &after, page_size).await?;
        guard.add(page.len())?;
        objects_listed += page.len();
        let Some(last) = page.last() else { break };
        // Never backwards: a store that answered keys not after the start would loop.
        if last.key.as_str() <= after.as_str() {
            break;
        }
        after.clone_from(&last.key);
        pending.extend(page);
        if pending.len() >= batch {
            // Everything but the last folder, which the next page may continue.
            let open = folder_of(&pending[pending.len() - 1].key).to_string();
            let split = pending
                .iter()
                .rposition(|o| folder_of(&o.key) != open)
                .map_or(0, |i| i + 1);
            let rest = pending.split_off(split);
            let done = std::mem::replace(&mut pending, rest);
            if !done.is_empty() {
                folders(dest, layout, done, sink, reading, orphans.as_mut()).await?;
            }
        }
        if !more {
            break;
        }
    }
    if !pending.is_empty() {
        folders(dest, layout, pending, sink, reading, orphans.as_mut()).await?;
    }
    Ok(Refreshed {
        listed_after,
        objects_listed,
        orphans,
        ..Refreshed::default()
    })
}

/// The folder part of `key`, with its `/`.
fn folder_of(key: &str) -> &str {
    key.rfind('/').map_or("", |i| &key[..=i])
}

/// Reads what is new among the objects of whole folders and hands it to `sink`.
async fn folders(
    dest: &dyn Destination,
    layout: &Layout,
    objects: Vec<ObjectMeta>,
    sink: &mut dyn Sink,
    reading: Reading<'_>,
    orphans: Option<&mut Vec<ObjectMeta>>,
) -> Result<()> {
    if let Some(orphans) = orphans {
        orphans.extend(super::archives_without_manifest(layout, &objects));
    }
    let archives = archives_by_folder_and_name(layout, &objects);
    let mut manifests: Vec<(String, String)> = objects
        .iter()
        .filter_map(|o| Some((o.key.clone(), layout.parse_manifest_key(&o.key)?)))
        .collect();
    let objects_listed = objects.len();
    drop(objects);
    let first = manifests.iter().map(|(k, _)| k).min();
    let last = manifests.iter().map(|(k, _)| k).max();
    let (Some(first), Some(last)) = (first, last) else {
        return sink
            .write(Refreshed {
                objects_listed,
                ..Refreshed::default()
            })
            .await;
    };
    let known = sink.known(first.clone(), last.clone()).await?;
    let lost_archive = manifests
        .iter()
        .filter(|(key, name)| {
            known.contains(key) && !archives.contains_key(&folder_name(key, name))
        })
        .map(|(key, _)| key.clone())
        .collect();
    let present = manifests.iter().map(|(k, _)| k.clone()).collect();
    manifests.retain(|(key, _)| !known.contains(key));
    // This instance's first (a stable sort keeps the key order within each group).
    manifests.sort_by_key(|(_, name)| !layout::name_is_of_instance(name, reading.instance_id));
    let (to_read, unread): (Vec<_>, Vec<_>) = manifests.into_iter().partition(|(_, name)| {
        reading.others || layout::name_is_of_instance(name, reading.instance_id)
    });
    let archives = &archives;
    let mut reads = futures::stream::iter(to_read)
        .map(|(manifest_key, name)| async move {
            let found = read_one(dest, layout, &manifest_key, &name, archives).await;
            Listed {
                manifest_key,
                name,
                found,
            }
        })
        .buffered(reading.concurrency.max(1));
    // Handed over as they are read, WRITE_EVERY at a time: a batch of large manifests is
    // never held whole.
    let mut changed: Vec<Listed> = Vec::new();
    while let Some(listed) = reads.next().await {
        changed.push(listed);
        if changed.len() >= WRITE_EVERY {
            sink.write(Refreshed {
                changed: std::mem::take(&mut changed),
                ..Refreshed::default()
            })
            .await?;
        }
    }
    changed.extend(unread.into_iter().map(|(manifest_key, name)| Listed {
        manifest_key,
        name,
        found: Found::Unread,
    }));
    sink.write(Refreshed {
        changed,
        present,
        listed_after: None,
        lost_archive,
        objects_listed,
        orphans: None,
    })
    .await
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
    layout: &Layout,
    manifest_key: &str,
    name: &str,
    archives: &HashMap<String, (String, u64)>,
) -> Found {
    let bytes = match get_small(dest, manifest_key, MAX_MANIFEST_BYTES).await {
        Ok(bytes) => bytes,
        // Too large: the object is not a manifest of ours.
        Err(e) if e.kind() == crate::error::ErrorKind::Corrupt => {
            return Found::Damaged {
                problem: format!("the manifest cannot be read: {e}"),
            };
        }
        // The store failed (after its retries), or the object went: nothing is known of
        // the backup, which the next refresh reads again.
        Err(e) => {
            tracing::warn!(key = %manifest_key, error = %e, "a manifest could not be read; the next refresh tries again");
            return Found::Unread;
        }
    };
    let manifest = match Manifest::from_json(&bytes) {
        Ok(m) => m,
        Err(e) => {
            return Found::Damaged {
                problem: format!("the manifest cannot be read: {e}"),
            };
        }
    };
    let archive_key = match super::own_archive(layout, manifest_key, name, &manifest) {
        Ok(key) => key,
        Err(why) => {
            return Found::Damaged {
                problem: why.to_string(),
            };
        }
    };
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
