//! A selective restore put into a live folder: each restored path (the shallowest ones; a
//! folder restored whole is one) is moved from the staging folder into the target alone,
//! replacing only what is at its own path. Everything else in the target stays as it is.
//!
//! A path that exists in the target is exchanged with the staged one
//! (`renameat2(RENAME_EXCHANGE)`; where the filesystem refuses that, the old one is moved
//! aside first), a path that does not is moved in without replacing anything
//! (`RENAME_NOREPLACE`), a missing folder above one with the folder as the backup has it
//! (its mode and time from the archive, holding only what is restored). Before the first
//! move that displaces something, the staging folder takes a `replaced-` name: if the agent
//! stops half-way, the previous content of what was already put in place is there, and
//! restores into the target are refused, naming it, until someone has looked. On an error
//! every move is undone, newest first.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, RenameFlags, renameat2};
use nix::sys::stat::Mode;

use super::{Place, REPLACED, Staging, TOKEN_BYTES, remove_replaced, work_name};
use crate::error::{Error, ErrorKind, Result};
use crate::random::hex_token;

/// Checks, before anything is read or written, that the restored paths `tops` can be put
/// into `target`: no folder above one is a file or a symbolic link in the target (a
/// restore would write through it or replace more than the restored path), and, unless
/// `replace`, none of them exists there.
pub fn check_merge(target: &Path, tops: &[String], replace: bool) -> Result<()> {
    plan(target, tops, replace).map(|_| ())
}

/// One restored path moved into the target: relative to the target and to the staging
/// folder, and whether something was at its place in the target.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unit {
    rel: PathBuf,
    existed: bool,
}

/// The units that put `tops` into `target`: for each, its shallowest folder missing in
/// the target, or itself.
fn plan(target: &Path, tops: &[String], replace: bool) -> Result<Vec<Unit>> {
    let mut units: Vec<Unit> = Vec::new();
    if std::fs::symlink_metadata(target).is_err() {
        // A target that does not exist yet holds nothing to keep: it is created.
        return Ok(units);
    }
    for top in tops {
        let mut rel = PathBuf::new();
        let mut unit = None;
        let parts: Vec<&str> = top.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            rel.push(part);
            let path = target.join(&rel);
            let last = i + 1 == parts.len();
            match std::fs::symlink_metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    unit = Some(Unit {
                        rel: rel.clone(),
                        existed: false,
                    });
                    break;
                }
                Err(e) => return Err(Error::io("read", &path, e)),
                Ok(_) if last && !replace => {
                    return Err(Error::new(
                        ErrorKind::Usage,
                        format!(
                            "restore target {} already holds {top}, which this restore would replace",
                            target.display()
                        ),
                    )
                    .with_hint("pass --force to replace the restored paths (only those: the rest of the target stays as it is), or restore into another folder (--target)"));
                }
                Ok(_) if last => {
                    unit = Some(Unit {
                        rel: rel.clone(),
                        existed: true,
                    });
                }
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) => {
                    let what = if meta.file_type().is_symlink() {
                        "a symbolic link"
                    } else {
                        "a file"
                    };
                    return Err(Error::new(
                        ErrorKind::Usage,
                        format!(
                            "restore target {} holds {} as {what}, where the backup has a folder above {top}: restoring {top} would write through it or replace it",
                            target.display(),
                            rel.display()
                        ),
                    )
                    .with_hint("move it out of the way first, or restore into another folder (--target)"));
                }
            }
        }
        if let Some(unit) = unit
            && !units.iter().any(|u| u.rel == unit.rel)
        {
            units.push(unit);
        }
    }
    Ok(units)
}

/// A move done, to undo on an error.
#[derive(Debug)]
enum Done {
    /// Exchanged with what was at the path.
    Exchanged(PathBuf),
    /// Moved in where nothing was.
    MovedIn(PathBuf),
    /// The old entry moved aside (to this name), then the new one moved in.
    Aside(PathBuf, PathBuf),
}

