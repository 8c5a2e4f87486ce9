//! Which entries an `ls PATH…` or a `restore --include PATH…` means: a path picks that
//! entry and, for a folder, everything below it; `*` and `?` match within one component,
//! `**` across components.

use std::ops::Range;

use crate::error::{Error, ErrorKind, Result};
use crate::format::index::{ArchiveIndex, EntryKind, IndexEntry};

/// The patterns of an `ls` or a `restore --include`.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    patterns: Vec<(String, Glob)>,
}

impl Selection {
    /// The selection of `patterns` as typed (a leading `/` or `./` and a trailing `/` are
    /// dropped); none selects everything.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        let patterns = patterns
            .iter()
            .map(|p| {
                let typed = p.as_ref().to_string();
                let mut norm = typed.as_str();
                while let Some(rest) = norm.strip_prefix("./").or_else(|| norm.strip_prefix('/')) {
                    norm = rest;
                }
                let norm = Glob::new(norm.trim_end_matches('/').as_bytes());
                (typed, norm)
            })
            .collect();
        Self { patterns }
    }

    /// Whether no pattern was given.
    pub fn is_all(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns that match `path` itself, by their position.
    pub fn hits<'a>(&'a self, path: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.patterns
            .iter()
            .enumerate()
            .filter(move |(_, (_, p))| p.matches(path.as_bytes()))
            .map(|(i, _)| i)
    }

    /// Whether `path` or a folder above it matches: what `ls` shows.
    pub fn shows(&self, path: &str) -> bool {
        self.is_all()
            || self
                .patterns
                .iter()
                .any(|(_, p)| p.matches_or_above(path.as_bytes()))
    }

    /// The entries picked in `index`, in tar order, with the folders above each, and the
    /// shallowest picked paths; a pattern that matches nothing is an error naming it (and
    /// `backup`).
    pub fn pick(&self, index: &ArchiveIndex, backup: &str) -> Result<Picked> {
        let mut matched = vec![false; self.patterns.len()];
        let mut picked = Picked::default();
        // The folders above the current entry: the entry, whether already picked, and
        // whether picked as a whole.
        let mut above: Vec<(IndexEntry, bool, bool)> = Vec::new();
        for entry in index.entries() {
            let entry = entry?;
            while above
                .last()
                .is_some_and(|(dir, ..)| !is_below(&entry.path, &dir.path))
            {
                above.pop();
            }
            let hit = self
                .patterns
                .iter()
                .enumerate()
                .fold(false, |hit, (i, (_, p))| {
                    let m = p.matches(entry.path.as_bytes());
                    matched[i] |= m;
                    hit || m
                });
            let whole_above = above.last().is_some_and(|a| a.2);
            let take = self.is_all() || hit || whole_above;
            if take {
                for (dir, added, _) in above.iter_mut().filter(|a| !a.1) {
                    by_name(&dir.path)?;
                    picked.entries.push(dir.clone());
                    *added = true;
                }
                if !whole_above {
                    by_name(&entry.path)?;
                    picked.tops.push(entry.path.clone());
                }
                picked.entries.push(entry.clone());
            }
            if entry.kind == EntryKind::Dir {
                above.push((entry, take, take));
            }
        }
        if let Some(i) = matched.iter().position(|m| !m) {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{:?} matches nothing in backup {backup}",
                    self.patterns[i].0
                ),
            )
            .with_hint("list the backup's files with `service-backup ls CONFIG --backup NAME`"));
        }
        Ok(picked)
    }
}

/// What a selection picked from an index.
#[derive(Debug, Clone, Default)]
pub struct Picked {
    /// The entries to read, in tar order: the picked ones and the folders above them.
    pub entries: Vec<IndexEntry>,
    /// The shallowest picked paths (a folder picked whole counts as one, not its
    /// content), in tar order: what a restore into a live folder puts in place.
    pub tops: Vec<String>,
}

impl Picked {
    /// The tar byte ranges of the entries, in tar order.
    pub fn ranges(&self) -> Vec<Range<u64>> {
        self.entries
            .iter()
            .map(|e| e.tar_start..e.tar_end())
            .collect()
    }
}

/// Refuses a path that a selective restore would have to find by its name in the index
/// (a restored path put in place, or a folder above one) when that name was not UTF-8:
/// the index keeps it with U+FFFD in place of its bad bytes, not as it is on disk.
fn by_name(path: &str) -> Result<()> {
    if !path.contains(char::REPLACEMENT_CHARACTER) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Usage,
        format!(
            "{path:?} cannot be restored alone: its name is not UTF-8 (or holds U+FFFD), and the archive's index does not keep such names exactly"
        ),
    )
    .with_hint("include a folder above it whose name is UTF-8, or restore the whole backup (without --include)"))
}

/// Whether `path` lies below the folder `dir`.
fn is_below(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// One step of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// This byte.
    Byte(u8),
    /// `?`: one byte but `/`.
    One,
    /// `*`: any bytes but `/`.
    Star,
    /// `**`: any bytes; when a `/` follows, it may also be skipped (`**/` matches no folder).
    Stars,
}

