//! The target of a restore, and the staging folder the archive is extracted into, put in
//! the target's place only when everything checked out.
//!
//! The staging folder is a hidden sibling of the target, on the same filesystem:
//! `<parent>/.service-backup-restore-<name>-<token>`. Putting it in place is then one
//! `renameat2(RENAME_EXCHANGE)` of the two folders: at every moment the target holds all
//! of its old content or all of the new, whatever stops the agent.
//!
//! Where an exchange cannot work, the staging folder goes inside the target and the
//! entries are moved one by one, each move undone on the first error: when the target is
//! a mount point (its parent is another filesystem, and a mount point cannot be renamed),
//! when the agent cannot write to its parent (BOSH's `/var/vcap/store` belongs to root),
//! when the staged folder cannot be given the target's owner, and when the filesystem
//! refuses the exchange (NFS).
//!
//! A mount point inside the target is refused: the target's folders move as a whole, and
//! a mount inside one would move with it, and its content be deleted with the old content.
//!
//! Folders left by a restore that was stopped: a `restore-` one only ever holds part of
//! an extraction, and the next restore removes it (unless a restore still works in it:
//! each one locks its folder). A `replaced-` one may hold the target's previous content:
//! only the restore that made it removes it, once that restore succeeded. While one is
//! inside the target or beside it, the target is half replaced and restores into it are
//! refused, naming the folder: a restore would move the rest of the old content aside and
//! delete it.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, RenameFlags, renameat, renameat2};
use nix::sys::stat::Mode;

use crate::error::{Error, ErrorKind, Result};
use crate::random::hex_token;

mod merge;
pub use merge::check_merge;

/// Prefix of the hidden folders a restore works in; a backup never archives them.
pub const WORK_PREFIX: &str = ".service-backup-";

/// A folder being extracted into: `<WORK_PREFIX>restore-…`.
const STAGING: &str = "restore-";

/// A folder holding the content a restore replaced: `<WORK_PREFIX>replaced-…`.
const REPLACED: &str = "replaced-";

/// Random bytes in a work folder's name (twice as many hex digits).
const TOKEN_BYTES: usize = 6;

/// The longest part of the target's name that a work folder beside it repeats, so that the
/// folder's name stays within the 255 bytes of a file name.
const NAME_PART_MAX: usize = 128;

/// Where the staging folder is.
#[derive(Debug)]
enum Place {
    /// Beside the target, swapped with it on commit.
    Beside {
        /// The target's parent, held open so that every rename happens in that folder.
        parent: OwnedFd,
        /// Its path, for messages and for what takes paths.
        parent_path: PathBuf,
        /// The target's name in `parent`.
        target_name: OsString,
        /// The staging folder's name in `parent`.
        staging_name: OsString,
        /// The target's name as the work folders beside it repeat it.
        name_part: OsString,
    },
    /// Inside the target; the entries are moved on commit.
    Inside,
}

/// A restore into a target folder through a staging folder beside it (or, where that
/// cannot work, inside it).
#[derive(Debug)]
pub struct Staging {
    /// The target's real path (symbolic links resolved).
    target: PathBuf,
    /// The staging folder.
    folder: PathBuf,
    place: Place,
    created_target: bool,
    /// Whether the staging folder was left by an earlier restore and taken over.
    adopted: bool,
    /// The path an extraction writes through: for a staging folder inside the target,
    /// the staging folder as this process holds it open (`/proc/self/fd/N`), which stays
    /// that folder whatever someone who may write the target renames or swaps in for it;
    /// else the staging folder's path.
    extract_root: PathBuf,
    /// Held while the staging folder is in use, so that no other restore removes it as
    /// left over.
    lock: File,
}

impl Staging {
    /// Prepares `target` for a restore: refuses a non-empty target unless `replace`, and
    /// a target holding a mount point; removes what stopped restores left that holds
    /// nothing of the target's; creates the staging folder.
    pub fn prepare(target: &Path, replace: bool) -> Result<Self> {
        Self::prepare_adopting(target, replace, None)
    }

