//! Random bytes from the operating system's generator.

use crate::error::{Error, ErrorKind, Result};

/// Fills `buf` with random bytes.
pub(crate) fn fill(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("the operating system's random generator failed: {e}"),
        )
    })
}

/// Random bytes as lowercase hex, for unique names.
pub fn hex_token(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    fill(&mut buf)?;
    Ok(hex::encode(buf))
}
