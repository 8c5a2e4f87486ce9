//! Bearer tokens: read from `bearer_tokens_file` (one a line), reread on SIGHUP, compared
//! in constant time. Only SHA-256 digests of the tokens are kept (the file's text is wiped
//! once hashed, so that a core or swapped page holds no token); no token is ever logged.
//! A tokens file that others may read or write is refused, at start and on SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use sha2::{Digest as _, Sha256};

use crate::config::file_mode::read_secret_file;
use subtle::ConstantTimeEq as _;

/// The accepted tokens, as digests.
#[derive(Debug)]
pub struct Tokens {
    path: RwLock<PathBuf>,
    digests: RwLock<Vec<[u8; 32]>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Reads a tokens file: one token a line, blank lines and surrounding spaces ignored; the
/// problem says what is wrong with the file.
fn read(path: &Path) -> Result<Vec<[u8; 32]>, String> {
    let text = read_secret_file("api.bearer_tokens_file", path)?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(digest)
        .collect())
}

impl Tokens {
    /// Loads the tokens of `path`; an unreadable file, or one open to others, is an error.
    pub fn load(path: &Path) -> Result<Self, String> {
        let digests = read(path)?;
        if digests.is_empty() {
            tracing::warn!(file = %path.display(), "The API's bearer tokens file has no token: every request will be refused");
        }
        Ok(Self {
            path: RwLock::new(path.to_path_buf()),
            digests: RwLock::new(digests),
        })
    }

    /// Rereads the tokens file (`path` if given, else the current one); on failure the
    /// previous tokens stay in force and the problem is logged.
    pub fn reload(&self, path: Option<&Path>) {
        let path = path.map_or_else(
            || {
                self.path
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            },
            Path::to_path_buf,
        );
        match read(&path) {
            Ok(digests) => {
                let count = digests.len();
                *self
                    .digests
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = digests;
                *self
                    .path
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = path;
                tracing::info!(tokens = count, "API bearer tokens reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "API bearer tokens could not be reread; keeping the previous ones");
            }
        }
    }

    /// Whether `token` is one of the accepted tokens; every digest is compared.
    pub fn accepts(&self, token: &str) -> bool {
        let presented = digest(token);
        let digests = self
            .digests
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut found = subtle::Choice::from(0u8);
        for d in digests.iter() {
            found |= d.ct_eq(&presented);
        }
        found.into()
    }
}

/// Why a request's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header.
    Missing,
    /// The header is not `Bearer <token>`.
    Malformed,
    /// The token is not accepted.
    Wrong,
}

impl Refusal {
    /// The description sent to the client.
    pub fn description(self) -> &'static str {
        match self {
            Self::Missing => {
                "the request has no Authorization header: send `Authorization: Bearer <token>`"
            }
            Self::Malformed => "the Authorization header must be `Bearer <token>`",
            Self::Wrong => "the bearer token is not valid",
        }
    }
}

/// Checks an `Authorization` header value (scheme word in any case).
pub fn check(tokens: &Tokens, header: Option<&[u8]>) -> Result<(), Refusal> {
    let header = header.ok_or(Refusal::Missing)?;
    let header = std::str::from_utf8(header).map_err(|_| Refusal::Malformed)?;
    let (scheme, token) = header
        .trim()
        .split_once(char::is_whitespace)
        .ok_or(Refusal::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Refusal::Malformed);
    }
    if tokens.accepts(token) {
        Ok(())
    } else {
        Err(Refusal::Wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_in_any_case_and_only_listed_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "alpha\n\n  beta  \n").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let tokens = Tokens::load(&file).unwrap();
        assert_eq!(check(&tokens, Some(b"Bearer alpha")), Ok(()));
        assert_eq!(check(&tokens, Some(b"bearer beta")), Ok(()));
        assert_eq!(check(&tokens, Some(b"BEARER  alpha ")), Ok(()));
        assert_eq!(check(&tokens, Some(b"Bearer gamma")), Err(Refusal::Wrong));
        assert_eq!(
            check(&tokens, Some(b"Basic alpha")),
            Err(Refusal::Malformed)
        );
        assert_eq!(check(&tokens, Some(b"Bearer")), Err(Refusal::Malformed));
        assert_eq!(check(&tokens, Some(b"alpha")), Err(Refusal::Malformed));
        assert_eq!(check(&tokens, None), Err(Refusal::Missing));
        std::fs::write(&file, "gamma\n").unwrap();
        tokens.reload(None);
        assert_eq!(check(&tokens, Some(b"Bearer gamma")), Ok(()));
        assert_eq!(check(&tokens, Some(b"Bearer alpha")), Err(Refusal::Wrong));
        std::fs::write(&file, "delta\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        tokens.reload(None);
        assert_eq!(
            (
                check(&tokens, Some(b"Bearer gamma")),
                check(&tokens, Some(b"Bearer delta"))
            ),
            (Ok(()), Err(Refusal::Wrong)),
            "a file readable by others is not reread"
        );
        std::fs::remove_file(&file).unwrap();
        tokens.reload(None);
        assert_eq!(
            check(&tokens, Some(b"Bearer gamma")),
            Ok(()),
            "kept on failure"
        );
    }
}
