//! The staging folder's tests: the swap, the fallback inside the target, the rollback.

use super::*;

#[test]
fn mount_points_are_read_with_their_escapes_decoded() {
    let text = b"22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
        90 29 0:50 / /srv/my\\040data\\134x rw - tmpfs tmpfs rw\n\
        91 29 0:51 / /srv/\\377 rw - tmpfs tmpfs rw\n";
    assert_eq!(
        parse_mount_points(text),
        vec![
            PathBuf::from("/proc"),
            PathBuf::from("/srv/my data\\x"),
            PathBuf::from(OsString::from_vec(b"/srv/\xff".to_vec())),
        ]
    );
    assert_eq!(unescape(b"a\\04"), b"a\\04", "a cut escape stays as it is");
    assert_eq!(unescape(b"\\777"), b"\\777", "not a byte");
}

#[test]
fn only_exact_work_names_are_taken_for_work_folders() {
    let part = OsStr::new("redis");
    let ours = work_name(STAGING, Some(part), "0123456789ab");
    assert!(is_work_name(&ours, STAGING, Some(part)));
    // Another target's, whose name starts with this one's.
    let other = work_name(STAGING, Some(OsStr::new("redis-2")), "0123456789ab");
    assert!(!is_work_name(&other, STAGING, Some(part)));
    assert!(!is_work_name(
        OsStr::new(".service-backup-restore-redis-0123"),
        STAGING,
        Some(part)
    ));
    assert!(!is_work_name(&ours, REPLACED, Some(part)));
    assert_eq!(name_part(OsStr::new(&"n".repeat(300))).len(), NAME_PART_MAX);
}

/// Files and folders of `root` with their content and mode, and `root`'s own mode.
fn snapshot(root: &Path) -> Vec<(String, Vec<u8>, u32)> {
    let mut out = vec![(
        String::new(),
        Vec::new(),
        std::fs::metadata(root).unwrap().mode(),
    )];
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .display()
            .to_string();
        let data = if meta.is_file() {
            std::fs::read(entry.path()).unwrap()
        } else {
            Vec::new()
        };
        out.push((rel, data, meta.mode()));
    }
    out
}

fn old_target(dir: &Path) -> PathBuf {
    let target = dir.join("target");
    std::fs::create_dir_all(target.join("sub")).unwrap();
    std::fs::write(target.join("a.txt"), b"old a").unwrap();
    std::fs::write(target.join("sub/b.txt"), b"old b").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o751)).unwrap();
    target
}

#[test]
fn a_commit_swaps_the_whole_target_and_keeps_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let target = old_target(dir.path());
    let staging = Staging::prepare(&target, true).unwrap();
    assert!(matches!(staging.place, Place::Beside { .. }));
    assert_eq!(staging.dir().parent(), Some(dir.path()));
    std::fs::write(staging.dir().join("new.txt"), b"new").unwrap();
    staging.commit().unwrap();
    let after = snapshot(&target);
    assert_eq!(after[0].2 & 0o7777, 0o751, "the target's mode");
    assert_eq!(
        after[1..]
            .iter()
            .map(|(p, d, _)| (p.as_str(), d.as_slice()))
            .collect::<Vec<_>>(),
        vec![("new.txt", &b"new"[..])]
    );
    assert_eq!(list(dir.path()).unwrap(), vec![OsString::from("target")]);
}

#[test]
fn a_discarded_restore_leaves_the_target_and_its_parent_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let target = old_target(dir.path());
    let before = snapshot(&target);
    let staging = Staging::prepare(&target, true).unwrap();
    std::fs::write(staging.dir().join("new.txt"), b"new").unwrap();
    staging.discard();
    assert_eq!(snapshot(&target), before);
    assert_eq!(list(dir.path()).unwrap(), vec![OsString::from("target")]);
    // A target the restore created goes too.
    Staging::prepare(&dir.path().join("fresh"), false)
        .unwrap()
        .discard();
    assert!(!dir.path().join("fresh").exists());
}

