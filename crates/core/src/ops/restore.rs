//! A restore: a backup read back from a destination (or an archive file, or any reader),
//! checked end to end, and extracted into a folder through a staging folder, or only
//! checked (a verify). The target is left as it was if anything fails.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::blocking;
use crate::catalog::BackupEntry;
use crate::destination::Destination;
use crate::error::{Error, Result};
use crate::pipeline::ObjectReader;
use crate::pipeline::extract::Extractor;
use crate::pipeline::ranged::RangedRead;
use crate::pipeline::read::read_archive;
use crate::pipeline::staging::Staging;
use crate::progress::Progress;

mod resume;

pub use crate::pipeline::read::{Binding, Decryption, Expected, ReadStats};
pub use resume::{CHECKPOINT_EVERY, restore_resumable};

/// Where a restore puts what it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreInto {
    /// Extract into this folder, through a staging folder.
    Dir {
        /// The folder restored into.
        path: PathBuf,
        /// Replace a folder that is not empty (only once the backup is fully restored).
        replace: bool,
    },
    /// Check every layer, write nothing.
    CheckOnly,
}

impl RestoreInto {
    /// The folder restored into, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Dir { path, .. } => Some(path),
            Self::CheckOnly => None,
        }
    }

    /// The staging folder of a restore into a folder; none for a check.
    fn prepare(&self) -> Result<Option<Staging>> {
        match self {
            Self::Dir { path, replace } => Staging::prepare(path, *replace).map(Some),
            Self::CheckOnly => Ok(None),
        }
    }
}

/// Downloads `entry` and checks it end to end, restoring it `into` a folder or only
/// checking it.
pub async fn restore_backup(
    dest: Arc<dyn Destination>,
    entry: &BackupEntry,
    decryption: &Decryption,
    into: &RestoreInto,
    progress: Arc<dyn Progress>,
) -> Result<ReadStats> {
    // The target is checked before anything is downloaded.
    let staging = match into {
        RestoreInto::Dir { .. } => {
            let into = into.clone();
            blocking(move || into.prepare()).await?
        }
        RestoreInto::CheckOnly => None,
    };
    progress.set_total(entry.manifest.stored_bytes);
    // Ranges, several at once, each retried alone: a connection lost late in a large
    // archive costs what was in flight, not the archive.
    let object = match RangedRead::default()
        .read(
            dest.clone(),
            &entry.archive_key,
            entry.manifest.stored_bytes,
        )
        .await
    {
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
    decryption.bound_to = Binding::Backup(entry.manifest.context());
    blocking(move || read_staged(reader, &decryption, Some(&expected), staging, &*progress)).await
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

/// Restores `into` a folder, or checks, an archive file, such as a downloaded one.
pub fn restore_file(
    archive: &Path,
    decryption: &Decryption,
    into: &RestoreInto,
    progress: &dyn Progress,
) -> Result<ReadStats> {
    let file = std::fs::File::open(archive).map_err(|e| Error::io("open archive", archive, e))?;
    if let Ok(meta) = file.metadata() {
        progress.set_total(meta.len());
    }
    let staging = into.prepare()?;
    read_staged(file, decryption, None, staging, progress)
}

/// Restores `into` a folder, or checks, an archive read from `input`, such as stdin.
pub fn read_into<R: Read + Send>(
    input: R,
    decryption: &Decryption,
    expected: Option<&Expected>,
    into: &RestoreInto,
    progress: &dyn Progress,
) -> Result<ReadStats> {
    let staging = into.prepare()?;
    read_staged(input, decryption, expected, staging, progress)
}

/// Reads the archive into `staging` (or only checks it without one), then commits the
/// staging folder into its target, or discards it if anything failed.
fn read_staged<R: Read + Send>(
    input: R,
    decryption: &Decryption,
    expected: Option<&Expected>,
    staging: Option<Staging>,
    progress: &dyn Progress,
) -> Result<ReadStats> {
    let extractor = match &staging {
        Some(s) => Extractor::into_staging(s),
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
