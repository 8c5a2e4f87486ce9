//! Whether a configured command line's program exists and this user may execute it, found
//! as the agent runs it: the first space-separated token, a path when it holds a `/`,
//! otherwise looked up in `PATH`.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use nix::unistd::{AccessFlags, access, getuid};

use crate::executables;

/// A program that cannot run, with what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    /// What is wrong.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

impl Unusable {
    fn new(problem: String, fix: &str) -> Self {
        Self {
            problem,
            fix: fix.to_string(),
        }
    }
}

/// The program of `command_line` when it exists and this user may execute it, looked up in
/// `path_var` (the agent's `PATH`) when it names no folder.
pub fn find(command_line: &str, path_var: Option<OsString>) -> Result<PathBuf, Unusable> {
    let tokens = executables::tokens(command_line);
    let Some(program) = tokens.first() else {
        return Err(Unusable::new(
            "the command line is empty".to_string(),
            "give the executable's path, or remove the key",
        ));
    };
    if program.contains('/') {
        if !program.starts_with('/') {
            // The agent resolves it against its own working directory, which is not this
            // shell's and depends on how it was started (BOSH job, systemd unit).
            return Err(Unusable::new(
                format!(
                    "{program} is a relative path: it depends on the agent's working directory, not this one's"
                ),
                "give the executable's full path",
            ));
        }
        return usable(Path::new(program));
    }
    let dirs: Vec<PathBuf> = path_var
        .as_ref()
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    let mut first_problem = None;
    for dir in &dirs {
        let candidate = dir.join(program);
        if !candidate.exists() {
            continue;
        }
        match usable(&candidate) {
            Ok(found) => return Ok(found),
            Err(e) => {
                first_problem.get_or_insert(e);
            }
        }
    }
    Err(first_problem.unwrap_or_else(|| {
        let searched = path_var.map_or_else(
            || "PATH is not set".to_string(),
            |p| format!("PATH is {}", p.to_string_lossy()),
        );
        Unusable::new(
            format!("{program} is not found in PATH ({searched})"),
            "give the executable's full path in the configuration, or install it",
        )
    }))
}

/// `path` itself when it is a file this user may execute.
fn usable(path: &Path) -> Result<PathBuf, Unusable> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Unusable::new(
                format!("{shown} does not exist"),
                "fix the path in the configuration, or install the executable there",
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Unusable::new(
                format!(
                    "{shown} cannot be reached by this user (uid {}): a folder above it denies access",
                    getuid()
                ),
                "let the agent's user search the folders above it (chmod o+x, or its group)",
            ));
        }
        Err(e) => {
            return Err(Unusable::new(
                format!("{shown} cannot be examined: {}", plain(&e)),
                "fix the path in the configuration",
            ));
        }
    };
    if meta.is_dir() {
        return Err(Unusable::new(
            format!("{shown} is a folder, not an executable"),
            "give the executable's path in the configuration",
        ));
    }
    if access(path, AccessFlags::X_OK).is_err() {
        return Err(Unusable::new(
            format!(
                "{shown} is not executable by this user (uid {}; mode {:04o})",
                getuid(),
                meta.permissions().mode() & 0o7777
            ),
            "make it executable with chmod +x, or run the agent as a user that may execute it",
        ));
    }
    Ok(path.to_path_buf())
}

fn plain(e: &std::io::Error) -> String {
    let text = e.to_string();
    text.split(" (os error").next().unwrap_or(&text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_path_is_taken_as_it_is_with_its_arguments_split_off() {
        let dir = tempfile::tempdir().unwrap();
        let dump = file(dir.path(), "dump", 0o755);
        let line = format!("{} --all  /var/data", dump.display());
        assert_eq!(find(&line, None), Ok(dump));
    }

    #[test]
    fn a_bare_name_is_found_in_path_past_a_folder_where_it_cannot_run() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        file(a.path(), "dump", 0o644);
        let good = file(b.path(), "dump", 0o755);
        let path = std::env::join_paths([a.path(), b.path()]).unwrap();
        assert_eq!(find("dump now", Some(path.clone())), Ok(good));
        let missing = find("nodump", Some(path)).unwrap_err();
        assert!(
            missing.problem.starts_with("nodump is not found in PATH ("),
            "{missing:?}"
        );
        assert!(missing.fix.contains("full path"), "{missing:?}");
        // Only the one that cannot run: its problem, not "not found".
        let only = std::env::join_paths([a.path()]).unwrap();
        let err = find("dump", Some(only)).unwrap_err();
        assert!(err.problem.contains("is not executable"), "{err:?}");
    }

    #[test]
    fn a_relative_path_is_a_problem_even_when_it_exists_here() {
        let dir = tempfile::tempdir().unwrap();
        file(dir.path(), "dump", 0o755);
        // Relative to this process's working directory: the test's, not the agent's.
        let here = std::env::current_dir().unwrap();
        let rel = pathdiff(dir.path(), &here);
        let line = format!("{}/dump --all", rel.display());
        let err = find(&line, None).unwrap_err();
        assert_eq!(
            err.problem,
            format!(
                "{}/dump is a relative path: it depends on the agent's working directory, not this one's",
                rel.display()
            )
        );
        assert_eq!(err.fix, "give the executable's full path");
        let err = find("./dump", None).unwrap_err();
        assert!(
            err.problem.starts_with("./dump is a relative path"),
            "{err:?}"
        );
    }

    /// `to` relative to `from` (both absolute), by climbing to the root.
    fn pathdiff(to: &Path, from: &Path) -> PathBuf {
        let mut rel = PathBuf::new();
        for _ in from.components().skip(1) {
            rel.push("..");
        }
        rel.join(to.strip_prefix("/").unwrap())
    }

    #[test]
    fn missing_unexecutable_folder_and_empty_each_say_what_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let plain_file = file(dir.path(), "data", 0o644);
        let err = find(&plain_file.display().to_string(), None).unwrap_err();
        assert_eq!(
            err.problem,
            format!(
                "{} is not executable by this user (uid {}; mode 0644)",
                plain_file.display(),
                getuid()
            )
        );
        assert!(err.fix.contains("chmod +x"), "{err:?}");

        let gone = dir.path().join("gone");
        let err = find(&gone.display().to_string(), None).unwrap_err();
        assert_eq!(err.problem, format!("{} does not exist", gone.display()));
        assert!(err.fix.contains("fix the path"), "{err:?}");

        let err = find(&dir.path().display().to_string(), None).unwrap_err();
        assert!(
            err.problem.ends_with("is a folder, not an executable"),
            "{err:?}"
        );

        let err = find("   ", None).unwrap_err();
        assert_eq!(err.problem, "the command line is empty");
    }
}
