//! The two operations on whole backups, side by side: making one ([`backup`]) and reading
//! one back ([`restore`]). They drive the byte pipes of [`crate::pipeline`] and the
//! destinations; the pipes never call back up here.

pub mod backup;
pub mod browse;
pub mod restore;
