//! The backups a destination holds, read from the destination itself (its manifests), and
//! picking one of them.

use chrono::{DateTime, Utc};

use crate::destination::{Destination, ObjectMeta, get_small};
use crate::error::{Error, ErrorKind, Result};
use crate::layout::Layout;
use crate::manifest::{MAX_MANIFEST_BYTES, Manifest};

pub mod refresh;
mod trust;
pub use trust::{Authenticity, authenticate, judge, read_head};

/// A complete backup found in a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupEntry {
    /// Its manifest.
    pub manifest: Manifest,
    /// The key of the manifest object.
    pub manifest_key: String,
    /// The key of the archive object.
    pub archive_key: String,
    /// The archive object's size as listed.
    pub archive_size: u64,
}

impl BackupEntry {
    /// Whether the archive listed has the size its manifest records.
    pub fn is_sound(&self) -> bool {
        self.archive_size == self.manifest.stored_bytes
    }
}

/// Which backup to pick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The newest complete backup.
    Latest,
    /// The backup of this name.
    Named(String),
    /// The newest backup started before this time.
    Before(DateTime<Utc>),
}

/// Lists the complete backups under `layout` in `dest`, newest first.
///
/// Only backups with a manifest are listed: an archive without one is incomplete. A
/// manifest that cannot be read is skipped with a warning, so one damaged backup does not
/// hide the others.
pub async fn list_backups(dest: &dyn Destination, layout: &Layout) -> Result<Vec<BackupEntry>> {
    let objects = dest.list(&layout.prefix()).await?;
    read_entries(dest, layout, &objects).await
}

/// The key of the archive of backup `name` whose manifest `manifest` was read at
/// `manifest_key`, when the manifest is that backup's: it names the backup of its key, the
/// instance in that name made it, and its archive is the backup's own, beside it (never
/// another backup's, which a prune of this one would then delete). Otherwise why not.
pub fn own_archive(
    layout: &Layout,
    manifest_key: &str,
    name: &str,
    manifest: &Manifest,
) -> std::result::Result<String, &'static str> {
    if manifest.name != name {
        return Err("the manifest's name does not match its key");
    }
    if !crate::layout::name_is_of_instance(name, &manifest.instance_id) {
        return Err("the manifest's instance_id is not the instance its name gives");
    }
    let archive_key = Layout::sibling(manifest_key, &manifest.archive);
    if layout.parse_archive_key(&archive_key).as_deref() != Some(name) {
        return Err("the manifest's archive is not the archive of its backup");
    }
    Ok(archive_key)
}

/// The complete backups among `objects` (a listing of `layout`'s prefix), newest first.
pub async fn read_entries(
    dest: &dyn Destination,
    layout: &Layout,
    objects: &[crate::destination::ObjectMeta],
) -> Result<Vec<BackupEntry>> {
    let present: std::collections::HashMap<&str, u64> =
        objects.iter().map(|o| (o.key.as_str(), o.size)).collect();
    let mut entries = Vec::new();
    for object in objects {
        let Some(name) = layout.parse_manifest_key(&object.key) else {
            continue;
        };
        let manifest = match get_small(dest, &object.key, MAX_MANIFEST_BYTES)
            .await
            .and_then(|bytes| Manifest::from_json(&bytes))
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(key = %object.key, error = %e, "skipping an unreadable manifest");
                continue;
            }
        };
        let archive_key = match own_archive(layout, &object.key, &name, &manifest) {
            Ok(key) => key,
            Err(why) => {
                tracing::warn!(key = %object.key, "skipping a manifest: {why}");
                continue;
            }
        };
        let Some(&archive_size) = present.get(archive_key.as_str()) else {
            tracing::warn!(key = %archive_key, "skipping a manifest whose archive is missing");
            continue;
        };
        entries.push(BackupEntry {
            manifest,
            manifest_key: object.key.clone(),
            archive_key,
            archive_size,
        });
    }
    entries.sort_by(|a, b| {
        (b.manifest.started_at, &b.manifest.name).cmp(&(a.manifest.started_at, &a.manifest.name))
    });
    Ok(entries)
}

/// The archives among `objects` (a listing of `layout`'s prefix) without a manifest beside
/// them: left by a prune cut short, or by a backup that failed or still runs.
pub fn archives_without_manifest(layout: &Layout, objects: &[ObjectMeta]) -> Vec<ObjectMeta> {
    let keys: std::collections::HashSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    objects
        .iter()
        .filter(|o| {
            layout.parse_archive_key(&o.key).is_some_and(|name| {
                let manifest =
                    Layout::sibling(&o.key, &format!("{name}{}", crate::layout::MANIFEST_EXT));
                !keys.contains(manifest.as_str())
            })
        })
        .cloned()
        .collect()
}

/// Picks the backup `selector` names from `entries` (newest first).
pub fn select<'a>(entries: &'a [BackupEntry], selector: &Selector) -> Result<&'a BackupEntry> {
    let found = match selector {
        Selector::Latest => entries.first(),
        Selector::Named(name) => entries.iter().find(|e| &e.manifest.name == name),
        Selector::Before(t) => entries.iter().find(|e| e.manifest.started_at < *t),
    };
    found.ok_or_else(|| {
        let what = match selector {
            Selector::Latest => "there is no complete backup".to_string(),
            Selector::Named(name) => format!("there is no complete backup named {name}"),
            Selector::Before(t) => format!(
                "there is no complete backup started before {}",
                t.to_rfc3339()
            ),
        };
        Error::new(ErrorKind::NotFound, what)
            .with_hint("run `service-backup list CONFIG` to see the backups that exist")
    })
}
