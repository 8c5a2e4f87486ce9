//! A restore into a folder that a stopped process (killed, or failed on a lost store) can
//! go on with: while it extracts, it marks how far it got in a checkpoint file (every
//! [`CHECKPOINT_EVERY`] bytes of the tar stream, once what was written before the mark is
//! on disk), and keeps its staging folder when it stops on a store's failure. The next
//! restore of the same backup (name and SHA-256) into the same target takes the staging
//! folder over and fetches the archive from the block holding the mark, through the
//! archive's index.
//!
//! What a resumed restore checks: the header (key and binding to the backup), the index's
//! authentication, every chunk's tag from the mark's block on, each block's gzip CRCs or
//! zstd checksum, and the tar stream's end; not the whole archive's SHA-256, which needs
//! every byte (the chunks before the mark were authenticated by the run that wrote them).
//! A plain archive, or one without an index, starts over.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tokio::runtime::Handle;

use crate::blocking;
use crate::catalog::BackupEntry;
use crate::destination::Destination;
use crate::error::{Error, ErrorKind, Result};
use crate::ops::browse::{IndexedBackup, open_blocking};
use crate::pipeline::ObjectReader;
use crate::pipeline::extract::{ExtractStats, Extractor, InFile, Mark};
use crate::pipeline::ranged::RangedRead;
use crate::pipeline::read::{Binding, Decryption, Expected, ReadStats, extract_rest, read_archive};
use crate::pipeline::staging::Staging;
use crate::progress::Progress;

/// Bytes of the tar stream between two checkpoints: at most this much is fetched and
/// written again after a stop (besides the block around the mark).
pub const CHECKPOINT_EVERY: u64 = 32 * 1024 * 1024;

/// A checkpoint file: how far a restore of a backup into a target got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    /// The backup's name.
    backup: String,
    /// The SHA-256 its manifest records for its archive.
    sha256: String,
    /// The size its manifest records for its archive.
    stored_bytes: u64,
    /// The target's real path.
    target: PathBuf,
    /// The staging folder the restore extracts into.
    staging: PathBuf,
    /// Offset in the tar stream of the first entry not yet restored.
    tar_offset: u64,
    /// Entries restored before it.
    entries: u64,
    /// Bytes of file content restored before it.
    bytes: u64,
    /// The file it falls in, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    in_file: Option<FileMark>,
}

/// A file partly restored at a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct FileMark {
    /// Offset in the tar stream of its content.
    data_start: u64,
    /// Bytes of it restored.
    written: u64,
}

impl Checkpoint {
    fn of(&self, entry: &BackupEntry) -> bool {
        self.backup == entry.manifest.name
            && self.sha256.eq_ignore_ascii_case(&entry.manifest.sha256)
            && self.stored_bytes == entry.manifest.stored_bytes
    }

    fn mark(&self) -> Mark {
        Mark {
            tar_offset: self.tar_offset,
            stats: ExtractStats {
                entries: self.entries,
                bytes: self.bytes,
            },
            in_file: self.in_file.map(|f| InFile {
                data_start: f.data_start,
                written: f.written,
            }),
        }
    }
}

/// The checkpoint file of restores into `target`, in `folder`: named by the target's
/// absolute path, so that restores into two targets never share one.
fn checkpoint_file(folder: &Path, target: &Path) -> PathBuf {
    let absolute = std::path::absolute(target).unwrap_or_else(|_| target.to_path_buf());
    let digest = sha2::Sha256::digest(absolute.as_os_str().as_encoded_bytes());
    folder.join(format!("restore-{}.json", hex::encode(&digest[..12])))
}

/// The checkpoint in `file`, if it is one this agent wrote: a regular file (never read
/// through a symbolic link) of the agent's own user that no one else may read or write.
fn load(file: &Path) -> Option<Checkpoint> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let mut opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(file)
        .ok()?;
    let meta = opened.metadata().ok()?;
    if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o077 != 0
    {
        tracing::warn!(path = %file.display(), "a restore checkpoint that this agent did not write (not a file of its own user, or one others may read or write) is ignored");
        return None;
    }
    let mut text = Vec::new();
    opened.read_to_end(&mut text).ok()?;
    serde_json::from_slice(&text).ok()
}

fn remove(file: &Path) {
    if let Err(e) = std::fs::remove_file(file)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %file.display(), error = %e, "the restore's checkpoint could not be removed");
    }
}

