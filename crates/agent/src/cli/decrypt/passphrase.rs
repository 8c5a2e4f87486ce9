//! The backup password of `decrypt --passphrase`: typed at the terminal without echo, or
//! read from a file descriptor or a file for scripts.

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};

use nix::sys::termios::{self, LocalFlags, SetArg};
use service_backup_core::secret::Secret;
use service_backup_core::{Error, ErrorKind, Result};
use zeroize::Zeroizing;

/// The most bytes read from a password file or descriptor.
const MAX_PASSWORD_BYTES: u64 = 64 * 1024;

/// Where the password comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Typed at the controlling terminal.
    Prompt,
    /// Read from an open file descriptor (its first line).
    Fd(u32),
    /// Read from a file (its first line).
    File(PathBuf),
}

impl Source {
    /// The source the options name: `--passphrase-fd`, `--passphrase-file` or
    /// `--passphrase`, if any.
    pub fn of(prompt: bool, fd: Option<u32>, file: Option<&Path>) -> Option<Self> {
        if let Some(fd) = fd {
            Some(Self::Fd(fd))
        } else if let Some(path) = file {
            Some(Self::File(path.to_path_buf()))
        } else {
            prompt.then_some(Self::Prompt)
        }
    }
}

/// Reads the password from `source`.
pub fn read(source: &Source) -> Result<Secret> {
    match source {
        Source::Prompt => prompt(),
        Source::Fd(fd) => {
            readable_fd(*fd)?;
            from_file(
                Path::new(&format!("/proc/self/fd/{fd}")),
                &format!("descriptor {fd}"),
            )
        }
        Source::File(path) => from_file(path, &path.display().to_string()),
    }
}

/// The hint of every refused descriptor or file.
const HINT: &str = "--passphrase-fd takes a file descriptor open for reading (such as 3 with `3< file`); --passphrase-file a readable file";

/// Checks that `fd` is open for reading before it is reopened through /proc: reopening the
/// write end of a pipe opens a new reader of that pipe, which waits for ever.
fn readable_fd(fd: u32) -> Result<()> {
    let refuse = |why: &str| {
        Err(Error::new(ErrorKind::Usage, format!("descriptor {fd} {why}")).with_hint(HINT))
    };
    let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
        return refuse("is not open");
    };
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok());
    match flags.map(|f| f & 3) {
        // O_RDONLY and O_RDWR
        Some(0 | 2) => Ok(()),
        Some(_) => refuse("is not open for reading"),
        None => refuse("cannot be checked: its /proc/self/fdinfo entry has no flags"),
    }
}

/// The first line of `path` (its line ending removed), at most 64 KiB; reading stops at the
/// first newline, so that a writer that keeps its end open does not hold the agent.
fn from_file(path: &Path, what: &str) -> Result<Secret> {
    let file = std::fs::File::open(path).map_err(|e| {
        Error::new(
            ErrorKind::Usage,
            format!("cannot read the password from {what}: {e}"),
        )
        .with_hint(HINT)
    })?;
    let mut raw = Zeroizing::new(Vec::new());
    std::io::BufReader::new(file.take(MAX_PASSWORD_BYTES))
        .read_until(b'\n', &mut raw)
        .map_err(|e| {
            Error::new(
                ErrorKind::Usage,
                format!("cannot read the password from {what}: {e}"),
            )
        })?;
    first_line(&raw, what)
}

fn first_line(raw: &[u8], what: &str) -> Result<Secret> {
    let line = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| {
        Error::new(
            ErrorKind::Usage,
            format!("the password from {what} is not UTF-8"),
        )
    })?;
    if text.is_empty() {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("the password from {what} is empty"),
        ));
    }
    Ok(Secret::new(text))
}

/// Asks for the password on the controlling terminal, with echo off while it is typed.
fn prompt() -> Result<Secret> {
    let no_tty = |e: std::io::Error| {
        Error::new(
            ErrorKind::Usage,
            format!("--passphrase asks on a terminal, and there is none: {e}"),
        )
        .with_hint("give the password with --passphrase-fd N or --passphrase-file FILE")
    };
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(no_tty)?;
    let saved = termios::tcgetattr(&tty).map_err(|e| no_tty(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    let _ = write!(tty, "Backup password: ");
    let _ = tty.flush();
    termios::tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet).map_err(|e| no_tty(e.into()))?;
    let mut line = Zeroizing::new(String::new());
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    // Echo comes back whatever happened.
    let _ = termios::tcsetattr(&tty, SetArg::TCSAFLUSH, &saved);
    read.map_err(no_tty)?;
    first_line(line.as_bytes(), "the terminal")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_without_its_ending_is_the_password() {
        let p = first_line(b"a password\r\nsecond line\n", "t").unwrap();
        assert_eq!(p.expose(), "a password");
        assert_eq!(
            first_line(b"no newline", "t").unwrap().expose(),
            "no newline"
        );
        let e = first_line(b"\n", "descriptor 3").unwrap_err();
        assert_eq!(e.message(), "the password from descriptor 3 is empty");
        assert!(first_line(b"\xff\n", "t").is_err());
    }

    #[test]
    fn a_descriptor_must_be_open_for_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "first line\nsecond\n").unwrap();
        let write_only = std::fs::File::create(dir.path().join("w")).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&write_only).unsigned_abs();
        let e = read(&Source::Fd(fd)).unwrap_err();
        assert_eq!(
            e.message(),
            format!("descriptor {fd} is not open for reading")
        );
        assert_eq!(e.kind(), ErrorKind::Usage);
        let readable = std::fs::File::open(&path).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&readable).unsigned_abs();
        assert_eq!(read(&Source::Fd(fd)).unwrap().expose(), "first line");
    }
}