    /// [`Self::prepare`], taking over the staging folder `adopt` that an earlier restore
    /// into `target` left (to resume it) when it is still there, in the place this restore
    /// would stage in; [`Self::adopted`] tells whether it was.
    pub fn prepare_adopting(target: &Path, replace: bool, adopt: Option<&Path>) -> Result<Self> {
        let created_target = std::fs::symlink_metadata(target).is_err();
        std::fs::create_dir_all(target)
            .map_err(|e| Error::io("create restore target", target, e))?;
        let prepared = Self::prepare_existing(target, replace, created_target, adopt);
        if prepared.is_err() && created_target {
            let _ = std::fs::remove_dir(target);
        }
        prepared
    }

    fn prepare_existing(
        given: &Path,
        replace: bool,
        created_target: bool,
        adopt: Option<&Path>,
    ) -> Result<Self> {
        // The real path: a target reached through a symbolic link is restored where the
        // link points, and the link stays as it is.
        let target = std::fs::canonicalize(given)
            .map_err(|e| Error::io("resolve restore target", given, e))?;
        // A target beside or inside which a stopped restore left the target's previous
        // content is half replaced: a new restore would move the rest aside and delete it.
        if let Some(kept) = kept_replaced(&target) {
            return Err(half_replaced_error(&target, &kept));
        }
        let mounts = mount_points();
        // Only a folder of ours (a staging folder's name, beside or inside the target) is
        // taken over; its random token is kept.
        let adopt = adopt.filter(|p| {
            let (Some(parent), Some(name), Some(target_name)) =
                (p.parent(), p.file_name(), target.file_name())
            else {
                return false;
            };
            (parent == target && is_work_name(name, STAGING, None))
                || (Some(parent) == target.parent()
                    && is_work_name(name, STAGING, Some(&name_part(target_name))))
        });
        let keep = adopt.and_then(Path::file_name);
        clean_inside(&target, &mounts, keep);
        if !replace && !visible_entries(&target)?.is_empty() {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("restore target {} is not empty", target.display()),
            )
            .with_hint("restore into an empty folder, or pass --force to replace its content once the backup is fully restored"));
        }
        if let Some(mount) = mount_inside(&mounts, &target) {
            return Err(mount_error(&target, mount));
        }
        let token = match keep {
            Some(name) => {
                let name = name.as_bytes();
                String::from_utf8_lossy(&name[name.len() - 2 * TOKEN_BYTES..]).into_owned()
            }
            None => hex_token(TOKEN_BYTES)?,
        };
        if let Some((place, staging, lock, adopted)) = beside(&target, &mounts, &token, adopt)? {
            return Ok(Self {
                target,
                extract_root: staging.clone(),
                folder: staging,
                place,
                created_target,
                adopted,
                lock,
            });
        }
        let staging = target.join(work_name(STAGING, None, &token));
        let adopted = make_staging(&staging, adopt)
            .map_err(|e| Error::io("create staging folder", &staging, e))?;
        let lock = lock_dir(&staging)?;
        Ok(Self {
            target,
            extract_root: held_path(&lock).unwrap_or_else(|| staging.clone()),
            folder: staging,
            place: Place::Inside,
            created_target,
            adopted,
            lock,
        })
    }

    /// Whether the staging folder is one an earlier restore left, taken over to resume it.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// The target's real path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The staging folder's path (for messages and checkpoints).
    pub fn dir(&self) -> &Path {
        &self.folder
    }

    /// The path to extract into: the staging folder, reached through the handle this
    /// restore holds on it where it lies inside the target.
    pub fn extract_dir(&self) -> &Path {
        &self.extract_root
    }

    /// Puts the staged content in the target's place. On an error the target is left as
    /// it was, or the error says where its previous content is.
    pub fn commit(self) -> Result<()> {
        match &self.place {
            Place::Beside { .. } => self.swap(),
            Place::Inside => {
                let staging = self.folder.clone();
                self.move_entries(&staging)
            }
        }
    }

    /// Removes the staged content; the target is left as it was.
    pub fn discard(self) {
        self.remove_staging();
    }

    fn remove_staging(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.folder)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.folder.display(), error = %e, "the staging folder of the restore could not be removed; the next restore removes it");
        }
        if self.created_target {
            let _ = std::fs::remove_dir(&self.target);
        }
    }

    /// Swaps the staging folder beside the target with the target.
    fn swap(self) -> Result<()> {
        let Place::Beside {
            parent,
            parent_path,
            target_name,
            staging_name,
            name_part,
        } = &self.place
        else {
            unreachable!("swap is for a staging folder beside the target");
        };
        // Once swapped, the staged folder is the target: it takes the target's own mode
        // and owner first (its ACLs and extended attributes are not carried over).
        if let Err(e) = take_mode_and_owner(&self.target, &self.folder) {
            tracing::info!(target = %self.target.display(), error = %e, "the restored folder cannot take the target's owner; its entries are moved into the target instead");
            return self.move_entries_from_beside();
        }
        // Named `replaced-` before the exchange: if the agent stops after it, that name
        // holds the target's previous content, which the next restore keeps.
        let replaced_name = work_name(REPLACED, Some(name_part), &hex_token(TOKEN_BYTES)?);
        let replaced = parent_path.join(&replaced_name);
        if let Err(e) = renameat(
            parent,
            staging_name.as_os_str(),
            parent,
            replaced_name.as_os_str(),
        ) {
            self.remove_staging();
            return Err(Error::io("rename", &self.folder, e.into()));
        }
        // A mount point put inside the target since the restore began would move with it.
        if let Some(mount) = mount_inside(&mount_points(), &self.target) {
            let back = renameat(
                parent,
                replaced_name.as_os_str(),
                parent,
                staging_name.as_os_str(),
            );
            if back.is_ok() {
                self.remove_staging();
            }
            return Err(mount_error(&self.target, mount));
        }
        if let Err(errno) = renameat2(
            parent,
            replaced_name.as_os_str(),
            parent,
            target_name.as_os_str(),
            RenameFlags::RENAME_EXCHANGE,
        ) {
            // Nothing changed: the staged content takes its staging name back.
            if let Err(e) = renameat(
                parent,
                replaced_name.as_os_str(),
                parent,
                staging_name.as_os_str(),
            ) {
                return Err(Error::io("rename", &replaced, e.into()).with_hint(format!(
                    "the target was not changed; the restored content is in {}",
                    replaced.display()
                )));
            }
            tracing::info!(target = %self.target.display(), error = %errno, "the restored folder cannot be swapped with the target here; its entries are moved into the target instead");
            return self.move_entries_from_beside();
        }
        if let Ok(dir) = File::open(parent_path) {
            let _ = dir.sync_all();
        }
        // The previous content is in `replaced` now. What stopped restores left in the
        // target goes on into the new one, never over a restored entry; what cannot go
        // stays in `replaced`, which is then not removed.
        let names = match list(&replaced) {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(path = %replaced.display(), error = %e, "the target's previous content cannot be listed after the restore and is kept; delete the folder by hand");
                return Ok(());
            }
        };
        let mut stuck = Vec::new();
        for name in names {
            if name.as_bytes().starts_with(WORK_PREFIX.as_bytes()) {
                let (from, to) = (replaced.join(&name), self.target.join(&name));
                if let Err(e) = renameat2(parent, &from, parent, &to, RenameFlags::RENAME_NOREPLACE)
                {
                    tracing::warn!(path = %from.display(), error = %e, "a folder kept from a stopped restore could not be moved into the restored target; it stays where it is");
                    stuck.push(name);
                }
            }
        }
        // Made by this restore, which succeeded.
        if stuck.is_empty() {
            remove_replaced(&replaced);
        } else {
            remove_replaced_but(&replaced, &stuck);
        }
        Ok(())
    }

    /// Moves the entries of the staging folder beside the target into the target, then
    /// removes the (empty) staging folder.
    fn move_entries_from_beside(self) -> Result<()> {
        let staging = self.folder.clone();
        self.move_entries(&staging)
    }

    /// Moves the target's entries aside and `from`'s entries into the target; on an error,
    /// moves every one back. The entries moved aside are removed once all is in place.
    fn move_entries(self, from: &Path) -> Result<()> {
        let target = &self.target;
        // A mount point put inside the target since the restore began would be moved aside
        // with its folder, and its content removed.
        if let Some(mount) = mount_inside(&mount_points(), target) {
            self.remove_staging();
            return Err(mount_error(target, mount));
        }
        let existing = visible_entries(target)?;
        let staged = visible_entries(from)?;
        let aside_name = work_name(REPLACED, None, &hex_token(TOKEN_BYTES)?);
        let aside = target.join(&aside_name);
        // Every move relative to folders opened once, never through a link: whoever may
        // write the target cannot swap the aside folder or the staging folder for a link
        // and have the entries moved through it.
        let target_dir = open_folder(None, target, Follow::Yes)?;
        // The staging folder as this restore holds it, not whatever has its name now.
        let from_dir = if from == self.folder {
            nix::unistd::dup(&self.lock)
        } else {
            nix::fcntl::open(
                from,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
        }
        .map_err(|e| Error::io("open", from, e.into()))?;
        let mut aside_dir: Option<OwnedFd> = None;
        let mut moved_aside: Vec<&OsString> = Vec::new();
        let mut moved_in: Vec<&OsString> = Vec::new();
        let moved = (|| {
            if !existing.is_empty() {
                nix::sys::stat::mkdirat(
                    &target_dir,
                    aside_name.as_os_str(),
                    Mode::from_bits_truncate(0o700),
                )
                .map_err(|e| Error::io("create", &aside, e.into()))?;
                aside_dir = Some(open_folder(
                    Some(&target_dir),
                    &aside,
                    Follow::NoAndMadeHere,
                )?);
            }
            for name in &existing {
                let dir = aside_dir
                    .as_ref()
                    .expect("made when the target holds entries");
                renameat(&target_dir, name.as_os_str(), dir, name.as_os_str())
                    .map_err(|e| Error::io("move aside", &target.join(name), e.into()))?;
                moved_aside.push(name);
            }
            for name in &staged {
                renameat(&from_dir, name.as_os_str(), &target_dir, name.as_os_str())
                    .map_err(|e| Error::io("move into place", &from.join(name), e.into()))?;
                moved_in.push(name);
            }
            Ok::<_, Error>(())
        })();
        let Err(e) = moved else {
            if let Err(e) = std::fs::remove_dir(from) {
                tracing::warn!(path = %from.display(), error = %e, "the empty staging folder could not be removed");
            }
            if !existing.is_empty() {
                remove_replaced(&aside);
            }
            let _ = nix::unistd::fsync(&target_dir);
            return Ok(());
        };
        // Every move undone, newest first.
        let mut stuck = Vec::new();
        for name in moved_in.into_iter().rev() {
            if let Err(e) = renameat(&target_dir, name.as_os_str(), &from_dir, name.as_os_str()) {
                stuck.push(format!("{}: {e}", target.join(name).display()));
            }
        }
        for name in moved_aside.into_iter().rev() {
            let back = aside_dir
                .as_ref()
                .map_or(Err(nix::errno::Errno::ENOENT), |dir| {
                    renameat(dir, name.as_os_str(), &target_dir, name.as_os_str())
                });
            if let Err(e) = back {
                stuck.push(format!("{}: {e}", aside.join(name).display()));
            }
        }
        if stuck.is_empty() {
            let _ = std::fs::remove_dir(&aside);
            self.remove_staging();
            return Err(e.context(format!(
                "restore target {} was left as it was",
                target.display()
            )));
        }
        Err(Error::new(
            e.kind(),
            format!(
                "{e}; restore target {} is half replaced: undoing the moves failed for {}",
                target.display(),
                stuck.join(", ")
            ),
        )
        .with_hint(format!(
            "its previous content is in {} and the restored content in {}; move back what you need by hand",
            aside.display(),
            from.display()
        )))
    }
}