/// Writes the checkpoints of a restore on a thread of its own, so that extraction never
/// waits for the state folder's disk; a mark that comes while the last is being written is
/// dropped (the next one will do).
///
/// Nothing is forced to disk: a killed process leaves what it wrote in the page cache. After
/// a crash of the machine, a file written before the mark may be shorter than it was; a
/// resumed restore checks that every file before the mark has its size first, and starts
/// over otherwise.
struct Checkpointer {
    marks: SyncSender<Mark>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts writing the checkpoints of the restore `template` describes into `file`;
    /// when that cannot be (the state folder cannot be written), the restore goes on
    /// without them, saying so.
    fn start(file: PathBuf, template: Checkpoint) -> (Self, SyncSender<Mark>) {
        let (tx, rx) = sync_channel::<Mark>(1);
        let thread = Self::spawn(file, template, rx)
            .inspect_err(|e| {
                tracing::warn!(error = %e, "the restore keeps no checkpoint: if it stops, the next restore starts over");
            })
            .ok();
        (
            Self {
                marks: tx.clone(),
                thread,
            },
            tx,
        )
    }

    fn spawn(
        file: PathBuf,
        template: Checkpoint,
        rx: std::sync::mpsc::Receiver<Mark>,
    ) -> Result<JoinHandle<()>> {
        if let Some(folder) = file.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(folder)
                .map_err(|e| Error::io("create", folder, e))?;
        }
        std::thread::Builder::new()
            .name("restore-checkpoint".into())
            .spawn(move || {
                let mut warned = false;
                for mark in rx {
                    if let Err(e) = write(&file, &template, mark)
                        && !warned
                    {
                        warned = true;
                        tracing::warn!(path = %file.display(), error = %e, "the restore's checkpoint could not be written: if it stops, the next restore starts over");
                    }
                }
            })
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot start a thread: {e}")))
    }

    /// Waits for the last checkpoint to be written, once the extraction is over.
    fn finish(self) {
        drop(self.marks);
        if let Some(thread) = self.thread {
            let _ = thread.join();
        }
    }
}

/// Writes `mark` into the checkpoint `file`, whole or not at all.
fn write(file: &Path, template: &Checkpoint, mark: Mark) -> std::io::Result<()> {
    let checkpoint = Checkpoint {
        tar_offset: mark.tar_offset,
        entries: mark.stats.entries,
        bytes: mark.stats.bytes,
        in_file: mark.in_file.map(|f| FileMark {
            data_start: f.data_start,
            written: f.written,
        }),
        ..template.clone()
    };
    let partial = file.with_extension("json.partial");
    // A new file every time (never written through a link planted at its name).
    match std::fs::remove_file(&partial) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .mode(0o600)
        .open(&partial)?;
    out.write_all(&serde_json::to_vec(&checkpoint).map_err(std::io::Error::other)?)?;
    drop(out);
    std::fs::rename(&partial, file)
}

/// The extractor of a restore into `staging`, handing its marks to `marks`.
fn marked(staging: &Staging, plain_bytes: u64, marks: SyncSender<Mark>) -> Extractor {
    Extractor::into_staging(staging)
        .with_byte_limit(Some(plain_bytes))
        .with_marks(CHECKPOINT_EVERY, move |mark| {
            match marks.try_send(mark) {
                Ok(()) | Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
            }
            Ok(())
        })
}

/// Whether a restore that failed with `e` may be resumed: it stopped on the store (a lost
/// connection, retries spent) or was cancelled, not on the archive or the local disk.
fn resumable(e: &Error) -> bool {
    e.is_temporary() || matches!(e.kind(), ErrorKind::Destination | ErrorKind::Cancelled)
}

