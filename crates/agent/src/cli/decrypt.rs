//! `service-backup decrypt --key-file K | --identity FILE | --passphrase
//! [--output FILE | --extract DIR] [INPUT]`.

pub(super) mod passphrase;

use std::io::{self, BufReader, IsTerminal as _, Read, Write as _};
use std::path::PathBuf;

use clap::Args;
use service_backup_core::format::{DecryptingReader, Keyring, Passphrase, from_io};
use service_backup_core::ops::restore::{
    Binding, Decryption, RestoreInto, binding_of_file, read_into,
};
use service_backup_core::{Error, ErrorKind};

use crate::command::{CliResult, Outcome, keyring};
use crate::progress::Bar;

/// Arguments of `decrypt`.
#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// The key file(s); the one the archive was made for is found by its key id.
    #[arg(long = "key-file", env = super::KEY_FILE_ENV, required_unless_present_any = ["identity_files", "passphrase", "passphrase_fd", "passphrase_file"])]
    key_files: Vec<PathBuf>,
    /// Identity files (written by `keygen --recipient`); the one the archive was made for
    /// is found by its recipient id. Repeatable.
    #[arg(long = "identity", value_name = "FILE")]
    identity_files: Vec<PathBuf>,
    /// Open the archive with the backup password (set through the API), typed at the
    /// terminal without echo.
    #[arg(long, conflicts_with_all = ["passphrase_fd", "passphrase_file"])]
    passphrase: bool,
    /// Read the backup password from this open file descriptor (its first line).
    #[arg(long, value_name = "N", conflicts_with = "passphrase_file")]
    passphrase_fd: Option<u32>,
    /// Read the backup password from this file (its first line).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Write the plain .tar.gz (or .tar.zst) here, created only when complete, instead of
    /// standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Unpack the archive into this folder instead of writing a .tar.gz or .tar.zst.
    #[arg(long, conflicts_with = "output")]
    extract: Option<PathBuf>,
    /// With --extract: replace the content of a non-empty folder.
    #[arg(long, requires = "extract")]
    force: bool,
    /// The encrypted archive (default: standard input).
    input: Option<PathBuf>,
}

/// Decrypts or extracts an archive.
pub fn run(args: &DecryptArgs) -> CliResult {
    let mut ring = keyring(None, &args.key_files, &args.identity_files)?.unwrap_or_default();
    if let Some(source) = args.passphrase_source() {
        ring.set_passphrase(Passphrase::new(passphrase::read(&source)?));
    }
    open(args, &ring)
}

impl DecryptArgs {
    /// Where the backup password comes from, if one is asked for.
    fn passphrase_source(&self) -> Option<passphrase::Source> {
        passphrase::Source::of(
            self.passphrase,
            self.passphrase_fd,
            self.passphrase_file.as_deref(),
        )
    }
}

/// Decrypts or extracts the input with `ring`.
fn open(args: &DecryptArgs, ring: &Keyring) -> CliResult {
    let (input, size): (Box<dyn Read + Send>, Option<u64>) = match &args.input {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
            let size = file.metadata().ok().map(|m| m.len());
            (Box::new(file), size)
        }
        None => (Box::new(io::stdin()), None),
    };
    // A file named for a backup (as downloads are) must hold that backup's archive.
    let binding = args
        .input
        .as_deref()
        .map_or(Binding::Unchecked, binding_of_file);
    let bar = Bar::new("decrypt");
    if let Some(total) = size {
        bar.set_total_from(total);
    }
    if let Some(dir) = &args.extract {
        let into = RestoreInto::Dir {
            path: dir.clone(),
            replace: args.force,
        };
        let mut decryption = Decryption::new(Some(ring.clone()));
        decryption.bound_to = binding.clone();
        let stats = read_into(input, &decryption, None, &into, &*bar);
        bar.finish();
        let stats = stats?;
        let size = if crate::progress::for_a_person() {
            crate::progress::units::bytes(stats.extracted.bytes)
        } else {
            format!("{} bytes", stats.extracted.bytes)
        };
        eprintln!(
            "extracted {} entries ({size}) into {}",
            stats.extracted.entries,
            dir.display()
        );
        return Ok(Outcome::Success);
    }
    let counted = Counted {
        inner: input,
        bar: bar.clone(),
    };
    let mut reader = DecryptingReader::new(BufReader::with_capacity(256 * 1024, counted), ring)?;
    binding.check(reader.context())?;
    if let Some(path) = &args.output {
        if path.exists() {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("{} already exists", path.display()),
            )
            .with_hint("choose another --output path or remove the file first")
            .into());
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let mut temp = tempfile::Builder::new()
            .prefix(".service-backup-decrypt-")
            .tempfile_in(dir)
            .map_err(|e| Error::io("create a temporary file in", dir, e))?;
        io::copy(&mut reader, temp.as_file_mut()).map_err(|e| from_io(e, "decrypt the archive"))?;
        temp.as_file()
            .sync_all()
            .map_err(|e| Error::io("sync", temp.path(), e))?;
        temp.persist_noclobber(path)
            .map_err(|e| Error::io("create", path, e.error))?;
        bar.finish();
        eprintln!(
            "decrypted with key (or recipient) id {} to {}",
            reader.key_id(),
            path.display()
        );
    } else {
        let stdout = io::stdout();
        if stdout.is_terminal() {
            return Err(Error::new(
                ErrorKind::Usage,
                "refusing to write archive data to a terminal",
            )
            .with_hint("pass --output FILE, or redirect standard output")
            .into());
        }
        let mut out = stdout.lock();
        let written = io::copy(&mut reader, &mut out).and_then(|_| out.flush());
        bar.finish();
        match written {
            // `decrypt … | head`: the reader took what it wanted; that is no failure.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            other => other.map_err(|e| from_io(e, "decrypt the archive"))?,
        }
    }
    Ok(Outcome::Success)
}

/// Reports progress of the bytes read from the input.
struct Counted {
    inner: Box<dyn Read + Send>,
    bar: std::sync::Arc<Bar>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        service_backup_core::progress::Progress::advance(&*self.bar, n as u64);
        Ok(n)
    }
}
