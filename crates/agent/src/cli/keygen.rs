//! `service-backup keygen [--output FILE]` and `service-backup keygen --recipient FILE`.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use service_backup_core::format::{Identity, Key};
use service_backup_core::{Error, ErrorKind};

use super::output::{KeygenResult, json, print_json};
use crate::command::{CliResult, Outcome};

/// Writes a new key to `output` (mode 0600, never overwriting) or standard output.
pub fn run(output: Option<&Path>) -> CliResult {
    let key = Key::generate()?;
    let text = format!("{}\n", key.to_base64().as_str());
    match output {
        None if json() => print_json(&KeygenResult {
            ok: true,
            key_id: Some(key.id().to_string()),
            key: Some(key.to_base64().to_string()),
            file: None,
            recipient: None,
            recipient_id: None,
        }),
        None => {
            print!("{text}");
        }
        Some(path) => {
            write_new(path, &text, "key")?;
            eprintln!("wrote a new key with id {} to {}", key.id(), path.display());
            if json() {
                print_json(&KeygenResult {
                    ok: true,
                    key_id: Some(key.id().to_string()),
                    key: None,
                    file: Some(path.display().to_string()),
                    recipient: None,
                    recipient_id: None,
                });
            }
        }
    }
    Ok(Outcome::Success)
}

/// Writes a new X25519 identity to `path` (mode 0600, never overwriting) and prints its
/// recipient string, which is what agents are configured with.
pub fn run_recipient(path: &Path) -> CliResult {
    let identity = Identity::generate()?;
    let recipient = identity.recipient();
    let text = zeroize::Zeroizing::new(format!(
        "# service-backup identity: it opens backups made for the recipient below.\n\
         # Keep it off the machines that make backups.\n\
         # recipient: {recipient}\n\
         {}\n",
        identity.to_text().as_str()
    ));
    write_new(path, &text, "identity")?;
    if json() {
        print_json(&KeygenResult {
            ok: true,
            key_id: None,
            key: None,
            file: Some(path.display().to_string()),
            recipient: Some(recipient.to_string()),
            recipient_id: Some(recipient.id().to_string()),
        });
    } else {
        println!("{recipient}");
    }
    eprintln!(
        "wrote a new identity with recipient id {} to {}; configure agents with \
         encryption.recipients: [{recipient}]",
        recipient.id(),
        path.display()
    );
    Ok(Outcome::Success)
}

/// Creates `path` with mode 0600 and writes `text`; refuses an existing file.
fn write_new(path: &Path, text: &str, what: &str) -> Result<(), Error> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::new(ErrorKind::Usage, format!("{} already exists", path.display()))
                    .with_hint(format!("keygen never overwrites a {what}; choose another path or remove the old {what} first"))
            } else {
                Error::io(&format!("create {what} file"), path, e)
            }
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(&format!("write {what} file"), path, e))
}
