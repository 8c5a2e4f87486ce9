//! The encrypted archive format of `spec/archive-format.md`.

pub mod keys;

pub use keys::{KEY_LEN, Key, KeyId, Keyring};