/// How [`open_folder`] opens a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// Through a link at its last name (a target the operator named).
    Yes,
    /// Never through a link, and only a folder this restore made.
    NoAndMadeHere,
}

/// Opens the folder `path` (at its name in `parent` if given, else by its path) for moves
/// relative to it: with `Follow::NoAndMadeHere`, never through a link, and only this
/// process's user's own folder that no one else may enter (one the restore just made).
fn open_folder(parent: Option<&OwnedFd>, path: &Path, follow: Follow) -> Result<OwnedFd> {
    let mut flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if follow != Follow::Yes {
        flags |= OFlag::O_NOFOLLOW;
    }
    let dir = match (parent, path.file_name()) {
        (Some(parent), Some(name)) => nix::fcntl::openat(parent, name, flags, Mode::empty()),
        _ => nix::fcntl::open(path, flags, Mode::empty()),
    }
    .map_err(|e| Error::io("open", path, e.into()))?;
    if follow == Follow::NoAndMadeHere {
        let stat = nix::sys::stat::fstat(&dir).map_err(|e| Error::io("read", path, e.into()))?;
        if stat.st_uid != nix::unistd::geteuid().as_raw() || stat.st_mode & 0o077 != 0 {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{} is not the folder this restore made (someone replaced it while the restore ran)",
                    path.display()
                ),
            ));
        }
    }
    Ok(dir)
}

