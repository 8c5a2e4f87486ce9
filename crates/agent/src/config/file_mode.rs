//! The modes of the files the agent trusts, checked as ssh checks its own: the bearer tokens
//! file and the API's TLS key hold secrets, the configuration names the commands the agent
//! runs. Encryption key files have the same rule in the core (`check_key_file_mode`).
//!
//! A secret file may be read by its owner and its group (deployment tools render job files
//! as `root:<agent group>` mode 0640), never by others, and written by its owner only. The
//! configuration may be read by anyone (the original release's fixtures are 0444 and it is
//! often shown to operators) but written by its owner only, as ssh requires of
//! `~/.ssh/config`: whoever may change it chooses what the agent runs.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use zeroize::Zeroizing;

/// Why a secret file (`what` names its key, e.g. `api.bearer_tokens_file`) may not be used,
/// judged from its metadata.
fn secret_problem(what: &str, path: &Path, meta: &std::fs::Metadata) -> Option<String> {
    if !meta.is_file() {
        return Some(format!(
            "{what} {}: it is not a regular file",
            path.display()
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    let who = if mode & 0o006 != 0 {
        "other users may read or write it"
    } else if mode & 0o020 != 0 {
        "its group may write it"
    } else {
        return None;
    };
    Some(format!(
        "{what} {}: {who} (mode {mode:04o}); run `chmod 600 {}` (or 640 when the agent reads \
         it through its group)",
        path.display(),
        path.display()
    ))
}

/// The problem of the secret file at `path`, if it exists and is open to others; a file
/// that cannot be read is left to the one that reads it.
pub fn secret_file_problem(what: &str, path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    secret_problem(what, path, &meta)
}

/// Reads a secret file whole, after checking the mode of the file actually opened; the
/// text is wiped from memory when dropped.
pub fn read_secret_file(what: &str, path: &Path) -> Result<Zeroizing<String>, String> {
    // The path is checked first so that a FIFO is never opened (that would block), then
    // the opened file again, so that a file swapped in between is not read.
    if let Some(problem) = secret_file_problem(what, path) {
        return Err(problem);
    }
    let mut file = std::fs::File::open(path)
        .map_err(|e| format!("{what} {}: cannot read it: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{what} {}: cannot read it: {e}", path.display()))?;
    if let Some(problem) = secret_problem(what, path, &meta) {
        return Err(problem);
    }
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text)
        .map_err(|e| format!("{what} {}: cannot read it: {e}", path.display()))?;
    Ok(text)
}

/// The problem of a configuration file that users other than its owner may change.
pub fn config_file_problem(path: &Path) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o022 != 0).then(|| {
        format!(
            "the configuration file {}: users other than its owner may change it (mode \
             {mode:04o}), and it names the commands the agent runs; run `chmod go-w {}`",
            path.display(),
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_open_to_others_and_writable_configurations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "t\n").unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o640, true),
            (0o400, true),
            (0o644, false),
            (0o660, false),
            (0o602, false),
        ] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            let problem = secret_file_problem("api.bearer_tokens_file", &file);
            assert_eq!(problem.is_none(), ok, "{mode:o}: {problem:?}");
            assert_eq!(read_secret_file("x", &file).is_ok(), ok, "{mode:o}");
            if let Some(p) = problem {
                assert!(
                    p.contains(&format!("(mode {mode:04o})")) && p.contains("chmod 600"),
                    "{p}"
                );
            }
        }
        for (mode, ok) in [(0o644, true), (0o444, true), (0o640, true), (0o664, false)] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            let problem = config_file_problem(&file);
            assert_eq!(problem.is_none(), ok, "{mode:o}: {problem:?}");
        }
        let not_a_file = secret_file_problem("api.tls.key_file", dir.path()).unwrap();
        assert!(
            not_a_file.ends_with("it is not a regular file"),
            "{not_a_file}"
        );
        assert!(secret_file_problem("x", &dir.path().join("missing")).is_none());
    }
}