/// Restores `entry` from `dest` into the folder `target` (replacing a folder that is not
/// empty only with `replace`), as [`super::restore_backup`] does, keeping checkpoints in
/// the folder `checkpoints`: a restore of the same backup into the same target that
/// stopped goes on where it stopped.
pub async fn restore_resumable(
    dest: Arc<dyn Destination>,
    entry: &BackupEntry,
    decryption: &Decryption,
    target: &Path,
    replace: bool,
    checkpoints: &Path,
    progress: Arc<dyn Progress>,
) -> Result<ReadStats> {
    let file = checkpoint_file(checkpoints, target);
    let prior = load(&file).filter(|c| c.of(entry));
    let staging = {
        let (target, adopt) = (
            target.to_path_buf(),
            prior.as_ref().map(|c| c.staging.clone()),
        );
        blocking(move || Staging::prepare_adopting(&target, replace, adopt.as_deref())).await?
    };
    let mut decryption = decryption.clone();
    decryption.bound_to = Binding::Backup(entry.manifest.context());
    let template = Checkpoint {
        backup: entry.manifest.name.clone(),
        sha256: entry.manifest.sha256.clone(),
        stored_bytes: entry.manifest.stored_bytes,
        target: staging.target().to_path_buf(),
        staging: staging.dir().to_path_buf(),
        tar_offset: 0,
        entries: 0,
        bytes: 0,
        in_file: None,
    };
    let prior = prior.filter(|c| staging.adopted() && c.target == template.target);
    let handle = Handle::current();
    let entry = entry.clone();
    blocking(move || {
        let staging = match prior {
            Some(prior) => {
                match resume(
                    &dest,
                    &entry,
                    &decryption,
                    staging,
                    &prior,
                    &file,
                    &template,
                    handle.clone(),
                    &*progress,
                )? {
                    Ok(stats) => return Ok(stats),
                    Err(staging) => staging,
                }
            }
            None if staging.adopted() => fresh(staging)?,
            None => staging,
        };
        from_the_start(
            &dest,
            &entry,
            &decryption,
            staging,
            &file,
            template,
            &handle,
            &*progress,
        )
    })
    .await
}

/// `staging` emptied, for a restore from the start.
fn fresh(staging: Staging) -> Result<Staging> {
    let (target, replace) = (staging.target().to_path_buf(), true);
    staging.discard();
    Staging::prepare_adopting(&target, replace, None)
}

/// A restore from the start of the archive, marking its progress.
#[allow(clippy::too_many_arguments)]
fn from_the_start(
    dest: &Arc<dyn Destination>,
    entry: &BackupEntry,
    decryption: &Decryption,
    staging: Staging,
    file: &Path,
    template: Checkpoint,
    handle: &Handle,
    progress: &dyn Progress,
) -> Result<ReadStats> {
    remove(file);
    let size = entry.manifest.stored_bytes;
    progress.set_total(size);
    let object =
        match handle.block_on(RangedRead::default().read(dest.clone(), &entry.archive_key, size)) {
            Ok(o) => o,
            Err(e) => {
                staging.discard();
                return Err(e);
            }
        };
    let reader = {
        let _entered = handle.enter();
        ObjectReader::new(object)
    };
    let expected = Expected {
        sha256: entry.manifest.sha256.clone(),
        stored_bytes: size,
        plain_bytes: Some(entry.manifest.plain_bytes),
    };
    let (checkpointer, marks) = Checkpointer::start(file.to_path_buf(), template);
    let extractor = marked(&staging, entry.manifest.plain_bytes, marks);
    let read = read_archive(reader, decryption, Some(&expected), extractor, progress);
    checkpointer.finish();
    settle(read, staging, file)
}

/// Commits `staging` after a restore that succeeded; after one that failed, keeps it and
/// the checkpoint when it may be resumed, and removes both otherwise.
fn settle(read: Result<ReadStats>, staging: Staging, file: &Path) -> Result<ReadStats> {
    match read {
        Ok(stats) => {
            let committed = staging.commit();
            remove(file);
            committed.map(|()| stats)
        }
        Err(e) if resumable(&e) && load(file).is_some() => {
            tracing::info!(staging = %staging.dir().display(), "the restore stopped on its store: the next restore of this backup into the same target goes on where it stopped");
            Err(e)
        }
        Err(e) => {
            staging.discard();
            remove(file);
            Err(e)
        }
    }
}

