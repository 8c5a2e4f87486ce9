//! The agent's `known_hosts` file: with no `fingerprint` configured, the host key a server
//! presents first is recorded there (trust on first use, as ssh does), and every later
//! connection must present a recorded key.
//!
//! The file is in OpenSSH's format, so that `ssh-keygen -F` and `ssh-keygen -R` work on it.
//! Lines are matched as ssh matches them: comma-separated host patterns with `*`, `?` and
//! `!`, or hashed names (`|1|salt|hash`, as `ssh-keygen -H` writes them); lines with a marker
//! (`@cert-authority`, `@revoked`) name no acceptable key and are skipped.
//!
//! Writers (agents and commands beside each other) take an exclusive lock on a file beside
//! it, read it again, and replace it with a complete copy by rename: a reader sees the old
//! file or the new one, never a half-written one, and no record is lost.

use std::fs::{DirBuilder, File};
use std::io::Read as _;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use service_backup_core::{Error, ErrorKind, Result};
use sha1::Sha1;

use crate::fingerprint::{HostKeyPins, SeenKey, foreign_type, key_pin};

/// The `known_hosts` file of the agent.
#[derive(Debug, Clone)]
pub(crate) struct KnownHosts {
    path: PathBuf,
}

/// What [`KnownHosts::record`] found.
pub(crate) enum Recorded {
    /// The key is now recorded: it was the first one seen for the host.
    New,
    /// Another process recorded keys for the host in the meantime: these.
    Already(HostKeyPins),
}

impl KnownHosts {
    /// The file at `path` (it need not exist).
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Where the file is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The name of a server in the file, as OpenSSH writes it: `host` on port 22, else
    /// `[host]:port`.
    pub(crate) fn host_name(server: &str, port: u16) -> String {
        let host = server.to_lowercase();
        if port == 22 {
            host
        } else {
            format!("[{host}]:{port}")
        }
    }

    /// The keys the file records for `host` (as [`KnownHosts::host_name`] names it).
    pub(crate) fn lookup(&self, host: &str) -> Result<Option<HostKeyPins>> {
        let text = self.read()?;
        self.keys_in(&text, host)
    }

    /// Records `seen` for `host`, unless keys were recorded for it meanwhile (then returns
    /// them). Creates the file's folder (mode 0700) and the file (mode 0600) when missing.
    pub(crate) fn record(&self, host: &str, seen: &SeenKey) -> Result<Recorded> {
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || "*?!,|#@".contains(c)) {
            // Pattern characters would make the record match other hosts, or not its own.
            return Err(Error::new(
                ErrorKind::Config,
                format!("the server name {host:?} cannot be recorded in a known_hosts file"),
            )
            .with_hint("set `server` to a host name or address"));
        }
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io("create the folder of", &self.path, e))?;
        let lock_path = lock_path(&self.path);
        // Never through a link planted under its name.
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&lock_path)
            .map_err(|e| Error::io("open", &lock_path, e))?;
        // Held only while the file is read and replaced: a few milliseconds.
        lock.lock().map_err(|e| Error::io("lock", &lock_path, e))?;
        let line = format!("{host} {}\n", seen.known_hosts_text());
        // Only a key that reads back as what it is recorded: the server chose its bytes.
        let mut words = line.split_whitespace().skip(1);
        key_pin(words.next().unwrap_or_default(), words.next()).map_err(|what| {
            Error::new(
                ErrorKind::Destination,
                format!("the host key of {host} cannot be recorded: {what}"),
            )
        })?;
        let mut text = self.read()?;
        if let Some(pins) = self.keys_in(&text, host)? {
            return Ok(Recorded::Already(pins));
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&line);
        // tempfile creates it with mode 0600, under a name no other process uses.
        let mut file = tempfile::Builder::new()
            .prefix(".known_hosts.")
            .tempfile_in(dir)
            .map_err(|e| Error::io("create a temporary file in", dir, e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.as_file().sync_all())
            .map_err(|e| Error::io("write", file.path(), e))?;
        file.persist(&self.path)
            .map_err(|e| Error::io("replace", &self.path, e.error))?;
        // The rename itself survives a crash only once the folder is synced.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("sync", dir, e))?;
        Ok(Recorded::New)
    }

    /// The file's text; empty when it does not exist yet.
    /// A file that is a link, that another user owns or that others may write is refused:
    /// whoever wrote it could pin their own server's key.
    fn read(&self) -> Result<String> {
        let opened = File::options()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&self.path);
        let mut file = match opened {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
            Err(e) => return Err(Error::io("read", &self.path, e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| Error::io("read", &self.path, e))?;
        if meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o022 != 0 {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "known_hosts file {} is not the agent's alone (owner uid {}, mode {:04o}): another user could pin their own server's key in it",
                    self.path.display(),
                    meta.uid(),
                    meta.mode() & 0o7777
                ),
            )
            .with_hint("check its lines; make it the agent's (chown, chmod 600), or delete it so that the servers' keys are recorded again on first use"));
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::io("read", &self.path, e))?;
        String::from_utf8(bytes).map_err(|_| self.damaged("it is not text"))
    }

    /// The keys `text` records for `host`. A line naming `host` that cannot be read is an
    /// error, not a missing record: skipping it would trust a new key on first use again.
    fn keys_in(&self, text: &str, host: &str) -> Result<Option<HostKeyPins>> {
        let mut pins = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
                continue;
            }
            let mut words = line.split_whitespace();
            let patterns = words.next().unwrap_or_default();
            if !names(patterns, host) {
                continue;
            }
            let key_type = words.next().unwrap_or_default();
            match key_pin(key_type, words.next()) {
                Ok(pin) => pins.push(pin),
                // ssh too ignores keys of types it does not know (security keys, certificates).
                Err(_) if foreign_type(key_type) => {}
                Err(what) => {
                    return Err(self.damaged(&format!("line {}: {what}", number + 1)));
                }
            }
        }
        Ok(HostKeyPins::of(pins))
    }

    fn damaged(&self, what: &str) -> Error {
        Error::new(
            ErrorKind::Io,
            format!(
                "the known_hosts file {} cannot be read: {what}",
                self.path.display()
            ),
        )
        .with_hint(
            "correct or delete the line (`ssh-keygen -R HOST -f FILE` deletes a host's lines)",
        )
    }
}

/// The lock file beside `path`.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

/// Whether the host field of a `known_hosts` line names `host`.
fn names(patterns: &str, host: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        return hashed_names(hashed, host);
    }
    let mut found = false;
    for pattern in patterns.split(',') {
        let pattern = pattern.to_lowercase();
        match pattern.strip_prefix('!') {
            // A negated pattern that matches excludes the host, whatever else matches.
            Some(negated) if wildcard(negated.as_bytes(), host.as_bytes()) => return false,
            Some(_) => {}
            None => found |= wildcard(pattern.as_bytes(), host.as_bytes()),
        }
    }
    found
}

/// Whether `salt|hash` (base64) is the HMAC-SHA1 of `host` keyed with the salt.
fn hashed_names(hashed: &str, host: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    let mut mac = Hmac::<Sha1>::new_from_slice(&salt).expect("HMAC takes keys of any length");
    mac.update(host.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// OpenSSH's pattern match: `*` any run of characters, `?` any one character.
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| wildcard(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && wildcard(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && wildcard(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests;
