//! Objects as files under the `destination` directory: key to path, `mkdir -p`, the
//! directory walk of `list`, the rename that makes an object visible, removal.
//!
//! Names starting with `.` (temporary files of uploads in progress) are never listed.
//! Everything here blocks: it is called from blocking threads only.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use chrono::DateTime;
use service_backup_core::destination::{ObjectMeta, sorts_wholly_before};
use service_backup_core::{Error, ErrorKind, Result};
use ssh2::{File, Sftp};

use crate::connection::{Connection, Remote};
use crate::errors;

/// The object `key` as a directory read stated it.
fn object_of(key: String, stat: &ssh2::FileStat) -> ObjectMeta {
    ObjectMeta {
        key,
        size: stat.size.unwrap_or(0),
        last_modified: stat
            .mtime
            .and_then(|t| DateTime::from_timestamp(i64::try_from(t).ok()?, 0)),
    }
}

impl Remote {
    /// The remote path of `key`; refuses keys that are not plain relative paths.
    pub(crate) fn path_of(&self, key: &str) -> Result<String> {
        let safe = !key.is_empty()
            && key
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if !safe {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("object key {key:?} is not a relative path"),
            ));
        }
        Ok(self.join(key))
    }

    /// `rel` below the `destination` directory (`rel` may be empty).
    fn join(&self, rel: &str) -> String {
        // SFTP paths without a leading slash start at the user's home directory.
        let root = self.settings.destination.trim();
        let root = root.strip_prefix("~/").unwrap_or(root);
        let root = if root == "~" { "" } else { root };
        let root = if root.len() > 1 {
            root.trim_end_matches('/')
        } else {
            root
        };
        match (root, rel) {
            ("", rel) => rel.to_string(),
            (root, "") => root.to_string(),
            ("/", rel) => format!("/{rel}"),
            (root, rel) => format!("{root}/{rel}"),
        }
    }

    /// Creates `dir` and its missing parents (`mkdir -p`).
    pub(crate) fn ensure_dir(&self, sftp: &Sftp, dir: &str) -> Result<()> {
        // Walk up to the deepest directory that exists, then create the rest downwards.
        let mut missing = Vec::new();
        let mut current = dir.to_string();
        loop {
            if current.is_empty() || current == "/" {
                break;
            }
            match sftp.stat(Path::new(&current)) {
                Ok(stat) if stat.is_dir() => break,
                Ok(_) => return Err(self.not_a_directory(&current)),
                Err(e) if errors::is_not_found(&e) => {}
                Err(e) => return Err(errors::sftp(&self.name, "look up", &current, &e)),
            }
            missing.push(current.clone());
            current = match current.rfind('/') {
                Some(0) => "/".to_string(),
                Some(i) => current[..i].to_string(),
                None => String::new(),
            };
        }
        for dir in missing.iter().rev() {
            if let Err(e) = sftp.mkdir(Path::new(dir), 0o755) {
                // Another writer may have created it meanwhile; or it is a file.
                match sftp.stat(Path::new(dir)) {
                    Ok(stat) if stat.is_dir() => {}
                    Ok(_) => return Err(self.not_a_directory(dir)),
                    Err(_) => {
                        return Err(errors::sftp(&self.name, "create directory", dir, &e));
                    }
                }
            }
        }
        Ok(())
    }

    fn not_a_directory(&self, path: &str) -> Error {
        Error::new(
            ErrorKind::Destination,
            format!(
                "cannot create directory {path} on {}: a file is in the way, it is not a directory",
                self.name
            ),
        )
        .with_hint("set `destination` to a directory, or a path where one can be created")
    }

    /// Makes `temp` visible as `target`.
    ///
    /// SFTP (version 3, as OpenSSH speaks it) refuses to rename onto an existing name, so
    /// an existing `target` is removed first: a reader may then miss the object for the
    /// time of one request, but never sees a partial one. Backups never overwrite (their
    /// names are unique); only a rewritten small object does.
    pub(crate) fn rename_into_place(&self, sftp: &Sftp, temp: &str, target: &str) -> Result<()> {
        let Err(first) = sftp.rename(Path::new(temp), Path::new(target), None) else {
            return Ok(());
        };
        let target_exists = sftp.lstat(Path::new(target)).is_ok();
        let temp_exists = sftp.lstat(Path::new(temp)).is_ok();
        match (target_exists, temp_exists) {
            (true, true) => {
                sftp.unlink(Path::new(target))
                    .map_err(|e| errors::sftp(&self.name, "replace", target, &e))?;
                sftp.rename(Path::new(temp), Path::new(target), None)
                    .map_err(|e| errors::sftp(&self.name, "rename into place", target, &e))
            }
            // An earlier attempt was done but its answer was lost.
            (true, false) => Ok(()),
            _ => Err(errors::sftp(
                &self.name,
                "rename into place",
                target,
                &first,
            )),
        }
    }

    /// Removes a file; a missing one is fine.
    pub(crate) fn remove(&self, sftp: &Sftp, path: &str) -> Result<()> {
        match sftp.unlink(Path::new(path)) {
            Ok(()) => Ok(()),
            Err(e) if errors::is_not_found(&e) => Ok(()),
            Err(e) => Err(errors::sftp(&self.name, "delete", path, &e)),
        }
    }

    /// The complete objects whose keys start with `prefix`, at any depth, sorted by key.
    pub(crate) fn list(&self, sftp: &Sftp, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.walk(sftp, prefix, false, "")
    }

    /// Like [`Remote::list`], only the keys after `start_after`: directories whose keys
    /// all sort before it are not read, so only the newest day folders are.
    pub(crate) fn list_after(
        &self,
        sftp: &Sftp,
        prefix: &str,
        start_after: &str,
    ) -> Result<Vec<ObjectMeta>> {
        self.walk(sftp, prefix, false, start_after)
    }

    /// The first `limit` complete objects under `prefix` after `start_after`, in key order,
    /// and whether more follow. The directories are walked in key order, those whose keys
    /// all sort before `start_after` unread, and the walk stops once a key past the page is
    /// seen, so that about a page (and the directory it ends in) is held at once.
    pub(crate) fn list_page(
        &self,
        sftp: &Sftp,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<(Vec<ObjectMeta>, bool)> {
        /// What the walk goes to next: a directory to read, or an object to hand out.
        enum Next {
            Dir(String),
            Object(ObjectMeta),
        }
        let limit = limit.max(1);
        let start = prefix.rfind('/').map_or("", |i| &prefix[..i]).to_string();
        let mut out = Vec::new();
        // The smallest key on top.
        let mut stack = vec![Next::Dir(start)];
        while let Some(next) = stack.pop() {
            let rel = match next {
                Next::Object(_) if out.len() == limit => return Ok((out, true)),
                Next::Object(object) => {
                    out.push(object);
                    continue;
                }
                Next::Dir(rel) => rel,
            };
            let dir = self.join(&rel);
            let dir = if dir.is_empty() { ".".to_string() } else { dir };
            let entries = match sftp.readdir(Path::new(&dir)) {
                Ok(entries) => entries,
                // Absent (nothing listed yet, or removed meanwhile), or a file.
                Err(e) if errors::is_not_found(&e) => continue,
                Err(e) => return Err(errors::sftp(&self.name, "list", &dir, &e)),
            };
            // Each child with the key it sorts by: a directory's keys all start with its
            // name and a `/`.
            let mut children = Vec::new();
            for (path, stat) in entries {
                let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                    continue;
                };
                if name.starts_with('.') {
                    continue;
                }
                let key = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                if stat.is_dir() {
                    let wanted = key.starts_with(prefix) || prefix.starts_with(&format!("{key}/"));
                    if wanted && !sorts_wholly_before(&key, start_after) {
                        children.push((format!("{key}/"), Next::Dir(key)));
                    }
                } else if stat.is_file() && key.starts_with(prefix) && key.as_str() > start_after {
                    let object = object_of(key.clone(), &stat);
                    children.push((key, Next::Object(object)));
                }
            }
            children.sort_by(|a, b| b.0.cmp(&a.0));
            stack.extend(children.into_iter().map(|(_, next)| next));
        }
        Ok((out, false))
    }

    /// The temporary files of uploads under `prefix` (their keys, relative to the
    /// destination directory), at any depth, sorted by key.
    pub(crate) fn list_temporary(&self, sftp: &Sftp, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.walk(sftp, prefix, true, "")
    }

    fn walk(
        &self,
        sftp: &Sftp,
        prefix: &str,
        temporary: bool,
        start_after: &str,
    ) -> Result<Vec<ObjectMeta>> {
        // Start at the deepest directory the prefix names, so a large tree is not walked.
        let start = prefix.rfind('/').map_or("", |i| &prefix[..i]).to_string();
        let mut out = Vec::new();
        let mut pending = vec![start];
        while let Some(rel) = pending.pop() {
            let dir = self.join(&rel);
            let dir = if dir.is_empty() { ".".to_string() } else { dir };
            let entries = match sftp.readdir(Path::new(&dir)) {
                Ok(entries) => entries,
                // Absent (nothing listed yet, or removed meanwhile), or a file.
                Err(e) if errors::is_not_found(&e) => continue,
                Err(e) => return Err(errors::sftp(&self.name, "list", &dir, &e)),
            };
            for (path, stat) in entries {
                let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                    continue;
                };
                let hidden = name.starts_with('.');
                if hidden && (!temporary || !stat.is_file()) {
                    continue;
                }
                let key = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                if stat.is_dir() {
                    let wanted = key.starts_with(prefix) || prefix.starts_with(&format!("{key}/"));
                    if wanted && !sorts_wholly_before(&key, start_after) {
                        pending.push(key);
                    }
                } else if stat.is_file()
                    && hidden == temporary
                    && (temporary || (key.starts_with(prefix) && key.as_str() > start_after))
                {
                    out.push(object_of(key, &stat));
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Opens `path` for reading from byte `start` on (cut at its end), with its size.
    pub(crate) fn open_reader(
        self: &Arc<Self>,
        path: &str,
        start: u64,
    ) -> Result<(RemoteReader, u64)> {
        let (conn, (file, size)) = self.take(|conn| {
            let mut file = conn
                .sftp
                .open(Path::new(path))
                .map_err(|e| errors::sftp(&self.name, "open", path, &e))?;
            let size = file
                .stat()
                .map_err(|e| errors::sftp(&self.name, "look up", path, &e))?
                .size
                .unwrap_or(0);
            if start > 0 {
                // A seek only sets the offset of the next read request: no round trip.
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start.min(size))).map_err(
                    |e| {
                        Error::new(
                            ErrorKind::Destination,
                            format!("{}: cannot seek in {path}: {e}", self.name),
                        )
                    },
                )?;
            }
            Ok((file, size))
        })?;
        let reader = RemoteReader {
            file: Some(file),
            conn: Some(conn),
            remote: self.clone(),
            healthy: true,
        };
        Ok((reader, size))
    }
}

