//! A guard over a paged listing: a server that repeats a continuation marker, or pages
//! without end, must not make the agent loop and hold names without limit.

use std::collections::HashSet;

use crate::error::{Error, ErrorKind, Result};

/// The most entries one listing holds. A deployment keeps a few thousand backups at most;
/// a million names (about 100 MB held) means a broken or hostile listing, not backups.
pub const MAX_LISTING_ENTRIES: usize = 1_000_000;

/// Whether every key below the directory `dir_key` sorts before `start_after`, so that a
/// listing after that key (on a store of real directories) need not read it: its keys all
/// start with `dir_key/`, which sorts before `start_after` without being the start of it.
pub fn sorts_wholly_before(dir_key: &str, start_after: &str) -> bool {
    let dir = format!("{dir_key}/");
    !dir_key.is_empty() && !start_after.starts_with(&dir) && dir.as_str() < start_after
}

/// Counts what a listing holds and the markers it followed, for one listing.
#[derive(Debug)]
pub struct ListingGuard {
    describe: String,
    what: String,
    entries: usize,
    markers: HashSet<String>,
}

impl ListingGuard {
    /// A guard for the listing `what` of the destination `describe`.
    pub fn new(describe: impl Into<String>, what: impl Into<String>) -> Self {
        Self {
            describe: describe.into(),
            what: what.into(),
            entries: 0,
            markers: HashSet::new(),
        }
    }

    /// Counts `n` more entries; an error once the listing holds more than
    /// [`MAX_LISTING_ENTRIES`].
    pub fn add(&mut self, n: usize) -> Result<()> {
        self.entries = self.entries.saturating_add(n);
        if self.entries > MAX_LISTING_ENTRIES {
            return Err(self.error(&format!(
                "the listing has more than {MAX_LISTING_ENTRIES} entries (the most one listing may hold); the service is broken or not the real one"
            )));
        }
        Ok(())
    }

    /// Accepts the marker of the next page; an error if it was already followed (the
    /// service never hands the same marker twice, so the listing would never end).
    pub fn next(&mut self, marker: &str) -> Result<()> {
        if !self.markers.insert(marker.to_string()) {
            return Err(self.error(&format!(
                "the listing repeats its continuation marker {:?}, so it would never end; the service is broken or not the real one",
                marker.chars().take(64).collect::<String>()
            )));
        }
        Ok(())
    }

    fn error(&self, why: &str) -> Error {
        Error::new(
            ErrorKind::Destination,
            format!("{}: cannot {}: {why}", self.describe, self.what),
        )
        .with_hint("check that the endpoint is the storage service's own")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_marker_or_too_many_entries_is_an_error() {
        let mut guard = ListingGuard::new("azure a/c", "list \"\"");
        guard.next("one").unwrap();
        guard.next("two").unwrap();
        let err = guard.next("one").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Destination);
        assert!(
            err.to_string()
                .contains("repeats its continuation marker \"one\""),
            "{err}"
        );
        guard.add(MAX_LISTING_ENTRIES).unwrap();
        let err = guard.add(1).unwrap_err();
        assert!(
            err.to_string().contains("more than 1000000 entries"),
            "{err}"
        );
    }
    #[test]
    fn only_directories_wholly_before_the_start_are_skipped() {
        let after = "p/2026/11/22/b.json";
        for (dir, skipped) in [
            ("p/2025", true),
            ("p/2026/10", true),
            ("p/2026/11/21", true),
            ("p/2026/11/22", false),
            ("p/2026/11", false),
            ("p", false),
            ("p/2026/11/23", false),
            ("p/2027", false),
            ("", false),
        ] {
            assert_eq!(sorts_wholly_before(dir, after), skipped, "{dir}");
        }
        // `p/2026/11/2` holds keys like `p/2026/11/2/x`, and `/` sorts before `2`.
        assert!(sorts_wholly_before("p/2026/11/2", after));
        assert!(!sorts_wholly_before("p/2026/11/22", "p/2026/11/22/"));
    }
}
