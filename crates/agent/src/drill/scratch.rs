//! The drills' scratch space: `<state_dir>/drills/`, where a backup is restored for the
//! restore check executable and removed after it, whatever happened; what a drill that
//! was cut short left there is removed at the next start and before each drill.

use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use service_backup_core::{Error, ErrorKind, Result};

/// The scratch space's folder name in `state_dir`.
pub const SCRATCH_DIR: &str = "drills";

/// The room kept free beyond the backup's own size: a tenth of it, at least this much.
pub const MIN_MARGIN: u64 = 64 * 1024 * 1024;

/// How many bytes the filesystem holding a folder has free for this user.
pub type FreeSpace = fn(&Path) -> std::io::Result<u64>;

/// The scratch space of `state_dir`.
pub fn root(state_dir: &Path) -> PathBuf {
    state_dir.join(SCRATCH_DIR)
}

/// Creates the scratch space, readable by the agent alone (a restored backup is the
/// service's data); refuses one that is a symbolic link or not a folder.
pub fn create(root: &Path) -> Result<()> {
    if let Some(parent) = root.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io("create the drill scratch folder", root, e))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("create the drill scratch folder", root, e)),
    }
    // A link would send the restore, the chmod and the clean-up outside state_dir.
    real_dir(root)?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("restrict the drill scratch folder", root, e))
}

/// Creates a drill's own folder in the scratch space, readable by the agent alone; it
/// must not exist yet (a link planted there is refused, never followed).
pub fn create_drill_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("create the drill scratch folder", dir, e))?;
    real_dir(dir)
}

/// Refuses `dir` unless it is a folder itself, not a symbolic link to one.
pub fn real_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| Error::io("inspect the drill scratch folder", dir, e))?;
    if meta.file_type().is_symlink() {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "the drill scratch folder {} is a symbolic link: refusing to follow it",
                dir.display()
            ),
        )
        .with_hint("remove the link; the agent creates the folder itself"));
    }
    if !meta.is_dir() {
        return Err(Error::new(
            ErrorKind::Io,
            format!("the drill scratch folder {} is not a folder", dir.display()),
        )
        .with_hint("remove it; the agent creates the folder itself"));
    }
    Ok(())
}

/// The free bytes of the filesystem holding `dir`, for an unprivileged user.
pub fn statvfs_free(dir: &Path) -> std::io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(s.blocks_available().saturating_mul(s.fragment_size()))
}

/// The bytes a restore of `plain_bytes` of file content needs, with the margin.
pub fn needed(plain_bytes: u64) -> u64 {
    plain_bytes.saturating_add((plain_bytes / 10).max(MIN_MARGIN))
}

/// Refuses a restore of `plain_bytes` (the backup `name`) into `root` when `free` says the
/// filesystem has less than [`needed`].
pub fn check_space(root: &Path, name: &str, plain_bytes: u64, free: FreeSpace) -> Result<()> {
    let has = free(root).map_err(|e| Error::io("measure the free space of", root, e))?;
    let need = needed(plain_bytes);
    if has >= need {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Io,
        format!(
            "not enough free space to restore backup {name} in {}: it needs {} (its {} of files and a margin), the filesystem has {} free",
            root.display(),
            size(need),
            size(plain_bytes),
            size(has)
        ),
    )
    .with_hint("free space on the state_dir's filesystem, or move state_dir to a larger one"))
}

/// A byte count for people: bytes, KiB, MiB or GiB with one decimal, and the exact count.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    let mut unit = None;
    #[allow(clippy::cast_precision_loss)] // one decimal is shown
    let mut value = bytes as f64;
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = Some(u);
    }
    match unit {
        Some(u) => format!("{value:.1} {u} ({bytes} bytes)"),
        None => format!("{bytes} bytes"),
    }
}

/// Removes everything in the scratch space (a drill's folder, a staging folder beside it),
/// logging what cannot be removed.
pub fn clear(root: &Path) {
    match std::fs::symlink_metadata(root) {
        Err(_) => return,
        Ok(meta) if !meta.is_dir() => {
            // Never followed: what it points to is not the agent's to delete.
            tracing::error!(path = %root.display(), "The restore drills' scratch folder is a symbolic link or not a folder: it is left alone, and drills fail until it is removed");
            return;
        }
        Ok(_) => {}
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if let Err(e) = remove(&path) {
            tracing::error!(path = %path.display(), error = %e, "A restore drill's scratch folder could not be removed");
        }
    }
}

/// Removes `path` and what it holds, never following a link; folders restored without write
/// permission are made writable first.
pub fn remove(path: &Path) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    if std::fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    make_writable(path);
    std::fs::remove_dir_all(path)
}

/// Gives the owner write and search permission on `dir` and every folder below it.
fn make_writable(dir: &Path) {
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            make_writable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_little_space_says_what_is_needed_and_what_there_is() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_space(
            dir.path(),
            "b1",
            3 * 1024 * 1024 * 1024,
            |_| Ok(1024 * 1024),
        )
        .unwrap_err();
        assert_eq!(
            err.message(),
            format!(
                "not enough free space to restore backup b1 in {}: it needs 3.3 GiB (3543348019 bytes) (its {} of files and a margin), the filesystem has 1.0 MiB (1048576 bytes) free",
                dir.path().display(),
                "3.0 GiB (3221225472 bytes)"
            )
        );
        assert!(check_space(dir.path(), "b1", 10, |_| Ok(MIN_MARGIN + 10)).is_ok());
        assert!(check_space(dir.path(), "b1", 10, |_| Ok(MIN_MARGIN + 9)).is_err());
        assert!(statvfs_free(dir.path()).unwrap() > 0);
    }

    #[test]
    fn clearing_removes_read_only_folders_and_never_follows_links() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        let root = dir.path().join(SCRATCH_DIR);
        create(&root).unwrap();
        let drill = root.join("drill-1/sub");
        std::fs::create_dir_all(&drill).unwrap();
        std::fs::write(drill.join("f"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, drill.join("link")).unwrap();
        std::fs::set_permissions(&drill, std::fs::Permissions::from_mode(0o500)).unwrap();
        clear(&root);
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
        assert!(outside.join("keep").exists());
    }

    #[test]
    fn a_planted_drill_folder_link_is_refused_and_left_pointing_where_it_did() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().join(SCRATCH_DIR);
        create(&root).unwrap();
        let drill = root.join("drill-1");
        std::os::unix::fs::symlink(&outside, &drill).unwrap();
        assert!(create_drill_dir(&drill).is_err());
        assert_eq!(
            real_dir(&drill).unwrap_err().message(),
            format!(
                "the drill scratch folder {} is a symbolic link: refusing to follow it",
                drill.display()
            )
        );
        assert_eq!(
            std::fs::metadata(&outside).unwrap().permissions().mode() & 0o777,
            0o755
        );
        // The scratch space itself as a link: refused, and the clean-up leaves it.
        let linked = dir.path().join("state2");
        std::fs::create_dir(&linked).unwrap();
        std::os::unix::fs::symlink(&outside, linked.join(SCRATCH_DIR)).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        assert!(create(&linked.join(SCRATCH_DIR)).is_err());
        clear(&linked.join(SCRATCH_DIR));
        assert!(outside.join("keep").exists());
        assert_eq!(
            std::fs::metadata(&outside).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }
}