/// The staging folder beside `target`, created and locked, and its place; `None` where the
/// target cannot be swapped with a folder beside it.
fn beside(
    target: &Path,
    mounts: &[PathBuf],
    token: &str,
    adopt: Option<&Path>,
) -> Result<Option<(Place, PathBuf, File, bool)>> {
    let (Some(parent_path), Some(target_name)) = (target.parent(), target.file_name()) else {
        return Ok(None);
    };
    let other_filesystem = match (std::fs::metadata(parent_path), std::fs::metadata(target)) {
        (Ok(p), Ok(t)) => p.dev() != t.dev(),
        _ => true,
    };
    if other_filesystem || mounts.iter().any(|m| m == target) {
        tracing::info!(target = %target.display(), "the restore target is a mount point: the restore is staged inside it");
        return Ok(None);
    }
    let name_part = name_part(target_name);
    let staging_name = work_name(STAGING, Some(&name_part), token);
    let staging = parent_path.join(&staging_name);
    let adopted = match make_staging(&staging, adopt) {
        Ok(adopted) => adopted,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            tracing::info!(target = %target.display(), error = %e, "the restore target's parent folder cannot be written: the restore is staged inside the target");
            return Ok(None);
        }
        Err(e) => return Err(Error::io("create staging folder", &staging, e)),
    };
    let opened = lock_dir(&staging).and_then(|lock| {
        let parent = nix::fcntl::open(
            parent_path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open", parent_path, e.into()))?;
        Ok((lock, parent))
    });
    let (lock, parent) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            if !adopted {
                let _ = std::fs::remove_dir(&staging);
            }
            return Err(e);
        }
    };
    clean_beside(
        parent_path,
        &name_part,
        mounts,
        Some(staging_name.as_os_str()),
    );
    let place = Place::Beside {
        parent,
        parent_path: parent_path.to_path_buf(),
        target_name: target_name.to_os_string(),
        staging_name,
        name_part,
    };
    Ok(Some((place, staging, lock, adopted)))
}

