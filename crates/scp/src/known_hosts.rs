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
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// An ed25519 key whose 32 key bytes are all `n`.
    fn key(n: u8) -> SeenKey {
        let mut blob = Vec::new();
        blob.extend_from_slice(&11u32.to_be_bytes());
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&32u32.to_be_bytes());
        blob.extend([n; 32]);
        SeenKey::ed25519(blob)
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_first_key_is_recorded_once_in_a_private_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state/known_hosts");
        let file = KnownHosts::new(path.clone());
        let host = "[10.0.0.5]:2222";
        assert!(file.lookup(host).unwrap().is_none());
        assert!(matches!(file.record(host, &key(1)).unwrap(), Recorded::New));
        assert_eq!(mode(&tmp.path().join("state")), 0o700);
        assert_eq!(mode(&path), 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{host} {}\n", key(1).known_hosts_text()));
        let pins = file.lookup(host).unwrap().unwrap();
        assert!(pins.accept(&key(1)) && !pins.accept(&key(2)));
        // A second recording finds the first and changes nothing.
        let Recorded::Already(pins) = file.record(host, &key(2)).unwrap() else {
            panic!("recorded twice");
        };
        assert!(pins.accept(&key(1)) && !pins.accept(&key(2)));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        // Other servers are not recorded; no temporary file is left, only the lock file.
        assert!(file.lookup("[10.0.0.5]:2223").unwrap().is_none());
        let mut names: Vec<_> = std::fs::read_dir(tmp.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["known_hosts", "known_hosts.lock"]);
    }

    #[test]
    fn lines_of_others_are_kept_and_read_as_ssh_reads_them() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("known_hosts");
        let other = format!("# kept\nother.example {}", key(9).known_hosts_text());
        let text = format!(
            "{other}\n@revoked * {revoked}\n[10.0.0.5]:2222 sk-ssh-ed25519@openssh.com AAAA\n\
             other.example,!x ssh-ed25519 garbage",
            revoked = key(1).known_hosts_text()
        );
        std::fs::write(&path, &text).unwrap();
        let file = KnownHosts::new(path.clone());
        // Markers and key types the agent does not check name no key of the host.
        assert!(file.lookup("[10.0.0.5]:2222").unwrap().is_none());
        assert!(matches!(
            file.record("[10.0.0.5]:2222", &key(1)).unwrap(),
            Recorded::New
        ));
        let after = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            after,
            format!("{text}\n[10.0.0.5]:2222 {}\n", key(1).known_hosts_text())
        );
        // A line of the host that cannot be read is an error, not a missing record.
        let err = file.lookup("other.example").unwrap_err();
        assert!(err.to_string().contains("line 5"), "{err}");
        assert!(err.to_string().contains("ssh-keygen -R"), "{err}");
    }

    #[test]
    fn a_known_hosts_others_wrote_or_a_link_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("known_hosts");
        // What a user who could write state_dir plants: a key of theirs for every host.
        let planted = format!("* {}\n", key(7).known_hosts_text());
        std::fs::write(&path, &planted).unwrap();
        let file = KnownHosts::new(path.clone());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o646)).unwrap();
        let err = file.lookup("backup.example").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(
            err.to_string().contains("is not the agent's alone")
                && err.to_string().contains("mode 0646"),
            "{err}"
        );
        assert!(file.record("backup.example", &key(1)).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
            let err = file.lookup("backup.example").unwrap_err();
            assert!(err.to_string().contains("owner uid 65534"), "{err}");
            std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
        }
        assert!(file.lookup("backup.example").unwrap().is_some());
        // Links, for the file and its lock, are not followed; nothing is created where
        // they point.
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::rename(&path, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert!(file.lookup("backup.example").is_err());
        std::fs::remove_file(&path).unwrap();
        let lock_target = tmp.path().join("made-by-the-link");
        let _ = std::fs::remove_file(lock_path(&path));
        std::os::unix::fs::symlink(&lock_target, lock_path(&path)).unwrap();
        assert!(file.record("backup.example", &key(1)).is_err());
        assert!(!lock_target.exists());
        assert!(!path.exists());
    }

    #[test]
    fn a_file_that_cannot_be_read_or_a_name_that_cannot_be_recorded_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        // A folder where the file should be: an error, never "nothing recorded".
        let file = KnownHosts::new(tmp.path().to_path_buf());
        assert!(file.lookup("host").is_err());
        assert!(file.record("host", &key(1)).is_err());
        let file = KnownHosts::new(tmp.path().join("known_hosts"));
        for name in ["a,b", "*", "a b", "!a", "h?st"] {
            let err = file.record(name, &key(1)).err().expect(name);
            assert_eq!(err.kind(), ErrorKind::Config, "{name}");
        }
        // A key whose blob names another type (the server chose its bytes) is not written.
        let mut forged = Vec::new();
        forged.extend_from_slice(&21u32.to_be_bytes());
        forged.extend_from_slice(b"ssh-ed25519\nevil ssh");
        forged.extend([1; 32]);
        let err = file
            .record("host", &SeenKey::ed25519(forged))
            .err()
            .expect("forged type");
        assert!(err.to_string().contains("cannot be recorded"), "{err}");
        assert!(!tmp.path().join("known_hosts").exists());
    }

    #[test]
    fn concurrent_first_uses_lose_no_record_and_agree_on_one_key() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("known_hosts");
        let threads: Vec<_> = (0..16u8)
            .map(|i| {
                let file = KnownHosts::new(path.clone());
                std::thread::spawn(move || {
                    // Eight servers, each first seen by two writers with different keys.
                    let host = format!("[10.0.0.{}]:22", i % 8);
                    file.record(&host, &key(i)).unwrap();
                    file.lookup(&host).unwrap().unwrap()
                })
            })
            .collect();
        let pins: Vec<HostKeyPins> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 8, "{text}");
        for i in 0..8u8 {
            // Both writers of a server see the same single key.
            assert_eq!(pins[usize::from(i)], pins[usize::from(i) + 8]);
            let accepted = [i, i + 8]
                .into_iter()
                .filter(|&k| pins[usize::from(i)].accept(&key(k)))
                .count();
            assert_eq!(accepted, 1);
        }
    }

    #[test]
    fn host_names_follow_openssh() {
        assert_eq!(
            KnownHosts::host_name("Backup.Example", 22),
            "backup.example"
        );
        assert_eq!(KnownHosts::host_name("10.0.0.5", 2222), "[10.0.0.5]:2222");
        assert_eq!(KnownHosts::host_name("::1", 2222), "[::1]:2222");
    }

    #[test]
    fn patterns_wildcards_and_negation() {
        let host = "[10.0.0.5]:2222";
        assert!(names("[10.0.0.5]:2222", host));
        assert!(names("other,[10.0.0.5]:2222", host));
        assert!(names("[10.0.0.*]:2222", host));
        assert!(names("[10.0.0.?]:2222", host));
        assert!(names("*", host));
        assert!(!names("*,![10.0.0.5]:2222", host));
        assert!(!names("10.0.0.5", host));
        assert!(!names("[10.0.0.5]:22", host));
        assert!(!names("[10.0.0.5]:22222", host));
        assert!(names("BACKUP.example", "backup.example"));
    }

    #[test]
    fn hashed_names_as_ssh_keygen_writes_them() {
        // `ssh-keygen -H` of a line for [127.0.0.1]:2222, with this salt.
        let salt = [7u8; 20];
        let mut mac = Hmac::<Sha1>::new_from_slice(&salt).unwrap();
        mac.update(b"[127.0.0.1]:2222");
        let hash = mac.finalize().into_bytes();
        let field = format!("|1|{}|{}", STANDARD.encode(salt), STANDARD.encode(hash));
        assert!(names(&field, "[127.0.0.1]:2222"));
        assert!(!names(&field, "[127.0.0.1]:2223"));
        assert!(!names("|1|not base64|x", "[127.0.0.1]:2222"));
    }
}
