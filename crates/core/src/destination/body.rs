//! What the stores' object reads share: the span of bytes a read delivers, and the task
//! that reads a body, stopped with the read.

use std::ops::Range;

use crate::error::{Error, ErrorKind, Result};

/// The bytes of an object a read delivers: from `start` to `end` (to the end of the body
/// when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The first byte.
    pub start: u64,
    /// Just past the last byte, when known.
    pub end: Option<u64>,
}

impl Span {
    /// The bytes `range` of an object of `total` bytes (cut at its end when known), or the
    /// whole object without a range.
    pub fn new(range: Option<&Range<u64>>, total: Option<u64>) -> Self {
        let start = range.map_or(0, |r| r.start);
        let end = match (range, total) {
            (Some(r), Some(total)) => Some(r.end.min(total).max(start)),
            (Some(r), None) => Some(r.end),
            (None, total) => total,
        };
        Self { start, end }
    }

    /// How many bytes it holds, when known.
    pub fn bytes(&self) -> Option<u64> {
        self.end.map(|end| end - self.start)
    }
}

/// The task reading a body, stopped when this is dropped: a read dropped half-way stops
/// downloading.
#[derive(Debug)]
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Checks that an answer resuming a read of `key` in `store` (described as in its errors)
/// is of the object the first answer was of: `first` and `now` are the object sizes they
/// announced (their `Content-Range` totals, or whole bodies' lengths); `now` is `None` when
/// the store refused the range from `offset` on as past the object's end.
pub fn same_size(
    store: &str,
    key: &str,
    first: Option<u64>,
    now: Option<u64>,
    offset: u64,
) -> Result<()> {
    let Some(first) = first else {
        return Ok(());
    };
    let what = match now {
        Some(now) if now == first => return Ok(()),
        Some(now) => {
            format!("the store answered a range of an object of {now} bytes instead of {first}")
        }
        None => format!(
            "the store refused the range from byte {offset} on as past the end of the object, which it had said holds {first} bytes"
        ),
    };
    Err(Error::new(
        ErrorKind::Destination,
        format!(
            "{store}: reading {key} failed: {what}: the object changed while it was being read, or the store is faulty"
        ),
    )
    .with_hint("restore again; if it happens again, check the store (and any proxy in front of it) and what else writes under this path"))
}

#[cfg(test)]
mod tests {
    use super::{Span, same_size};

    #[test]
    fn an_answer_of_another_size_says_so_with_both_sizes() {
        assert!(same_size("s3 bucket b", "k", Some(10), Some(10), 5).is_ok());
        assert!(same_size("s3 bucket b", "k", None, Some(3), 5).is_ok());
        let e = same_size("s3 bucket b", "a/k.tar.gz", Some(1000), Some(400), 300).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Destination);
        assert_eq!(
            e.message(),
            "s3 bucket b: reading a/k.tar.gz failed: the store answered a range of an object of 400 bytes instead of 1000: the object changed while it was being read, or the store is faulty"
        );
        assert!(!e.is_temporary(), "the same answer would come again");
        let e = same_size("gcs bucket g", "k", Some(1000), None, 400).unwrap_err();
        assert!(
            e.message().contains("refused the range from byte 400 on as past the end of the object, which it had said holds 1000 bytes")
                && !e.message().contains("InvalidRange"),
            "{e}"
        );
    }

    #[test]
    fn a_range_is_cut_at_the_objects_end() {
        assert_eq!(Span::new(Some(&(10..100)), Some(50)).bytes(), Some(40));
        assert_eq!(Span::new(Some(&(60..100)), Some(50)).bytes(), Some(0));
        assert_eq!(Span::new(Some(&(10..100)), None).bytes(), Some(90));
        assert_eq!(
            Span::new(None, Some(50)),
            Span {
                start: 0,
                end: Some(50)
            }
        );
        assert_eq!(Span::new(None, None).bytes(), None);
    }
}