impl Staging {
    /// Puts the staged paths `tops` (the shallowest restored paths, in the staging
    /// folder's tree) into the target, each replacing only what is at its own path
    /// (refused unless `replace`); everything else in the target stays as it is. On an
    /// error the target is left as it was, or the error names the folder that holds what
    /// could not be put back.
    pub fn merge(self, tops: &[String], replace: bool) -> Result<()> {
        let units = match plan(&self.target, tops, replace) {
            Ok(units) => units,
            Err(e) => {
                self.remove_staging();
                return Err(e);
            }
        };
        let (token, aside_token) = match (hex_token(TOKEN_BYTES), hex_token(TOKEN_BYTES)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                self.remove_staging();
                return Err(e);
            }
        };
        // Before anything of the target's is displaced: the staging folder takes a
        // `replaced-` name, so that what a stop half-way leaves in it is kept and named.
        let work = if units.iter().any(|u| u.existed) {
            let name = match &self.place {
                Place::Beside {
                    parent_path,
                    name_part,
                    ..
                } => parent_path.join(work_name(REPLACED, Some(name_part), &token)),
                Place::Inside => self.target.join(work_name(REPLACED, None, &token)),
            };
            if let Err(e) = std::fs::rename(&self.folder, &name) {
                self.remove_staging();
                return Err(Error::io("rename", &self.folder, e));
            }
            name
        } else {
            self.folder.clone()
        };
        let dir = match open_path(&self.target) {
            Ok(dir) => dir,
            Err(e) => {
                discard(&work, &self);
                return Err(e);
            }
        };
        let aside = work.join(format!(".service-backup-aside-{aside_token}"));
        let mut done: Vec<Done> = Vec::new();
        let mut failed = None;
        for (i, unit) in units.iter().enumerate() {
            let (from, to) = (work.join(&unit.rel), self.target.join(&unit.rel));
            match put(&dir, &from, &to, unit.existed, &aside, i) {
                Ok(step) => done.push(step),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let Some(e) = failed else {
            for unit in &units {
                if let Some(parent) = self.target.join(&unit.rel).parent()
                    && let Ok(d) = std::fs::File::open(parent)
                {
                    let _ = d.sync_all();
                }
            }
            if work == self.folder {
                // Only the folders above the restored paths are left in it.
                remove_work(&work);
            } else {
                remove_replaced(&work);
            }
            return Ok(());
        };
        // Every move undone, newest first.
        let mut stuck = Vec::new();
        for step in done.into_iter().rev() {
            if let Err(problem) = undo(&dir, &work, &self.target, &step) {
                stuck.push(problem);
            }
        }
        if stuck.is_empty() {
            discard(&work, &self);
            return Err(e.context(format!(
                "restore target {} was left as it was",
                self.target.display()
            )));
        }
        Err(Error::new(
            e.kind(),
            format!(
                "{e}; restore target {} is half restored: undoing the moves failed for {}",
                self.target.display(),
                stuck.join(", ")
            ),
        )
        .with_hint(format!(
            "the previous content of the restored paths put in place is in {}, at the same relative paths; move back what you need by hand, then delete it",
            work.display()
        )))
    }
}

/// Removes the work folder, which holds only staged content again, and the target if this
/// restore created it and it is empty.
fn discard(work: &Path, staging: &Staging) {
    remove_work(work);
    if staging.created_target {
        let _ = std::fs::remove_dir(&staging.target);
    }
}

/// Removes the work folder, which holds nothing of the target's.
fn remove_work(work: &Path) {
    if let Err(e) = std::fs::remove_dir_all(work)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %work.display(), error = %e, "the staging folder of the restore could not be removed; delete it by hand");
    }
}

/// Opens `dir` as a path handle, for the renames (which all take absolute paths).
fn open_path(dir: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open", dir, e.into()))
}

/// Whether `errno` says the filesystem does not do this kind of rename.
fn unsupported(errno: Errno) -> bool {
    matches!(errno, Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP)
}

/// Moves the staged `from` to `to` in the target: exchanged with what is there when
/// `existed` (or, where exchanges are refused, that moved aside to `aside`), else without
/// replacing anything.
fn put(
    dir: &OwnedFd,
    from: &Path,
    to: &Path,
    existed: bool,
    aside: &Path,
    i: usize,
) -> Result<Done> {
    let flags = if existed {
        RenameFlags::RENAME_EXCHANGE
    } else {
        RenameFlags::RENAME_NOREPLACE
    };
    match renameat2(dir, from, dir, to, flags) {
        Ok(()) if existed => return Ok(Done::Exchanged(to.to_path_buf())),
        Ok(()) => return Ok(Done::MovedIn(to.to_path_buf())),
        Err(errno) if !unsupported(errno) => {
            return Err(Error::io("move into place", from, errno.into()));
        }
        Err(_) => {}
    }
    // A filesystem without these renames: plain renames, checked first.
    if !existed {
        if std::fs::symlink_metadata(to).is_ok() {
            return Err(Error::io(
                "move into place",
                from,
                std::io::ErrorKind::AlreadyExists.into(),
            ));
        }
        std::fs::rename(from, to).map_err(|e| Error::io("move into place", from, e))?;
        return Ok(Done::MovedIn(to.to_path_buf()));
    }
    if std::fs::symlink_metadata(aside).is_err() {
        std::fs::create_dir(aside).map_err(|e| Error::io("create", aside, e))?;
    }
    let old = aside.join(i.to_string());
    std::fs::rename(to, &old).map_err(|e| Error::io("move aside", to, e))?;
    if let Err(e) = std::fs::rename(from, to) {
        let err = Error::io("move into place", from, e);
        if let Err(back) = std::fs::rename(&old, to) {
            return Err(Error::new(
                err.kind(),
                format!(
                    "{err}; and moving {} back to {} failed: {back}",
                    old.display(),
                    to.display()
                ),
            ));
        }
        return Err(err);
    }
    Ok(Done::Aside(to.to_path_buf(), old))
}

/// Undoes one move: the target's entry goes back where it was, the staged one back into
/// the work folder. Returns what could not be put back.
fn undo(dir: &OwnedFd, work: &Path, target: &Path, step: &Done) -> std::result::Result<(), String> {
    let staged = |to: &Path| work.join(to.strip_prefix(target).unwrap_or(to));
    match step {
        Done::Exchanged(to) => renameat2(dir, &staged(to), dir, to, RenameFlags::RENAME_EXCHANGE)
            .map_err(|e| format!("{}: {e}", to.display())),
        Done::MovedIn(to) => {
            std::fs::rename(to, staged(to)).map_err(|e| format!("{}: {e}", to.display()))
        }
        Done::Aside(to, old) => std::fs::rename(to, staged(to))
            .and_then(|()| std::fs::rename(old, to))
            .map_err(|e| format!("{}: {e}", to.display())),
    }
}
