//! What the stores' object reads share: the span of bytes a read delivers, and the task
//! that reads a body, stopped with the read.

use std::ops::Range;

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

#[cfg(test)]
mod tests {
    use super::Span;

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