/// Creates the staging folder `staging` (mode 0700), or takes it over when it is `adopt`
/// and is still there, a folder of this user's; returns whether it was taken over.
fn make_staging(staging: &Path, adopt: Option<&Path>) -> std::io::Result<bool> {
    match std::fs::DirBuilder::new().mode(0o700).create(staging) {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && adopt == Some(staging) => {
            let meta = std::fs::symlink_metadata(staging)?;
            if meta.is_dir() && meta.uid() == nix::unistd::geteuid().as_raw() {
                Ok(true)
            } else {
                Err(e)
            }
        }
        Err(e) => Err(e),
    }
}

/// Gives `staged` the mode and owner of `target`.
fn take_mode_and_owner(target: &Path, staged: &Path) -> std::io::Result<()> {
    let want = std::fs::metadata(target)?;
    let have = std::fs::metadata(staged)?;
    if (want.uid(), want.gid()) != (have.uid(), have.gid()) {
        std::os::unix::fs::chown(staged, Some(want.uid()), Some(want.gid()))?;
    }
    std::fs::set_permissions(
        staged,
        std::fs::Permissions::from_mode(want.mode() & 0o7777),
    )
}

/// Opens `dir` itself: a folder, not a link to one, and never a FIFO, whose opening
/// would wait for a writer (someone who can write beside the target may plant one under
/// a work folder's name).
fn open_dir(dir: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(dir)
}

/// `/proc/self/fd/N` for the folder `dir` holds open, when that path leads to it (a
/// system without `/proc` gets `None`).
fn held_path(dir: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd as _;
    let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let (held, through) = (dir.metadata().ok()?, std::fs::metadata(&path).ok()?);
    ((held.dev(), held.ino()) == (through.dev(), through.ino())).then_some(path)
}