/// A pattern compiled to steps, matched by following every step the name so far can be
/// at, in one pass: time in the name's length times the pattern's, whatever the pattern.
#[derive(Debug, Clone, Default)]
pub(crate) struct Glob {
    steps: Vec<Step>,
    /// For each step (and the end), the steps reachable from it without reading a byte,
    /// as a bit set of `words` words.
    closures: Vec<u64>,
    words: usize,
    /// The longest run of bytes that every match holds: a name without it is passed over
    /// without running the steps.
    needed: Vec<u8>,
}

impl Glob {
    /// The pattern `pattern`: `*` any bytes but `/`, `?` one byte but `/`, `**` any bytes;
    /// everything else itself. The empty pattern matches every path.
    pub(crate) fn new(pattern: &[u8]) -> Self {
        let mut steps = Vec::with_capacity(pattern.len());
        let mut i = 0;
        while i < pattern.len() {
            match pattern[i] {
                b'*' if pattern.get(i + 1) == Some(&b'*') => {
                    steps.push(Step::Stars);
                    i += 2;
                }
                b'*' => {
                    steps.push(Step::Star);
                    i += 1;
                }
                b'?' => {
                    steps.push(Step::One);
                    i += 1;
                }
                c => {
                    steps.push(Step::Byte(c));
                    i += 1;
                }
            }
        }
        let words = (steps.len() + 1).div_ceil(64);
        let mut needed = Vec::new();
        let mut run = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            match step {
                // The `/` after `**` may be skipped: it is not needed.
                Step::Byte(b'/') if i > 0 && steps[i - 1] == Step::Stars => run.clear(),
                Step::Byte(c) => {
                    run.push(*c);
                    if run.len() > needed.len() {
                        needed.clone_from(&run);
                    }
                }
                _ => run.clear(),
            }
        }
        let mut glob = Self {
            closures: vec![0; words * (steps.len() + 1)],
            steps,
            words,
            needed,
        };
        // From the end backwards: a step's closure takes in the closures after it.
        for at in (0..=glob.steps.len()).rev() {
            let mut set = vec![0u64; words];
            set[at / 64] |= 1 << (at % 64);
            let also = |from: usize, set: &mut [u64]| {
                for (w, c) in set.iter_mut().zip(glob.closure(from)) {
                    *w |= c;
                }
            };
            match glob.steps.get(at) {
                Some(Step::Star) => also(at + 1, &mut set),
                Some(Step::Stars) => {
                    also(at + 1, &mut set);
                    if glob.steps.get(at + 1) == Some(&Step::Byte(b'/')) {
                        also(at + 2, &mut set);
                    }
                }
                _ => {}
            }
            glob.closures[at * words..(at + 1) * words].copy_from_slice(&set);
        }
        glob
    }

    /// The steps reachable from step `at` without reading a byte.
    fn closure(&self, at: usize) -> &[u64] {
        &self.closures[at * self.words..(at + 1) * self.words]
    }

    /// Whether `name` matches.
    pub(crate) fn matches(&self, name: &[u8]) -> bool {
        self.steps.is_empty() || self.run(name, false)
    }

    /// Whether `name` or one of the folders above it (`name` up to a `/`) matches.
    pub(crate) fn matches_or_above(&self, name: &[u8]) -> bool {
        self.steps.is_empty() || self.run(name, true)
    }

    /// Reads `name` once; with `at_slash`, also accepts when the bytes before a `/` match.
    fn run(&self, name: &[u8], at_slash: bool) -> bool {
        if !self.needed.is_empty() && !name.windows(self.needed.len()).any(|w| w == self.needed) {
            return false;
        }
        let end = self.steps.len();
        let done = |set: &[u64]| set[end / 64] & (1 << (end % 64)) != 0;
        let mut now = self.closure(0).to_vec();
        let mut next = vec![0u64; self.words];
        for &c in name {
            if at_slash && c == b'/' && done(&now) {
                return true;
            }
            next.fill(0);
            let mut any = false;
            for (w, &word) in now.iter().enumerate() {
                let mut bits = word;
                while bits != 0 {
                    let at = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let to = match self.steps.get(at) {
                        Some(Step::Byte(b)) if *b == c => at + 1,
                        Some(Step::One) if c != b'/' => at + 1,
                        Some(Step::Star) if c != b'/' => at,
                        Some(Step::Stars) => at,
                        _ => continue,
                    };
                    for (n, cl) in next.iter_mut().zip(self.closure(to)) {
                        *n |= cl;
                    }
                    any = true;
                }
            }
            if !any {
                return false;
            }
            std::mem::swap(&mut now, &mut next);
        }
        done(&now)
    }
}

/// Whether `name` matches `pattern` (see [`Glob::new`]).
#[cfg(test)]
pub(crate) fn glob(pattern: &[u8], name: &[u8]) -> bool {
    Glob::new(pattern).run(name, false)
}
