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

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, RenameFlags, renameat, renameat2};
use nix::sys::stat::{Mode, fstatat, mkdirat};

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

/// The folders a restored path moves between, opened one name at a time from the target
/// and from the work folder without following links (so that a folder swapped for a link
/// after the check cannot lead a move outside either), and its name in both.
#[derive(Debug)]
struct Pair {
    /// The folder that holds it in the target.
    to_dir: OwnedFd,
    /// The folder that holds it in the work folder.
    from_dir: OwnedFd,
    /// Its name in both.
    name: OsString,
    /// Its path in the target, for messages.
    to: PathBuf,
    /// Its path in the work folder, for messages.
    from: PathBuf,
}

impl Pair {
    fn open(
        target_dir: &OwnedFd,
        target: &Path,
        work_dir: &OwnedFd,
        work: &Path,
        rel: &Path,
    ) -> Result<Self> {
        let (to, from) = (target.join(rel), work.join(rel));
        let name = rel
            .file_name()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!("{} names no entry", rel.display()),
                )
            })?
            .to_os_string();
        let parent = rel.parent().unwrap_or(Path::new(""));
        Ok(Self {
            to_dir: open_beneath(target_dir, target, parent)?,
            from_dir: open_beneath(work_dir, work, parent)?,
            name,
            to,
            from,
        })
    }
}

/// The folder a merge moves the target's displaced entries into where the filesystem
/// refuses exchanges: made in the work folder when first needed.
struct Aside {
    name: String,
    dir: Option<OwnedFd>,
}

/// A move done, to undo on an error.
#[derive(Debug)]
enum Done {
    /// Exchanged with what was at the path.
    Exchanged(Pair),
    /// Moved in where nothing was.
    MovedIn(Pair),
    /// The old entry moved aside (to this name in the aside folder), then the new one moved in.
    Aside(Pair, String),
}