/// Locks `dir` for as long as the returned file is open.
fn lock_dir(dir: &Path) -> Result<File> {
    let file = open_dir(dir).map_err(|e| Error::io("open", dir, e))?;
    file.try_lock().map_err(|e| {
        Error::io(
            "lock",
            dir,
            match e {
                std::fs::TryLockError::Error(e) => e,
                std::fs::TryLockError::WouldBlock => std::io::ErrorKind::WouldBlock.into(),
            },
        )
    })?;
    Ok(file)
}

/// `<WORK_PREFIX><kind>[<name_part>-]<token>`.
fn work_name(kind: &str, name_part: Option<&OsStr>, token: &str) -> OsString {
    let mut name = work_prefix(kind, name_part);
    name.push(token);
    name
}

fn work_prefix(kind: &str, name_part: Option<&OsStr>) -> OsString {
    let mut name = OsString::from(WORK_PREFIX);
    name.push(kind);
    if let Some(part) = name_part {
        name.push(part);
        name.push("-");
    }
    name
}

/// Whether `name` is exactly a work folder's name of `kind` for `name_part`.
fn is_work_name(name: &OsStr, kind: &str, name_part: Option<&OsStr>) -> bool {
    name.as_bytes()
        .strip_prefix(work_prefix(kind, name_part).as_bytes())
        .is_some_and(|token| {
            token.len() == 2 * TOKEN_BYTES && token.iter().all(u8::is_ascii_hexdigit)
        })
}

/// The target's name as the work folders beside it repeat it: cut to [`NAME_PART_MAX`]
/// bytes.
fn name_part(target_name: &OsStr) -> OsString {
    let bytes = target_name.as_bytes();
    OsString::from_vec(bytes[..bytes.len().min(NAME_PART_MAX)].to_vec())
}

/// The names in `dir`, sorted.
fn list(dir: &Path) -> Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("read", dir, e))? {
        names.push(entry.map_err(|e| Error::io("read", dir, e))?.file_name());
    }
    names.sort();
    Ok(names)
}

/// The names in `dir` but the work folders of restores.
fn visible_entries(dir: &Path) -> Result<Vec<OsString>> {
    let mut names = list(dir)?;
    names.retain(|n| !n.as_bytes().starts_with(WORK_PREFIX.as_bytes()));
    Ok(names)
}

/// The staging folders stopped restores left inside the target (as earlier versions, and
/// restores staged inside the target, leave them), removed.
fn clean_inside(target: &Path, mounts: &[PathBuf], keep: Option<&OsStr>) {
    let Ok(names) = list(target) else {
        return;
    };
    for name in names {
        if is_work_name(&name, STAGING, None) && Some(name.as_os_str()) != keep {
            remove_stale_staging(&target.join(&name), mounts);
        }
    }
}

/// The staging folders stopped restores into the target `name_part` left beside it,
/// removed.
fn clean_beside(parent: &Path, name_part: &OsStr, mounts: &[PathBuf], keep: Option<&OsStr>) {
    let Ok(names) = list(parent) else {
        return;
    };
    for name in names {
        if is_work_name(&name, STAGING, Some(name_part)) && Some(name.as_os_str()) != keep {
            remove_stale_staging(&parent.join(&name), mounts);
        }
    }
}

/// The first folder of replaced content a stopped restore left inside `target` or beside
/// it: it may hold the only copy of part of the target's previous content.
fn kept_replaced(target: &Path) -> Option<PathBuf> {
    let inside = work_prefix(REPLACED, None);
    if let Ok(names) = list(target)
        && let Some(name) = names
            .iter()
            .find(|n| n.as_bytes().starts_with(inside.as_bytes()))
    {
        return Some(target.join(name));
    }
    let (parent, target_name) = (target.parent()?, target.file_name()?);
    let part = name_part(target_name);
    list(parent)
        .ok()?
        .into_iter()
        .find(|n| is_work_name(n, REPLACED, Some(&part)))
        .map(|n| parent.join(n))
}

/// The refusal of a restore into a target that a stopped restore half replaced.
fn half_replaced_error(target: &Path, kept: &Path) -> Error {
    Error::new(
        ErrorKind::Usage,
        format!(
            "restore target {} is half replaced: a restore into it was stopped before it finished, and {} may hold part of its previous content",
            target.display(),
            kept.display()
        ),
    )
    .with_hint(format!(
        "compare {} with the target, move back what you need, delete it, then restore again",
        kept.display()
    ))
}

