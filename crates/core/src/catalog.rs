//! The backups a destination holds, read from the destination itself (its manifests), and
//! restoring or verifying one of them.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::blocking;
use crate::destination::{Destination, get_small};
use crate::error::{Error, ErrorKind, Result};
use crate::format::BackupContext;
use crate::layout::Layout;
use crate::manifest::{MAX_MANIFEST_BYTES, Manifest};
use crate::pipeline::ObjectReader;
use crate::pipeline::extract::Extractor;
use crate::pipeline::restore::{Binding, Decryption, Expected, ReadStats, read_archive};
use crate::pipeline::staging::Staging;
use crate::progress::Progress;

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
            Ok(m) if m.name == name => m,
            Ok(_) => {
                tracing::warn!(key = %object.key, "skipping a manifest whose name does not match its key");
                continue;
            }
            Err(e) => {
                tracing::warn!(key = %object.key, error = %e, "skipping an unreadable manifest");
                continue;
            }
        };
        let archive_key = Layout::sibling(&object.key, &manifest.archive);
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

/// Downloads `entry` and checks it end to end; with a `target`, restores it there through
/// a staging folder (the target is left as it was if anything fails).
pub async fn restore_backup(
    dest: Arc<dyn Destination>,
    entry: &BackupEntry,
    decryption: &Decryption,
    target: Option<(&Path, bool)>,
    progress: Arc<dyn Progress>,
) -> Result<ReadStats> {
    let staging = match target {
        Some((dir, replace)) => {
            let dir = dir.to_path_buf();
            Some(blocking(move || Staging::prepare(&dir, replace)).await?)
        }
        None => None,
    };
    progress.set_total(entry.manifest.stored_bytes);
    let object = match dest.get(&entry.archive_key).await {
        Ok(o) => o,
        Err(e) => {
            if let Some(s) = staging {
                s.discard();
            }
            return Err(e);
        }
    };
    let reader = ObjectReader::new(object);
    let expected = Expected {
        sha256: entry.manifest.sha256.clone(),
        stored_bytes: entry.manifest.stored_bytes,
        plain_bytes: Some(entry.manifest.plain_bytes),
    };
    let mut decryption = decryption.clone();
    decryption.bound_to = Binding::Backup(context_of(&entry.manifest));
    blocking(move || read_into(reader, &decryption, Some(&expected), staging, &*progress)).await
}

/// The backup context a manifest claims for its archive.
pub fn context_of(manifest: &Manifest) -> BackupContext {
    BackupContext {
        name: manifest.name.clone(),
        instance_id: manifest.instance_id.clone(),
        started_at: manifest.started_at,
    }
}

/// The backup a downloaded archive's file name names (`NAME.tar.gz.enc` and the other
/// endings), if it is one: the archive must then be bound to that name.
pub fn binding_of_file(archive: &Path) -> Binding {
    let Some(file) = archive.file_name().and_then(|f| f.to_str()) else {
        return Binding::Unchecked;
    };
    crate::layout::ARCHIVE_EXTS
        .iter()
        .find_map(|ext| file.strip_suffix(ext))
        .filter(|name| {
            crate::retention::time_of_name(name).is_some() && crate::layout::is_backup_name(name)
        })
        .map_or(Binding::Unchecked, |name| Binding::Name(name.to_string()))
}

/// Restores (or with no target, verifies) an archive file, such as a downloaded one.
pub fn restore_file(
    archive: &Path,
    decryption: &Decryption,
    target: Option<(&Path, bool)>,
    progress: &dyn Progress,
) -> Result<ReadStats> {
    let file = std::fs::File::open(archive).map_err(|e| Error::io("open archive", archive, e))?;
    if let Ok(meta) = file.metadata() {
        progress.set_total(meta.len());
    }
    let staging = target
        .map(|(dir, replace)| Staging::prepare(dir, replace))
        .transpose()?;
    read_into(file, decryption, None, staging, progress)
}

/// Restores (or with no target, verifies) an archive read from `input`, such as stdin.
pub fn read_into<R: Read + Send>(
    input: R,
    decryption: &Decryption,
    expected: Option<&Expected>,
    staging: Option<Staging>,
    progress: &dyn Progress,
) -> Result<ReadStats> {
    let extractor = match &staging {
        Some(s) => Extractor::into_dir(s.dir()),
        None => Extractor::check_only(),
    };
    match read_archive(input, decryption, expected, extractor, progress) {
        Ok(stats) => {
            if let Some(s) = staging {
                s.commit()?;
            }
            Ok(stats)
        }
        Err(e) => {
            if let Some(s) = staging {
                s.discard();
            }
            Err(e)
        }
    }
}
