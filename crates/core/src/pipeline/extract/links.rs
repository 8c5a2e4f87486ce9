//! The symlinks of an archive: kept aside while the other entries are extracted, made
//! last, then each checked where it stands among the others (see the module doc of
//! `extract` for why that is sound).

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::hash::BuildHasher as _;
use std::hash::Hasher as _;
use std::io;
use std::path::{Component, Path, PathBuf};

use filetime::FileTime;

use super::{make_parent, unsafe_entry};
use crate::error::{Error, Result};

/// The longest symlink target, as the kernel's `symlink` takes it (`PATH_MAX` less the NUL).
pub(super) const MAX_TARGET_LEN: usize = 4095;

/// Bytes of memory the links kept until the end of the archive may take, counted as
/// their names plus [`PER_LINK`]: about 200,000 links of short names.
const MAX_KEPT: usize = 64 << 20;

/// Path components the kernel may walk, in total, to look up the components of all link
/// targets on disk (a lookup by a path of `n` components costs `n`). Each folder is looked
/// up once whatever the number of links through it, so this is far above what real links
/// need; an archive of thousands of links that each look up new names thousands of folders
/// deep would otherwise take hours.
pub(super) const MAX_WALKED: u64 = 64 << 20;

#[cfg(test)]
thread_local! {
    /// Lookups on disk made by the link checks of this thread, for tests.
    pub(super) static LOOKUPS: Cell<u64> = const { Cell::new(0) };
}

/// The hash of the root's path, and the start of every path's.
const ROOT: u64 = 0;

/// A symlink entry waiting for the end of the archive (boxed: no spare capacity).
struct Pending {
    rel: Box<Path>,
    target: Box<Path>,
    mtime: FileTime,
    name: Box<str>,
}

/// What a kept link costs beyond the bytes of its names: its record, up to three times
/// over while the list of them grows (the old and the new list, twice as long, side by
/// side), three allocations (allocator overhead and rounding), and its path's hash in a
/// set that also doubles as it grows.
const PER_LINK: usize = 3 * size_of::<Pending>() + 3 * 32 + 32;

/// The symlinks met so far.
#[derive(Default)]
pub(super) struct Links {
    /// The hash of each link's path, component by component (see [`step`]): a lookup per
    /// component of a path costs no more than the component, however deep the path. Two
    /// paths of the same hash only make a link look like another, and refused.
    paths: HashSet<u64>,
    pending: Vec<Pending>,
    /// Bytes kept in `pending`, against [`MAX_KEPT`].
    kept: usize,
    /// Random keys for [`Seen`]: a path no archive can make collide with another.
    keys: std::hash::RandomState,
}

/// What the checks found on disk so far, by keyed path hash: nothing changes on disk
/// while links are checked, so each path is looked up once (whether it is a real folder).
#[derive(Default)]
struct Seen {
    folders: HashMap<u64, bool>,
    /// Path components walked by the lookups so far, against [`MAX_WALKED`].
    walked: Cell<u64>,
}

/// The hash of a path one component longer than the path of hash `h`.
fn step(h: u64, part: &OsStr) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write_u64(h);
    let bytes = part.as_encoded_bytes();
    hasher.write_usize(bytes.len());
    hasher.write(bytes);
    hasher.finish()
}

impl Links {
    /// The first of `rel` and its ancestors (shortest first) that is a symlink of the
    /// archive.
    pub(super) fn on_the_way(&self, rel: &Path) -> Option<PathBuf> {
        if self.paths.is_empty() {
            return None;
        }
        let mut h = ROOT;
        for (i, part) in rel.components().enumerate() {
            h = step(h, part.as_os_str());
            if self.paths.contains(&h) {
                return Some(rel.components().take(i + 1).collect());
            }
        }
        None
    }

    /// Keeps the symlink entry `name` at `rel` (no symlink on its way, checked by the
    /// caller) for the end. With a `root`, makes its folder and refuses it if something
    /// was extracted at its path.
    pub(super) fn add(
        &mut self,
        root: Option<&Path>,
        rel: PathBuf,
        target: PathBuf,
        mtime: FileTime,
        name: &str,
    ) -> Result<()> {
        let shown = target.display();
        if target.as_os_str().is_empty() {
            return Err(unsafe_entry(name, "it is a symlink with an empty target"));
        }
        if target.as_os_str().len() > MAX_TARGET_LEN {
            return Err(unsafe_entry(
                name,
                &format!("its symlink target is longer than {MAX_TARGET_LEN} bytes"),
            ));
        }
        if !stays_inside_lexically(&rel, &target) {
            return Err(unsafe_entry(
                name,
                &format!("it is a symlink to {shown} outside the target"),
            ));
        }
        self.kept += rel.as_os_str().len() + target.as_os_str().len() + name.len() + PER_LINK;
        if self.kept > MAX_KEPT {
            return Err(unsafe_entry(
                name,
                &format!(
                    "the archive holds more symlinks than a restore keeps track of ({} MiB of memory for them)",
                    MAX_KEPT >> 20
                ),
            ));
        }
        if let Some(root) = root {
            let path = root.join(&rel);
            make_parent(&path)?;
            if std::fs::symlink_metadata(&path).is_ok() {
                return Err(unsafe_entry(
                    name,
                    "it would replace a file or folder extracted before it",
                ));
            }
        }
        self.paths.insert(
            rel.components()
                .fold(ROOT, |h, part| step(h, part.as_os_str())),
        );
        self.pending.push(Pending {
            rel: rel.into_boxed_path(),
            target: target.into_boxed_path(),
            mtime,
            name: name.into(),
        });
        Ok(())
    }