/// Removes the staging folder of a restore that was stopped, unless a restore still works
/// in it or something is mounted in it.
fn remove_stale_staging(path: &Path, mounts: &[PathBuf]) {
    if mounts.iter().any(|m| m.starts_with(path)) {
        tracing::warn!(path = %path.display(), "a staging folder left by a stopped restore holds a mount point; it is kept");
        return;
    }
    let Ok(dir) = open_dir(path) else {
        return; // not a folder: not ours
    };
    if dir.try_lock().is_err() {
        return; // another restore works in it
    }
    tracing::info!(path = %path.display(), "removing the staging folder of a restore that was stopped");
    if let Err(e) = std::fs::remove_dir_all(path) {
        tracing::warn!(path = %path.display(), error = %e, "the staging folder of a stopped restore could not be removed; remove it by hand");
    }
}

/// Removes a folder of replaced content, made by a restore that succeeded; a failure is
/// logged, as the restore is complete.
fn remove_replaced(path: &Path) {
    if let Some(mount) = mount_inside(&mount_points(), path) {
        tracing::warn!(path = %path.display(), mount_point = %mount.display(), "the target's previous content holds a mount point and is kept; unmount it, then delete the folder");
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(path) {
        tracing::warn!(path = %path.display(), error = %e, "the target's previous content could not be removed after the restore; delete the folder by hand");
    }
}

/// Removes the entries of a folder of replaced content but `keep`, which stay in it.
fn remove_replaced_but(path: &Path, keep: &[OsString]) {
    if let Some(mount) = mount_inside(&mount_points(), path) {
        tracing::warn!(path = %path.display(), mount_point = %mount.display(), "the target's previous content holds a mount point and is kept; unmount it, then delete the folder");
        return;
    }
    for name in list(path).unwrap_or_default() {
        if keep.contains(&name) {
            continue;
        }
        let entry = path.join(&name);
        let removed = match std::fs::symlink_metadata(&entry) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&entry),
            _ => std::fs::remove_file(&entry),
        };
        if let Err(e) = removed {
            tracing::warn!(path = %entry.display(), error = %e, "part of the target's previous content could not be removed after the restore; delete it by hand");
        }
    }
    tracing::warn!(path = %path.display(), "folders kept from a stopped restore are still in this folder; move what you need out of it, then delete it (restores into the target are refused until then)");
}

fn mount_error(target: &Path, mount: &Path) -> Error {
    Error::new(
        ErrorKind::Usage,
        format!(
            "restore target {} holds the mount point {}: a restore replaces the whole folder and cannot replace another filesystem's content",
            target.display(),
            mount.display()
        ),
    )
    .with_hint("unmount it, or restore into a folder without mount points (--target)")
}

/// The first mount point strictly inside `dir`.
fn mount_inside<'a>(mounts: &'a [PathBuf], dir: &Path) -> Option<&'a Path> {
    mounts
        .iter()
        .find(|m| m.starts_with(dir) && m.as_path() != dir)
        .map(PathBuf::as_path)
}

/// The mount points this process sees, from `/proc/self/mountinfo`; none, with a warning,
/// where it cannot be read.
fn mount_points() -> Vec<PathBuf> {
    match std::fs::read("/proc/self/mountinfo") {
        Ok(text) => parse_mount_points(&text),
        Err(e) => {
            tracing::warn!(error = %e, "/proc/self/mountinfo cannot be read: mount points inside a restore target are not looked for");
            Vec::new()
        }
    }
}

/// The mount points of a `mountinfo` text: the fifth field of each line. (The `procfs`
/// crate reads that field without decoding its escapes, and refuses a line that is not
/// UTF-8.)
fn parse_mount_points(text: &[u8]) -> Vec<PathBuf> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .filter(|field| !field.is_empty())
        .map(|field| PathBuf::from(OsString::from_vec(unescape(field))))
        .collect()
}

/// A `mountinfo` field with its octal escapes (`\040` for a space, `\134` for a backslash,
/// and so on) decoded.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && let Some(&[a, b, c]) = field.get(i + 1..i + 4)
            && (b'0'..=b'3').contains(&a)
            && [b, c].iter().all(|d| (b'0'..=b'7').contains(d))
        {
            out.push((a - b'0') * 64 + (b - b'0') * 8 + (c - b'0'));
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests;