/// Goes on with the restore `prior` describes in its adopted `staging` folder; hands the
/// staging folder back, emptied, when the archive cannot be resumed there.
#[allow(clippy::too_many_arguments)]
fn resume(
    dest: &Arc<dyn Destination>,
    entry: &BackupEntry,
    decryption: &Decryption,
    staging: Staging,
    prior: &Checkpoint,
    file: &Path,
    template: &Checkpoint,
    handle: Handle,
    progress: &dyn Progress,
) -> Result<Result<ReadStats, Staging>> {
    let backup = match open_blocking(dest.clone(), entry, decryption, handle) {
        Ok(b) => b,
        Err(e) if resumable(&e) => return Err(e),
        Err(e) => {
            staging.discard();
            remove(file);
            return Err(e);
        }
    };
    let Ok(Some((point, partial))) = backup.resume_point(&prior.mark()) else {
        tracing::info!(
            "the stopped restore cannot be resumed (the archive is not encrypted or has no index): starting over"
        );
        return fresh(staging).map(Err);
    };
    // The index keeps names that are not UTF-8 with U+FFFD in place of their bad bytes:
    // folders and links before the mark, remade from it, would get the wrong names.
    let lossy = backup.entries_before(point).any(|e| {
        e.is_ok_and(|e| {
            e.path.contains(char::REPLACEMENT_CHARACTER)
                || e.link
                    .is_some_and(|l| l.contains(char::REPLACEMENT_CHARACTER))
        })
    });
    if lossy {
        tracing::info!(
            "the stopped restore cannot be resumed (names before where it stopped are not UTF-8, which the archive's index does not keep exactly): starting over"
        );
        return fresh(staging).map(Err);
    }
    let size = entry.manifest.stored_bytes;
    tracing::info!(
        backup_name = %entry.manifest.name,
        tar_offset = prior.tar_offset,
        entries = prior.entries,
        from_byte = point.stored_start,
        of_bytes = size,
        "resuming the restore where it stopped"
    );
    let (checkpointer, marks) = Checkpointer::start(file.to_path_buf(), template.clone());
    let extractor = match marked(&staging, entry.manifest.plain_bytes, marks).resumed(
        prior.mark(),
        backup.entries_before(point),
        partial,
    ) {
        Ok(extractor) => extractor,
        Err(e) => {
            checkpointer.finish();
            tracing::warn!(error = %e, "what the stopped restore wrote is not all there: starting over");
            return fresh(staging).map(Err);
        }
    };
    progress.set_total(size);
    progress.advance(point.stored_start);
    let read = resumed_read(&backup, extractor, point, progress, entry);
    checkpointer.finish();
    settle(read, staging, file).map(Ok)
}

/// Reads the rest of `backup` from `point` with `extractor`, resumed there.
fn resumed_read(
    backup: &IndexedBackup,
    extractor: Extractor,
    point: crate::ops::browse::ResumePoint,
    progress: &dyn Progress,
    entry: &BackupEntry,
) -> Result<ReadStats> {
    let rest = backup.rest(point, progress)?;
    let extracted = extract_rest(rest, point.tar_skip, extractor)?;
    Ok(ReadStats {
        extracted,
        stored_bytes: entry.manifest.stored_bytes,
        // Not read whole, so not computed: each chunk read was authenticated instead.
        sha256: String::new(),
        key_id: backup.key_id(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(dir: &Path) -> Checkpoint {
        Checkpoint {
            backup: "b".into(),
            sha256: "00".into(),
            stored_bytes: 1,
            target: dir.join("t"),
            staging: dir.join(".s"),
            tar_offset: 0,
            entries: 0,
            bytes: 0,
            in_file: None,
        }
    }

    /// A link planted at the partial file's name, or at the checkpoint's, is neither
    /// written through nor read.
    #[test]
    fn a_checkpoint_is_never_written_or_read_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let file = dir.path().join("restore-x.json");
        std::os::unix::fs::symlink(&victim, file.with_extension("json.partial")).unwrap();
        let mark = Mark {
            tar_offset: 512,
            stats: ExtractStats::default(),
            in_file: None,
        };
        write(&file, &checkpoint(dir.path()), mark).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(load(&file).unwrap().tar_offset, 512);

        std::fs::remove_file(&file).unwrap();
        let planted = serde_json::to_vec(&checkpoint(dir.path())).unwrap();
        std::fs::write(&victim, planted).unwrap();
        std::os::unix::fs::symlink(&victim, &file).unwrap();
        assert!(load(&file).is_none());
    }

    /// A checkpoint others may read or write is not taken as this agent's.
    #[test]
    fn a_checkpoint_others_may_write_is_ignored() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("restore-x.json");
        std::fs::write(&file, serde_json::to_vec(&checkpoint(dir.path())).unwrap()).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(load(&file).is_none());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load(&file).is_some());
    }
}