/// A remote file being read, with the connection it needs; the connection goes back to the
/// pool when the reader is dropped, unless reading failed.
pub(crate) struct RemoteReader {
    file: Option<File>,
    conn: Option<Connection>,
    remote: Arc<Remote>,
    healthy: bool,
}

impl Read for RemoteReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let file = self.file.as_mut().expect("open until dropped");
        let result = file.read(buf);
        if result.is_err() {
            self.healthy = false;
        }
        result
    }
}

impl Drop for RemoteReader {
    fn drop(&mut self) {
        // Close the file before the connection can be used by anyone else.
        drop(self.file.take());
        if let Some(conn) = self.conn.take()
            && self.healthy
        {
            self.remote.release(conn);
        }
    }
}

/// The remote path of a temporary file beside `target`, hidden from listings.
pub(crate) fn temp_path_for(target: &str) -> Result<String> {
    let (dir, name) = match target.rfind('/') {
        Some(i) => (&target[..=i], &target[i + 1..]),
        None => ("", target),
    };
    let token = service_backup_core::random::hex_token(8)?;
    Ok(format!("{dir}.{name}.tmp-{token}"))
}

/// The directory part of a remote path (empty: the SFTP start directory).
pub(crate) fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_hidden_siblings() {
        let t = temp_path_for("/srv/b/2026/11/23/x.json").unwrap();
        assert!(t.starts_with("/srv/b/2026/11/23/.x.json.tmp-"), "{t}");
        assert_eq!(t.len(), "/srv/b/2026/11/23/.x.json.tmp-".len() + 16);
        assert!(temp_path_for("x").unwrap().starts_with(".x.tmp-"));
        assert_eq!(parent_of("/srv/x"), "/srv");
        assert_eq!(parent_of("/x"), "/");
        assert_eq!(parent_of("x"), "");
    }
}