#[test]
fn moving_entries_undoes_every_move_on_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let target = old_target(dir.path());
    std::fs::write(target.join("z.txt"), b"old z").unwrap();
    let before = snapshot(&target);
    let staging = Staging::prepare(&target, true).unwrap();
    // Entries on another filesystem cannot be renamed into the target: the first move
    // in fails once every old entry is moved aside.
    let elsewhere = tempfile::tempdir_in("/dev/shm").unwrap();
    assert_ne!(
        std::fs::metadata(elsewhere.path()).unwrap().dev(),
        std::fs::metadata(dir.path()).unwrap().dev(),
        "this test needs /dev/shm on another filesystem than the temporary folder"
    );
    std::fs::write(elsewhere.path().join("a.txt"), b"new a").unwrap();
    let err = staging.move_entries(elsewhere.path()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("was left as it was") && text.contains("move into place"),
        "{text}"
    );
    assert_eq!(snapshot(&target), before);
    assert_eq!(list(dir.path()).unwrap(), vec![OsString::from("target")]);
    assert!(elsewhere.path().join("a.txt").exists());
}

#[test]
fn a_target_a_stopped_restore_half_replaced_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let target = old_target(dir.path());
    let kept_beside = dir
        .path()
        .join(".service-backup-replaced-target-00112233aabb");
    let kept_inside = target.join(".service-backup-replaced-445566778899");
    let stale_beside = dir
        .path()
        .join(".service-backup-restore-target-ccddeeff0011");
    let stale_inside = target.join(".service-backup-restore-223344556677");
    // Another target's staging folder, and one a restore still works in.
    let others = dir
        .path()
        .join(".service-backup-restore-target-2-ccddeeff0011");
    let busy = dir
        .path()
        .join(".service-backup-restore-target-99aa99aa99aa");
    for d in [
        &kept_beside,
        &kept_inside,
        &stale_beside,
        &stale_inside,
        &others,
        &busy,
    ] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("data"), d.display().to_string()).unwrap();
    }
    let busy_lock = lock_dir(&busy).unwrap();
    // Refused while either kept folder is there, naming it; nothing of them changes.
    for (folder, replace) in [(&kept_inside, true), (&kept_beside, false)] {
        let (before, kept) = (snapshot(&target), snapshot(folder));
        let err = Staging::prepare(&target, replace).unwrap_err();
        let text = format!("{err} {}", err.hint().unwrap_or_default());
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert!(
            text.contains("half replaced")
                && text.contains(folder.to_str().unwrap())
                && text.contains("move back what you need, delete it, then restore again"),
            "{text}"
        );
        assert_eq!(snapshot(folder), kept);
        assert_eq!(snapshot(&target), before);
        assert!(stale_beside.exists() && stale_inside.exists());
        std::fs::rename(folder, dir.path().join(format!("moved-{replace}"))).unwrap();
    }

    let staging = Staging::prepare(&target, true).unwrap();
    std::fs::write(staging.dir().join("new.txt"), b"new").unwrap();
    staging.commit().unwrap();
    assert!(!stale_beside.exists() && !stale_inside.exists());
    assert!(others.exists() && busy.exists());
    assert_eq!(
        visible_entries(&target).unwrap(),
        vec![OsString::from("new.txt")]
    );
    drop(busy_lock);
}

#[test]
fn a_kept_folder_that_cannot_go_into_the_restored_target_stays() {
    let dir = tempfile::tempdir().unwrap();
    let target = old_target(dir.path());
    // Left in the target by something else, under a work folder's name.
    let kept = target.join(".service-backup-kept");
    std::fs::create_dir(&kept).unwrap();
    std::fs::write(kept.join("data"), b"only copy").unwrap();
    let before = snapshot(&kept);
    let staging = Staging::prepare(&target, true).unwrap();
    assert!(matches!(staging.place, Place::Beside { .. }));
    // The restored content has an entry of the same name (even an empty folder, which
    // a plain rename would replace).
    std::fs::create_dir(staging.dir().join(".service-backup-kept")).unwrap();
    std::fs::write(staging.dir().join("new.txt"), b"new").unwrap();
    staging.commit().unwrap();
    assert_eq!(list(&target.join(".service-backup-kept")).unwrap().len(), 0);
    let replaced: Vec<OsString> = list(dir.path())
        .unwrap()
        .into_iter()
        .filter(|n| is_work_name(n, REPLACED, Some(OsStr::new("target"))))
        .collect();
    assert_eq!(replaced.len(), 1, "the previous content's folder stays");
    let folder = dir.path().join(&replaced[0]);
    assert_eq!(snapshot(&folder.join(".service-backup-kept")), before);
    // The rest of the previous content is gone.
    assert_eq!(
        list(&folder).unwrap(),
        vec![OsString::from(".service-backup-kept")]
    );
    // And the target is half replaced until someone looks at it.
    assert!(Staging::prepare(&target, true).is_err());
}

