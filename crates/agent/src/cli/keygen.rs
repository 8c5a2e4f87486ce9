//! `service-backup keygen [--output FILE]`.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use service_backup_core::format::Key;
use service_backup_core::{Error, ErrorKind};

use crate::command::{CliResult, Outcome};

/// Writes a new key to `output` (mode 0600, never overwriting) or standard output.
pub fn run(output: Option<&Path>) -> CliResult {
    let key = Key::generate()?;
    let text = format!("{}\n", key.to_base64().as_str());
    match output {
        None => {
            print!("{text}");
        }
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        Error::new(ErrorKind::Usage, format!("{} already exists", path.display()))
                            .with_hint("keygen never overwrites a key; choose another path or remove the old key first")
                    } else {
                        Error::io("create key file", path, e)
                    }
                })?;
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io("write key file", path, e))?;
            eprintln!("wrote a new key with id {} to {}", key.id(), path.display());
        }
    }
    Ok(Outcome::Success)
}
