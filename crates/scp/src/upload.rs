//! Writing an object: a hidden temporary file beside its final name (`.NAME.tmp-RANDOM`),
//! renamed into place when complete.
//!
//! A block that fails because the connection broke is written again on a new connection,
//! at the same offset, once the server's copy is known to hold every earlier byte. An
//! aborted upload removes its temporary file; a dropped one removes it from a thread of its
//! own. Only a crash (of the agent, or of the connection for good) can leave a temporary
//! file behind: it is hidden, never listed, and may be removed by hand.

use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use service_backup_core::destination::Upload;
use service_backup_core::{Error, ErrorKind, Result};
use ssh2::{File, OpenFlags, OpenType};

use crate::blocking;
use crate::connection::{Connection, Remote};
use crate::errors;
use crate::files::{parent_of, temp_path_for};

/// An object being written, and the connection that writes it.
pub(crate) struct Transfer {
    remote: Arc<Remote>,
    conn: Option<Connection>,
    file: Option<File>,
    temp: String,
    target: String,
    /// Bytes the server has acknowledged.
    written: u64,
    /// The file was synced and closed: only the rename is left.
    closed: bool,
    /// Completed or discarded: nothing left to clean up.
    finished: bool,
}

impl Transfer {
    /// Creates the directories of `target` and its temporary file.
    pub(crate) fn begin(remote: &Arc<Remote>, target: &str) -> Result<Self> {
        let temp = temp_path_for(target)?;
        let (conn, file) = remote.take(|conn| {
            remote.ensure_dir(&conn.sftp, parent_of(target))?;
            conn.sftp
                .open_mode(
                    Path::new(&temp),
                    OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                    0o600,
                    OpenType::File,
                )
                .map_err(|e| errors::sftp(&remote.name, "create", &temp, &e))
        })?;
        Ok(Self {
            remote: remote.clone(),
            conn: Some(conn),
            file: Some(file),
            temp,
            target: target.to_string(),
            written: 0,
            closed: false,
            finished: false,
        })
    }

    /// Appends `data`; after a broken connection, resumes on a new one first.
    pub(crate) fn write_block(&mut self, data: &[u8]) -> Result<()> {
        if self.file.is_none() {
            self.resume().map_err(|e| {
                e.context(format!(
                    "the connection broke while writing {}, and the upload cannot resume",
                    self.target
                ))
            })?;
        }
        let file = self.file.as_mut().expect("opened above");
        match file.write_all(data) {
            Ok(()) => {
                self.written += data.len() as u64;
                Ok(())
            }
            Err(e) => {
                let err = errors::transfer(&self.remote.name, "write", &self.temp, &e);
                if err.is_temporary() {
                    // The connection is gone: the next attempt starts a new one.
                    self.file = None;
                    self.conn = None;
                }
                Err(err)
            }
        }
    }

    /// Reopens the temporary file on a new connection, at the end of what was written.
    fn resume(&mut self) -> Result<()> {
        let remote = &self.remote;
        let conn = remote.open()?;
        let stat = conn
            .sftp
            .stat(Path::new(&self.temp))
            .map_err(|e| errors::sftp(&remote.name, "look up", &self.temp, &e))?;
        let kept = stat.size.unwrap_or(0);
        if kept < self.written {
            return Err(Error::new(
                ErrorKind::Destination,
                format!(
                    "the upload of {} to {} cannot resume: the server kept {kept} of the {} \
                     bytes written",
                    self.target, remote.name, self.written
                ),
            )
            .with_hint("run the backup again"));
        }
        let mut file = conn
            .sftp
            .open_mode(
                Path::new(&self.temp),
                OpenFlags::WRITE,
                0o600,
                OpenType::File,
            )
            .map_err(|e| errors::sftp(&remote.name, "reopen", &self.temp, &e))?;
        file.seek(SeekFrom::Start(self.written))
            .map_err(|e| errors::transfer(&remote.name, "seek in", &self.temp, &e))?;
        self.conn = Some(conn);
        self.file = Some(file);
        Ok(())
    }

