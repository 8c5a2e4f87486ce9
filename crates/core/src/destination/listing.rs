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

    /// The page after the last one handed out continues its query with its marker, once;
    /// any other page starts a new query after its key.
    #[test]
    fn the_next_page_goes_on_with_the_marker_of_the_last_one_only() {
        let pages = NextPages::default();
        assert_eq!(pages.query("p/", "", 10), (String::new(), 10, None));
        pages.keep("p/", String::new(), 10, Some("m1".into()), Some("p/b"));
        assert_eq!(pages.query("q/", "p/b", 5), ("p/b".into(), 5, None));
        pages.keep("p/", String::new(), 10, Some("m1".into()), Some("p/b"));
        assert_eq!(
            pages.query("p/", "p/b", 5),
            (String::new(), 10, Some("m1".into()))
        );
        assert_eq!(
            pages.query("p/", "p/b", 5),
            ("p/b".into(), 5, None),
            "taken once"
        );
        // The last page (no marker) keeps nothing.
        pages.keep("p/", String::new(), 10, None, Some("p/z"));
        assert_eq!(pages.query("p/", "p/z", 5), ("p/z".into(), 5, None));
    }

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

/// Where the listing of the last page a store handed out goes on, for a store whose
/// listings continue with a marker of their own (Azure's marker, GCS's page token): the
/// next page asked after that page's last key continues the same query with that marker
/// instead of starting a new one after the key.
#[derive(Debug, Default)]
pub struct NextPages {
    next: std::sync::Mutex<Option<NextPage>>,
}

/// A listing's query and the marker that goes on with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextPage {
    /// The prefix listed.
    pub prefix: String,
    /// The last key of the page handed out.
    pub after: String,
    /// The key the query started after.
    pub from: String,
    /// The page size it asks for.
    pub page_size: u32,
    /// The store's marker that goes on with it.
    pub marker: String,
}

impl NextPages {
    /// The query a page of `prefix` after `start_after` continues (the key it started
    /// after, its page size and its marker), or a new one of `page_size` after that key.
    pub fn query(
        &self,
        prefix: &str,
        start_after: &str,
        page_size: u32,
    ) -> (String, u32, Option<String>) {
        let next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take_if(|n| n.prefix == prefix && n.after == start_after);
        match next {
            Some(next) => (next.from, next.page_size, Some(next.marker)),
            None => (start_after.to_string(), page_size, None),
        }
    }

    /// Keeps where the listing goes on after a page: `marker` goes on with the query
    /// (`prefix`, `from`, `page_size`) after `last`, the page's last key.
    pub fn keep(
        &self,
        prefix: &str,
        from: String,
        page_size: u32,
        marker: Option<String>,
        last: Option<&str>,
    ) {
        if let (Some(marker), Some(last)) = (marker, last) {
            *self
                .next
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(NextPage {
                prefix: prefix.to_string(),
                after: last.to_string(),
                from,
                page_size,
                marker,
            });
        }
    }
}
