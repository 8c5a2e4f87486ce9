//! The symlinks of an archive: kept aside while the other entries are extracted, then
//! made last, each with its target as the archive says (see the module doc of `extract`
//! for why that is sound).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::hash::Hasher as _;
use std::path::{Path, PathBuf};

use filetime::FileTime;

use super::{make_parent, unsafe_entry};
use crate::error::{Error, Result};

/// The longest symlink target, as the kernel's `symlink` takes it (`PATH_MAX` less the NUL).
pub(super) const MAX_TARGET_LEN: usize = 4095;

/// Bytes of memory the links kept until the end of the archive may take, counted as
/// their names plus [`PER_LINK`]: about 200,000 links of short names.
const MAX_KEPT: usize = 64 << 20;

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
        if target.as_os_str().is_empty() {
            return Err(unsafe_entry(name, "it is a symlink with an empty target"));
        }
        if target.as_os_str().len() > MAX_TARGET_LEN {
            return Err(unsafe_entry(
                name,
                &format!("its symlink target is longer than {MAX_TARGET_LEN} bytes"),
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

    /// Checks that no link's path passes through another link (one that came later than
    /// it, as the earlier ones were refused as they came); then, with a `root`, makes
    /// every link kept, as its target says. On a failure, the links made are removed again.
    pub(super) fn finish(&mut self, root: Option<&Path>) -> Result<()> {
        for link in &self.pending {
            self.check(link)
                .map_err(|why| unsafe_entry(&link.name, &why))?;
        }
        let Some(root) = root else {
            return Ok(());
        };
        for (made, link) in self.pending.iter().enumerate() {
            let path = root.join(&link.rel);
            if let Err(e) = std::os::unix::fs::symlink(&link.target, &path) {
                for link in &self.pending[..made] {
                    let _ = std::fs::remove_file(root.join(&link.rel));
                }
                return Err(Error::io("create symlink", &path, e));
            }
            let _ = filetime::set_symlink_file_times(&path, link.mtime, link.mtime);
        }
        Ok(())
    }

    /// Refuses `link` if a folder on its path is a link of the archive. Its target is not
    /// judged: a symlink is only text, made last, and nothing is written through it.
    fn check(&self, link: &Pending) -> Result<(), String> {
        let parent = link.rel.parent().unwrap_or(Path::new(""));
        match self.on_the_way(parent) {
            Some(via) => Err(format!(
                "its path passes through the symlink {}",
                via.display()
            )),
            None => Ok(()),
        }
    }
}
