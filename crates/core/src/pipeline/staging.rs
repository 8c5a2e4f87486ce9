//! The target of a restore: a staging directory to extract into, moved into the target
//! only when everything checked out.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// Prefix of the hidden directories a restore works in, inside the target.
const WORK_PREFIX: &str = ".service-backup-";

/// A restore into a target directory through a staging directory inside it.
#[derive(Debug)]
pub struct Staging {
    target: PathBuf,
    staging: PathBuf,
    created_target: bool,
}

impl Staging {
    /// Prepares `target` for a restore: refuses a non-empty target unless `replace`, and
    /// creates the staging directory.
    pub fn prepare(target: &Path, replace: bool) -> Result<Self> {
        let created_target = !target.exists();
        std::fs::create_dir_all(target)
            .map_err(|e| Error::io("create restore target", target, e))?;
        remove_stale_work_dirs(target)?;
        if !replace && !visible_entries(target)?.is_empty() {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("restore target {} is not empty", target.display()),
            )
            .with_hint("restore into an empty folder, or pass --force to replace its content once the backup is fully restored"));
        }
        let token = crate::random::hex_token(6)?;
        let staging = target.join(format!("{WORK_PREFIX}restore-{token}"));
        std::fs::create_dir(&staging)
            .map_err(|e| Error::io("create staging folder", &staging, e))?;
        Ok(Self {
            target: target.to_path_buf(),
            staging,
            created_target,
        })
    }

    /// The directory to extract into.
    pub fn dir(&self) -> &Path {
        &self.staging
    }

    /// Moves the staged content into the target, replacing what was there.
    pub fn commit(self) -> Result<()> {
        let old = self.target.join(format!(
            "{WORK_PREFIX}replaced-{}",
            crate::random::hex_token(6)?
        ));
        let existing = visible_entries(&self.target)?;
        if !existing.is_empty() {
            std::fs::create_dir(&old).map_err(|e| Error::io("create", &old, e))?;
            for name in &existing {
                let from = self.target.join(name);
                std::fs::rename(&from, old.join(name))
                    .map_err(|e| Error::io("move aside", &from, e))?;
            }
        }
        for name in visible_entries(&self.staging)? {
            let from = self.staging.join(&name);
            std::fs::rename(&from, self.target.join(&name))
                .map_err(|e| Error::io("move into place", &from, e))?;
        }
        std::fs::remove_dir(&self.staging).map_err(|e| Error::io("remove", &self.staging, e))?;
        if old.exists() {
            std::fs::remove_dir_all(&old)
                .map_err(|e| Error::io("remove replaced content", &old, e))?;
        }
        if let Ok(dir) = std::fs::File::open(&self.target) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Removes the staged content; the target is left as it was.
    pub fn discard(self) {
        let _ = std::fs::remove_dir_all(&self.staging);
        if self.created_target {
            let _ = std::fs::remove_dir(&self.target);
        }
    }
}

fn visible_entries(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("read", dir, e))? {
        let entry = entry.map_err(|e| Error::io("read", dir, e))?;
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(WORK_PREFIX) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn remove_stale_work_dirs(target: &Path) -> Result<()> {
    for entry in std::fs::read_dir(target).map_err(|e| Error::io("read", target, e))? {
        let entry = entry.map_err(|e| Error::io("read", target, e))?;
        if entry.file_name().to_string_lossy().starts_with(WORK_PREFIX) {
            let path = entry.path();
            tracing::info!(path = %path.display(), "removing the work folder of an interrupted restore");
            std::fs::remove_dir_all(&path).map_err(|e| Error::io("remove", &path, e))?;
        }
    }
    Ok(())
}