#[test]
fn what_others_plant_under_a_work_folder_s_name_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let target = old_target(dir.path());
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("precious"), b"keep").unwrap();
    // A FIFO (opening it would wait for a writer) and a link to another folder.
    let fifo = dir
        .path()
        .join(".service-backup-restore-target-aaaaaaaaaaaa");
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
    let link = dir
        .path()
        .join(".service-backup-restore-target-bbbbbbbbbbbb");
    std::os::unix::fs::symlink(elsewhere.path(), &link).unwrap();
    let staging = Staging::prepare(&target, true).unwrap();
    staging.discard();
    assert!(fifo.exists() && link.exists());
    assert_eq!(
        std::fs::read(elsewhere.path().join("precious")).unwrap(),
        b"keep"
    );
}

/// The aside folder a restore staged inside the target makes there (where someone who may
/// write the target can rename it and plant a link or a folder of theirs under its name
/// before the old entries are moved into it) is opened without following a link, and only
/// as the folder the restore made: of its user, entered by no one else.
#[test]
fn an_aside_folder_swapped_for_a_link_or_another_folder_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let target_dir = open_folder(None, &target, Follow::Yes).unwrap();
    let aside = target.join(".service-backup-replaced-x");

    std::os::unix::fs::symlink(&outside, &aside).unwrap();
    let err = open_folder(Some(&target_dir), &aside, Follow::NoAndMadeHere).unwrap_err();
    assert!(err.to_string().contains("cannot open"), "{err}");
    std::fs::remove_file(&aside).unwrap();

    std::fs::create_dir(&aside).unwrap();
    std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = open_folder(Some(&target_dir), &aside, Follow::NoAndMadeHere).unwrap_err();
    assert!(
        err.to_string()
            .contains("is not the folder this restore made"),
        "{err}"
    );

    std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o700)).unwrap();
    open_folder(Some(&target_dir), &aside, Follow::NoAndMadeHere).unwrap();
}

/// Makes a folder immutable (`chattr +i`) for as long as it lives.
struct Immutable(PathBuf);

impl Immutable {
    fn new(dir: &Path) -> Self {
        let out = std::process::Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .output()
            .expect("chattr (e2fsprogs) runs");
        assert!(out.status.success(), "chattr +i: {out:?}");
        Self(dir.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .output();
    }
}

/// A restore whose target's parent cannot be written stages inside the target, where
/// whoever may write the target can rename the staging folder and put a link under its
/// name while the restore extracts: the extraction writes through the handle the restore
/// holds on its staging folder, so every entry still lands in it and none where the link
/// points.
#[test]
fn a_staging_folder_inside_the_target_swapped_for_a_link_is_still_the_one_written() {
    let dir = tempfile::tempdir().unwrap();
    let (parent, outside) = (dir.path().join("parent"), dir.path().join("outside"));
    let target = parent.join("target");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(target.join("old.txt"), b"old").unwrap();
    let staging = {
        let _frozen = Immutable::new(&parent);
        Staging::prepare(&target, true).unwrap()
    };
    assert!(
        staging.dir().starts_with(&target),
        "{}",
        staging.dir().display()
    );
    assert!(
        staging.extract_dir().starts_with("/proc/self/fd"),
        "{}",
        staging.extract_dir().display()
    );
    let moved = target.join(".moved-away");
    std::fs::rename(staging.dir(), &moved).unwrap();
    std::os::unix::fs::symlink(&outside, staging.dir()).unwrap();
    std::fs::create_dir(staging.extract_dir().join("sub")).unwrap();
    std::fs::write(staging.extract_dir().join("sub/new.txt"), b"new").unwrap();
    assert_eq!(list(&outside).unwrap(), Vec::<OsString>::new());
    assert_eq!(std::fs::read(moved.join("sub/new.txt")).unwrap(), b"new");
    std::fs::remove_file(staging.dir()).unwrap();
    std::fs::rename(&moved, staging.dir()).unwrap();
    staging.commit().unwrap();
    assert_eq!(std::fs::read(target.join("sub/new.txt")).unwrap(), b"new");
    assert!(!target.join("old.txt").exists());
}
