//! Which entries an `ls PATH…` or a `restore --include PATH…` means: a path picks that
//! entry and, for a folder, everything below it; `*` and `?` match within one component,
//! `**` across components.

use std::ops::Range;

use crate::error::{Error, ErrorKind, Result};
use crate::format::index::{ArchiveIndex, EntryKind};

/// The patterns of an `ls` or a `restore --include`.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    patterns: Vec<(String, String)>,
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
                let norm = norm.trim_end_matches('/').to_string();
                (typed, norm)
            })
            .collect();
        Self { patterns }
    }

    /// Whether no pattern was given.
    pub fn is_all(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The index of the first pattern that matches `path` itself.
    fn matching(&self, path: &str) -> Option<usize> {
        self.patterns
            .iter()
            .position(|(_, p)| p.is_empty() || glob(p.as_bytes(), path.as_bytes()))
    }

    /// The patterns that match `path` itself, by their position.
    pub fn hits<'a>(&'a self, path: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.patterns
            .iter()
            .enumerate()
            .filter(move |(_, (_, p))| p.is_empty() || glob(p.as_bytes(), path.as_bytes()))
            .map(|(i, _)| i)
    }

    /// Whether `path` or a folder above it matches: what `ls` shows.
    pub fn shows(&self, path: &str) -> bool {
        if self.is_all() {
            return true;
        }
        let mut at = path.len();
        loop {
            if self.matching(&path[..at]).is_some() {
                return true;
            }
            match path[..at].rfind('/') {
                Some(slash) => at = slash,
                None => return false,
            }
        }
    }

    /// The tar byte ranges of the entries picked in `index`, in tar order, with the folders
    /// above each; a pattern that matches nothing is an error naming it (and `backup`).
    pub fn pick(&self, index: &ArchiveIndex, backup: &str) -> Result<Vec<Range<u64>>> {
        let mut matched = vec![false; self.patterns.len()];
        let mut ranges: Vec<Range<u64>> = Vec::new();
        // The folders above the current entry: path, range, whether already picked, and
        // whether picked as a whole.
        let mut above: Vec<(String, Range<u64>, bool, bool)> = Vec::new();
        for entry in index.entries() {
            let entry = entry?;
            while above
                .last()
                .is_some_and(|(dir, ..)| !is_below(&entry.path, dir))
            {
                above.pop();
            }
            let hit = self
                .patterns
                .iter()
                .enumerate()
                .fold(false, |hit, (i, (_, p))| {
                    let m = p.is_empty() || glob(p.as_bytes(), entry.path.as_bytes());
                    matched[i] |= m;
                    hit || m
                });
            let picked = self.is_all() || hit || above.last().is_some_and(|a| a.3);
            let range = entry.tar_start..entry.tar_end();
            if picked {
                for (_, dir_range, added, _) in above.iter_mut().filter(|a| !a.2) {
                    ranges.push(dir_range.clone());
                    *added = true;
                }
                ranges.push(range.clone());
            }
            if entry.kind == EntryKind::Dir {
                above.push((entry.path, range, picked, picked));
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
        Ok(ranges)
    }
}

/// Whether `path` lies below the folder `dir`.
fn is_below(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// Whether `name` matches `pattern`: `*` any bytes but `/`, `?` one byte but `/`, `**` any
/// bytes; everything else itself.
pub(crate) fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) if rest.first() == Some(&b'*') => {
            let rest = &rest[1..];
            // `**/` also matches no folder at all.
            let rest_noslash = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=name.len()).any(|i| glob(rest, &name[i..]) || glob(rest_noslash, &name[i..]))
        }
        Some((b'*', rest)) => {
            let mut i = 0;
            loop {
                if glob(rest, &name[i..]) {
                    return true;
                }
                if i == name.len() || name[i] == b'/' {
                    return false;
                }
                i += 1;
            }
        }
        Some((b'?', rest)) => name.first().is_some_and(|&c| c != b'/') && glob(rest, &name[1..]),
        Some((&c, rest)) => name.first() == Some(&c) && glob(rest, &name[1..]),
    }
}
