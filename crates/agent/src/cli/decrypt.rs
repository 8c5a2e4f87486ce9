//! `service-backup decrypt --key-file K | --identity FILE [--output FILE | --extract DIR]
//! [INPUT]`.

use std::io::{self, BufReader, IsTerminal as _, Read, Write as _};
use std::path::PathBuf;

use clap::Args;
use service_backup_core::format::{DecryptingReader, from_io};
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
    #[arg(long = "key-file", required_unless_present = "identity_files")]
    key_files: Vec<PathBuf>,
    /// Identity files (written by `keygen --recipient`); the one the archive was made for
    /// is found by its recipient id. Repeatable.
    #[arg(long = "identity", value_name = "FILE")]
    identity_files: Vec<PathBuf>,
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
    let ring = keyring(None, &args.key_files, &args.identity_files)?
        .expect("clap requires a key file or an identity file");
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
        eprintln!(
            "extracted {} entries ({} bytes) into {}",
            stats.extracted.entries,
            stats.extracted.bytes,
            dir.display()
        );
        return Ok(Outcome::Success);
    }
    let counted = Counted {
        inner: input,
        bar: bar.clone(),
    };
    let mut reader = DecryptingReader::new(BufReader::with_capacity(256 * 1024, counted), &ring)?;
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
        io::copy(&mut reader, &mut out).map_err(|e| from_io(e, "decrypt the archive"))?;
        out.flush()
            .map_err(|e| from_io(e, "write standard output"))?;
        bar.finish();
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