    /// Flushes the file to the server's disk, closes it and renames it into place.
    pub(crate) fn finish(&mut self) -> Result<()> {
        if !self.closed && self.file.is_none() {
            // The connection broke after the last write: reopen the file to sync and close it.
            self.resume()?;
        }
        if let Some(mut file) = self.file.take() {
            match file.fsync() {
                Ok(()) => {}
                // Not every server offers fsync@openssh.com; the close still flushes.
                Err(e) if errors::is_sftp(&e, errors::FX_OP_UNSUPPORTED) => {}
                Err(e) => {
                    self.conn = None;
                    return Err(errors::sftp(&self.remote.name, "sync", &self.temp, &e));
                }
            }
            if let Err(e) = file.close() {
                self.conn = None;
                return Err(errors::sftp(&self.remote.name, "close", &self.temp, &e));
            }
            self.closed = true;
        }
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.remote.open()?,
        };
        self.remote
            .rename_into_place(&conn.sftp, &self.temp, &self.target)?;
        self.finished = true;
        self.remote.release(conn);
        Ok(())
    }

    /// Removes the temporary file; with `reconnect`, on a new connection if need be.
    pub(crate) fn discard(&mut self, reconnect: bool) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        drop(self.file.take());
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None if reconnect => self.remote.open()?,
            None => return Ok(()),
        };
        self.remote.remove(&conn.sftp, &self.temp)?;
        self.finished = true;
        self.remote.release(conn);
        Ok(())
    }
}

/// Writes one small object at once (one attempt of [`crate::ScpDestination`]'s `put`).
pub(crate) fn put_whole(remote: &Arc<Remote>, target: &str, data: &[u8]) -> Result<()> {
    let mut transfer = Transfer::begin(remote, target)?;
    let result = transfer.write_block(data).and_then(|()| transfer.finish());
    if result.is_err() {
        // Best effort, on the same connection only: the retry writes a new temporary file.
        let _ = transfer.discard(false);
    }
    result
}

/// [`Upload`] over a [`Transfer`] on blocking threads, with retries.
pub(crate) struct ScpUpload {
    transfer: Arc<Mutex<Transfer>>,
    remote: Arc<Remote>,
    done: bool,
}

impl ScpUpload {
    pub(crate) fn new(remote: Arc<Remote>, transfer: Transfer) -> Self {
        Self {
            transfer: Arc::new(Mutex::new(transfer)),
            remote,
            done: false,
        }
    }

    /// Runs `op` on the transfer on a blocking thread, retrying temporary failures.
    async fn retried<F>(&self, what: &str, op: F) -> Result<()>
    where
        F: Fn(&mut Transfer) -> Result<()> + Clone + Send + 'static,
    {
        self.remote
            .settings
            .retry
            .run(what, || {
                let transfer = self.transfer.clone();
                let op = op.clone();
                blocking(move || {
                    let mut t = transfer.lock().unwrap_or_else(PoisonError::into_inner);
                    op(&mut t)
                })
            })
            .await
    }
}

#[async_trait]
impl Upload for ScpUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.retried("sftp write", move |t| t.write_block(&data))
            .await
    }

    async fn complete(mut self: Box<Self>) -> Result<()> {
        let result = self.retried("sftp complete", Transfer::finish).await;
        if result.is_ok() {
            self.done = true;
        }
        result
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.done = true;
        let transfer = self.transfer.clone();
        blocking(move || {
            let mut t = transfer.lock().unwrap_or_else(PoisonError::into_inner);
            t.discard(true)
        })
        .await
    }
}

impl Drop for ScpUpload {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Dropped before completion (a cancelled run): remove the temporary file from a
        // thread of its own, as a drop cannot wait. If the process exits first, the hidden
        // file stays behind, never listed.
        let transfer = self.transfer.clone();
        // Its warning keeps the run's fields (backup_guid, identifier).
        let span = tracing::Span::current();
        let _ = std::thread::Builder::new()
            .name("sftp-discard".into())
            .spawn(move || {
                let _entered = span.enter();
                let mut t = transfer.lock().unwrap_or_else(PoisonError::into_inner);
                if let Err(e) = t.discard(true) {
                    tracing::warn!(error = %e, "could not remove the temporary file of an abandoned upload");
                }
            });
    }
}