    /// With a `root`, makes every symlink kept; then checks each against all of them (and
    /// with a `root`, against what is on disk). On a refusal, the links made are removed
    /// again: the root never keeps one that leads outside.
    pub(super) fn finish(&mut self, root: Option<&Path>) -> Result<()> {
        let mut made = 0;
        let done = self.make_and_check(root, &mut made);
        if done.is_err()
            && let Some(root) = root
        {
            for link in &self.pending[..made] {
                let _ = std::fs::remove_file(root.join(&link.rel));
            }
        }
        done
    }

    fn make_and_check(&self, root: Option<&Path>, made: &mut usize) -> Result<()> {
        if let Some(root) = root {
            for link in &self.pending {
                let path = root.join(&link.rel);
                std::os::unix::fs::symlink(&link.target, &path)
                    .map_err(|e| Error::io("create symlink", &path, e))?;
                *made += 1;
                let _ = filetime::set_symlink_file_times(&path, link.mtime, link.mtime);
            }
        }
        let mut seen = Seen::default();
        for link in &self.pending {
            self.check(root, link, &mut seen)
                .map_err(|why| unsafe_entry(&link.name, &why))?;
        }
        Ok(())
    }

    /// Follows `link`'s target from its folder as the kernel would, component by
    /// component; refuses it if it leaves the root or if a component before the last is a
    /// symlink. The components that do not exist (yet) are taken for folders, as one may
    /// be made there later.
    fn check(&self, root: Option<&Path>, link: &Pending, seen: &mut Seen) -> Result<(), String> {
        let outside = || {
            format!(
                "it is a symlink to {} outside the target",
                link.target.display()
            )
        };
        let through = |names: &[&OsStr]| {
            format!(
                "its target {} passes through the symlink {} (a symlink through another one may lead anywhere)",
                link.target.display(),
                names.iter().collect::<PathBuf>().display()
            )
        };
        let parent = link.rel.parent().unwrap_or(Path::new(""));
        // The position: its components, and the hash of each of its prefixes.
        let mut names: Vec<&OsStr> = Vec::new();
        let mut hashes: Vec<u64> = Vec::new();
        // The keyed hash of each prefix, for `seen`.
        let mut keyed: Vec<u64> = Vec::new();
        let keyed_step = |keyed: &[u64], part: &OsStr| {
            self.keys
                .hash_one((keyed.last().copied().unwrap_or(ROOT), part))
        };
        for part in parent.components() {
            let h = step(hashes.last().copied().unwrap_or(ROOT), part.as_os_str());
            keyed.push(keyed_step(&keyed, part.as_os_str()));
            names.push(part.as_os_str());
            hashes.push(h);
            if self.paths.contains(&h) {
                return Err(format!(
                    "its path passes through the symlink {}",
                    names.iter().collect::<PathBuf>().display()
                ));
            }
        }
        // On disk, the leading `real` components of the position are folders (the link's
        // own folder was made for it), and `at` is their path.
        let mut real = names.len();
        let mut at = root.map(|r| r.join(parent));
        let parts: Vec<Component<'_>> = link.target.components().collect();
        for (i, part) in parts.iter().enumerate() {
            match part {
                Component::CurDir => {}
                Component::ParentDir => {
                    if hashes.pop().is_none() {
                        return Err(outside());
                    }
                    names.pop();
                    keyed.pop();
                    if real > names.len() {
                        real = names.len();
                        if let Some(at) = &mut at {
                            at.pop();
                        }
                    }
                }
                Component::Normal(part) => {
                    let h = step(hashes.last().copied().unwrap_or(ROOT), part);
                    keyed.push(keyed_step(&keyed, part));
                    names.push(part);
                    hashes.push(h);
                    // The last component may be a symlink: it is checked on its own.
                    if i + 1 == parts.len() {
                        break;
                    }
                    if self.paths.contains(&h) {
                        return Err(through(&names));
                    }
                    if let Some(at) = at.as_mut().filter(|_| real + 1 == names.len()) {
                        at.push(part);
                        let key = *keyed.last().expect("pushed above");
                        let folder = if let Some(folder) = seen.folders.get(&key) {
                            *folder
                        } else {
                            let folder = seen.look_up(at, &names, &through, &link.target)?;
                            seen.folders.insert(key, folder);
                            folder
                        };
                        if folder {
                            real += 1;
                        } else {
                            // Not a folder (yet): the kernel stops there; what follows is
                            // judged as if it were one.
                            at.pop();
                        }
                    }
                }
                Component::RootDir | Component::Prefix(_) => return Err(outside()),
            }
        }
        Ok(())
    }
}

impl Seen {
    /// Whether `at` (of components `names`) is a real folder on disk; an error if it is a
    /// symlink, cannot be looked up, or the lookups went past [`MAX_WALKED`].
    fn look_up(
        &self,
        at: &Path,
        names: &[&OsStr],
        through: &dyn Fn(&[&OsStr]) -> String,
        target: &Path,
    ) -> Result<bool, String> {
        let walked = self.walked.get() + names.len() as u64;
        if walked > MAX_WALKED {
            return Err(format!(
                "the archive's symlinks lead through more folders than a restore checks ({MAX_WALKED} lookups in all)"
            ));
        }
        self.walked.set(walked);
        #[cfg(test)]
        LOOKUPS.with(|n| n.set(n.get() + 1));
        match std::fs::symlink_metadata(at) {
            Ok(meta) if meta.file_type().is_symlink() => Err(through(names)),
            Ok(meta) => Ok(meta.is_dir()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(format!(
                "its target {} cannot be checked: {e}",
                target.display()
            )),
        }
    }
}

/// Whether a symlink at `rel` pointing to `target` stays inside the root when every
/// component is taken for a folder: the first, cheap check of every link, made as it is
/// read.
pub(super) fn stays_inside_lexically(rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth = rel.components().count().saturating_sub(1);
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}