impl Done {
    fn pair(&self) -> &Pair {
        match self {
            Self::Exchanged(pair) | Self::MovedIn(pair) | Self::Aside(pair, _) => pair,
        }
    }
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
        let dirs = match open_dir(&self.target, false).and_then(|t| {
            // The staging folder as this restore holds it, whatever has its name now.
            let work_dir =
                nix::unistd::dup(&self.lock).map_err(|e| Error::io("open", &work, e.into()))?;
            Ok((t, work_dir))
        }) {
            Ok(dirs) => dirs,
            Err(e) => {
                discard(&work, &self);
                return Err(e);
            }
        };
        let (target_dir, work_dir) = &dirs;
        let mut aside = Aside {
            name: format!(".service-backup-aside-{aside_token}"),
            dir: None,
        };
        let mut done: Vec<Done> = Vec::new();
        let mut failed = None;
        for (i, unit) in units.iter().enumerate() {
            let step = Pair::open(target_dir, &self.target, work_dir, &work, &unit.rel)
                .and_then(|pair| put(pair, unit.existed, work_dir, &mut aside, i));
            match step {
                Ok(step) => done.push(step),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let Some(e) = failed else {
            for step in &done {
                let _ = nix::unistd::fsync(&step.pair().to_dir);
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
            if let Err(problem) = undo(&step, aside.dir.as_ref()) {
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

/// Opens the folder `dir` for moves relative to it (and its sync); `nofollow`: not
/// through a link at its last name.
fn open_dir(dir: &Path, nofollow: bool) -> Result<OwnedFd> {
    let mut flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if nofollow {
        flags |= OFlag::O_NOFOLLOW;
    }
    nix::fcntl::open(dir, flags, Mode::empty()).map_err(|e| Error::io("open", dir, e.into()))
}

/// Opens the folder `rel` below `root` (whose path is `root_path`), one name at a time,
/// never through a link: a name that is a link or a file now (it was a folder when the
/// restore checked) is refused.
fn open_beneath(root: &OwnedFd, root_path: &Path, rel: &Path) -> Result<OwnedFd> {
    let mut dir = nix::unistd::dup(root).map_err(|e| Error::io("open", root_path, e.into()))?;
    let mut path = root_path.to_path_buf();
    for part in rel.components() {
        path.push(part);
        dir = nix::fcntl::openat(
            &dir,
            part.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| match errno {
            Errno::ELOOP | Errno::ENOTDIR => Error::new(
                ErrorKind::Usage,
                format!(
                    "{} is no longer a folder (it was when the restore checked): something changed the target while the restore put paths in place",
                    path.display()
                ),
            ),
            other => Error::io("open", &path, other.into()),
        })?;
    }
    Ok(dir)
}

/// Whether `errno` says the filesystem does not do this kind of rename.
fn unsupported(errno: Errno) -> bool {
    matches!(errno, Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP)
}

/// Moves the staged entry of `pair` into the target: exchanged with what is there when
/// `existed` (or, where exchanges are refused, that moved aside into `aside`, made in
/// `work_dir` when first needed), else without replacing anything.
fn put(pair: Pair, existed: bool, work_dir: &OwnedFd, aside: &mut Aside, i: usize) -> Result<Done> {
    let flags = if existed {
        RenameFlags::RENAME_EXCHANGE
    } else {
        RenameFlags::RENAME_NOREPLACE
    };
    let name = pair.name.as_os_str();
    match renameat2(&pair.from_dir, name, &pair.to_dir, name, flags) {
        Ok(()) if existed => return Ok(Done::Exchanged(pair)),
        Ok(()) => return Ok(Done::MovedIn(pair)),
        Err(errno) if !unsupported(errno) => {
            return Err(Error::io("move into place", &pair.from, errno.into()));
        }
        Err(_) => {}
    }
    // A filesystem without these renames: plain renames, checked first.
    if !existed {
        if fstatat(&pair.to_dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok() {
            return Err(Error::io(
                "move into place",
                &pair.from,
                std::io::ErrorKind::AlreadyExists.into(),
            ));
        }
        renameat(&pair.from_dir, name, &pair.to_dir, name)
            .map_err(|e| Error::io("move into place", &pair.from, e.into()))?;
        return Ok(Done::MovedIn(pair));
    }
    if aside.dir.is_none() {
        match mkdirat(
            work_dir,
            aside.name.as_str(),
            Mode::from_bits_truncate(0o700),
        ) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(Error::io("create", Path::new(&aside.name), e.into())),
        }
        let dir = nix::fcntl::openat(
            work_dir,
            aside.name.as_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open", Path::new(&aside.name), e.into()))?;
        aside.dir = Some(dir);
    }
    let aside_dir = aside.dir.as_ref().expect("made above");
    let old = i.to_string();
    renameat(&pair.to_dir, name, aside_dir, old.as_str())
        .map_err(|e| Error::io("move aside", &pair.to, e.into()))?;
    if let Err(e) = renameat(&pair.from_dir, name, &pair.to_dir, name) {
        let err = Error::io("move into place", &pair.from, e.into());
        if let Err(back) = renameat(aside_dir, old.as_str(), &pair.to_dir, name) {
            return Err(Error::new(
                err.kind(),
                format!(
                    "{err}; and moving {} back from {} failed: {back}",
                    pair.to.display(),
                    aside.name
                ),
            ));
        }
        return Err(err);
    }
    Ok(Done::Aside(pair, old))
}

/// Undoes one move: the target's entry goes back where it was, the staged one back into
/// the work folder. Returns what could not be put back.
fn undo(step: &Done, aside: Option<&OwnedFd>) -> std::result::Result<(), String> {
    let pair = step.pair();
    let name = pair.name.as_os_str();
    let failed = |e: Errno| format!("{}: {e}", pair.to.display());
    match step {
        Done::Exchanged(_) => renameat2(
            &pair.from_dir,
            name,
            &pair.to_dir,
            name,
            RenameFlags::RENAME_EXCHANGE,
        )
        .map_err(failed),
        Done::MovedIn(_) => renameat(&pair.to_dir, name, &pair.from_dir, name).map_err(failed),
        Done::Aside(_, old) => {
            let aside = aside.ok_or_else(|| format!("{}: no aside folder", pair.to.display()))?;
            renameat(&pair.to_dir, name, &pair.from_dir, name)
                .and_then(|()| renameat(aside, old.as_str(), &pair.to_dir, name))
                .map_err(failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder above a restored path that became a link after the restore checked it
    /// (someone who may write the target swapped it): the move is refused, and nothing
    /// lands where the link points.
    #[test]
    fn a_folder_swapped_for_a_link_after_the_check_is_never_moved_through() {
        let tmp = tempfile::tempdir().unwrap();
        let (target, work, outside) = (
            tmp.path().join("target"),
            tmp.path().join("work"),
            tmp.path().join("outside"),
        );
        for dir in [&target, &work, &outside] {
            std::fs::create_dir_all(dir.join("sub")).unwrap();
        }
        std::fs::write(work.join("sub/new.conf"), b"restored").unwrap();
        let rel = Path::new("sub/new.conf");
        let units = plan(&target, &["sub/new.conf".to_string()], false).unwrap();
        assert_eq!(units.len(), 1);
        // Swapped between the check and the move.
        std::fs::rename(target.join("sub"), tmp.path().join("moved-away")).unwrap();
        std::os::unix::fs::symlink(outside.join("sub"), target.join("sub")).unwrap();
        let (target_dir, work_dir) = (
            open_dir(&target, false).unwrap(),
            open_dir(&work, true).unwrap(),
        );
        let err = Pair::open(&target_dir, &target, &work_dir, &work, rel).unwrap_err();
        assert!(err.to_string().contains("is no longer a folder"), "{err}");
        assert!(!outside.join("sub/new.conf").exists());

        // A folder that stays a folder: moved in, relative to the folders opened.
        std::fs::remove_file(target.join("sub")).unwrap();
        std::fs::rename(tmp.path().join("moved-away"), target.join("sub")).unwrap();
        let pair = Pair::open(&target_dir, &target, &work_dir, &work, rel).unwrap();
        let mut aside = Aside {
            name: "aside".into(),
            dir: None,
        };
        let done = put(pair, false, &work_dir, &mut aside, 0).unwrap();
        assert_eq!(
            std::fs::read(target.join("sub/new.conf")).unwrap(),
            b"restored"
        );
        undo(&done, None).unwrap();
        assert!(!target.join("sub/new.conf").exists());
        assert!(work.join("sub/new.conf").exists());
    }
}
