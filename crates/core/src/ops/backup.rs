//! A backup: one archive, read once, streamed to every destination at the same time.
//!
//! The archive is written on a blocking thread into a [`FanoutSink`], which cuts it into
//! blocks and hands each block to one bounded channel per destination; the slowest
//! destination sets the pace. A destination that fails is dropped and the others go on.
//! A destination makes the archive visible only when the whole stream arrived, and then
//! writes the manifest.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, NaiveDate, Utc};
use futures::future::join_all;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::destination::{Destination, Upload};
use crate::error::{Error, ErrorKind, Result};
use crate::format::BackupContext;
use crate::format::{PassphraseRecipient, Recipient};
use crate::layout::Layout;
use crate::manifest::{Compression, Encryption, MANIFEST_VERSION, Manifest};
use crate::pipeline::archive::{ArchiveSpec, ArchiveStats, check_source, write_bound_archive};
use crate::progress::Progress;

/// Size of the blocks handed to destinations.
pub const BLOCK_LEN: usize = 1024 * 1024;
/// Blocks queued per destination before the reader waits.
pub const QUEUE_DEPTH: usize = 4;

/// One destination of a backup run.
#[derive(Debug, Clone)]
pub struct Target {
    /// The name shown in logs (`destination_name`).
    pub name: String,
    /// The store.
    pub destination: Arc<dyn Destination>,
    /// Where backups go in it.
    pub layout: Layout,
}

/// What a backup run is: its name, time, origin and archive.
#[derive(Debug, Clone)]
pub struct BackupPlan {
    /// The backup's name.
    pub name: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// The local date of the start, for the `YYYY/MM/DD` path.
    pub date: NaiveDate,
    /// The instance making it.
    pub instance_id: String,
    /// The deployment, if configured.
    pub deployment: Option<String>,
    /// What to archive.
    pub archive: ArchiveSpec,
}

/// How one destination fared.
#[derive(Debug)]
pub struct DestinationOutcome {
    /// The destination's name.
    pub name: String,
    /// The key of the archive object.
    pub archive_key: String,
    /// Time from start to the manifest being written (or the failure).
    pub duration: Duration,
    /// The manifest written, or why not.
    pub result: Result<Manifest>,
}

enum Message {
    Block(Bytes),
    Finish(Arc<Manifest>),
}

/// Runs a backup to every target. Fails as a whole only if the archive could not be
/// written (unreadable source); otherwise each destination's outcome is returned.
///
/// When `cancel` fires, reading stops and every upload is aborted (nothing becomes
/// visible); the outcomes are then errors of kind [`ErrorKind::Cancelled`].
pub async fn run_backup(
    plan: BackupPlan,
    targets: Vec<Target>,
    progress: Arc<dyn Progress>,
    cancel: CancellationToken,
) -> Result<Vec<DestinationOutcome>> {
    let start = Instant::now();
    check_source(&plan.archive.source)?;
    let (compression, encrypted) = (plan.archive.compression, plan.archive.encrypted());
    let keys: Vec<String> = targets
        .iter()
        .map(|t| {
            t.layout
                .archive_key(plan.date, &plan.name, compression, encrypted)
        })
        .collect();
    let uploads = join_all(
        targets
            .iter()
            .zip(&keys)
            .map(|(t, k)| t.destination.put_multipart(k)),
    )
    .await;

    let mut senders = Vec::new();
    let mut consumers = Vec::new();
    let mut early = Vec::new();
    for ((target, key), upload) in targets.into_iter().zip(keys).zip(uploads) {
        match upload {
            Ok(upload) => {
                let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
                senders.push(tx);
                consumers.push(consume(target, key, upload, rx, start, cancel.clone()));
            }
            Err(e) => early.push(DestinationOutcome {
                name: target.name.clone(),
                archive_key: key,
                duration: start.elapsed(),
                result: Err(e.context(format!("destination {}", target.name))),
            }),
        }
    }

    let producer = async {
        if senders.is_empty() {
            return Ok(());
        }
        let sink = FanoutSink {
            senders,
            block: BytesMut::with_capacity(BLOCK_LEN),
            cancel: cancel.clone(),
        };
        let spec = plan.archive.clone();
        let progress = progress.clone();
        // The header binds the archive to this backup, so that a manifest pointing at
        // another backup's archive is caught on restore.
        let context = BackupContext {
            name: plan.name.clone(),
            instance_id: plan.instance_id.clone(),
            started_at: plan.started_at,
        };
        // In the run's span, so that the archive's warnings carry its backup_guid.
        let span = tracing::Span::current();
        let (stats, sink) = tokio::task::spawn_blocking(move || {
            span.in_scope(|| write_bound_archive(&spec, Some(&context), sink, &*progress))
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("the archive task failed: {e}")))??;
        let manifest = Arc::new(draft_manifest(&plan, &stats, encrypted));
        for tx in sink.senders {
            let _ = tx.send(Message::Finish(manifest.clone())).await;
        }
        Ok::<_, Error>(())
    };
    let (produced, mut outcomes) = tokio::join!(producer, join_all(consumers));
    match produced {
        // Every destination failed, or the run was cancelled: the outcomes say so.
        Err(e) if matches!(e.kind(), ErrorKind::Destination | ErrorKind::Cancelled) => {}
        other => other?,
    }
    outcomes.extend(early);
    Ok(outcomes)
}

/// What a destination's outcome says when the backup was cancelled.
const CANCELLED: &str = "the backup was cancelled, so nothing was stored";

async fn consume(
    target: Target,
    archive_key: String,
    mut upload: Box<dyn Upload>,
    mut rx: mpsc::Receiver<Message>,
    start: Instant,
    cancel: CancellationToken,
) -> DestinationOutcome {
    let result = async {
        loop {
            let message = tokio::select! {
                m = rx.recv() => m,
                () = cancel.cancelled() => {
                    drop(rx);
                    let _ = upload.abort().await;
                    return Err(Error::new(ErrorKind::Cancelled, CANCELLED));
                }
            };
            match message {
                Some(Message::Block(block)) => {
                    if let Err(e) = upload.write(block).await {
                        drop(rx);
                        let _ = upload.abort().await;
                        return Err(e);
                    }
                }
                Some(Message::Finish(draft)) => {
                    upload.complete().await?;
                    let mut manifest = (*draft).clone();
                    manifest.finished_at = Utc::now();
                    // Taken before the write, so never later than the store's own date: a
                    // prune that skips the backup until then never skips one already free.
                    manifest.locked_until = target
                        .destination
                        .immutability()
                        .map(|lock| lock.retain_until(manifest.finished_at));
                    let manifest_key =
                        Layout::sibling(&archive_key, &format!("{}.json", manifest.name));
                    if let Err(e) = target
                        .destination
                        .put(&manifest_key, Bytes::from(manifest.to_json()))
                        .await
                    {
                        // The archive without its manifest is invisible; remove it if we can.
                        let _ = target.destination.delete(&archive_key).await;
                        return Err(e);
                    }
                    return Ok(manifest);
                }
                None => {
                    let _ = upload.abort().await;
                    // The archive stops at a cancel too, and its end may be seen first.
                    let why = if cancel.is_cancelled() {
                        CANCELLED
                    } else {
                        "the archive was not completed, so nothing was stored"
                    };
                    return Err(Error::new(ErrorKind::Cancelled, why));
                }
            }
        }
    }
    .await;
    DestinationOutcome {
        result: result.map_err(|e| e.context(format!("destination {}", target.name))),
        name: target.name,
        archive_key,
        duration: start.elapsed(),
    }
}

fn draft_manifest(plan: &BackupPlan, stats: &ArchiveStats, encrypted: bool) -> Manifest {
    let ext = crate::layout::archive_ext(plan.archive.compression, encrypted);
    Manifest {
        format_version: MANIFEST_VERSION,
        name: plan.name.clone(),
        instance_id: plan.instance_id.clone(),
        deployment: plan.deployment.clone(),
        started_at: plan.started_at,
        finished_at: plan.started_at,
        source_folder: plan.archive.source.display().to_string(),
        file_count: stats.file_count,
        plain_bytes: stats.plain_bytes,
        stored_bytes: stats.stored_bytes,
        sha256: hex::encode(stats.sha256),
        archive: format!("{}{ext}", plan.name),
        compression: Compression {
            algorithm: plan.archive.compression.name().into(),
            level: plan.archive.compression_level,
        },
        // The key's id, or for recipients alone the first recipient's (for a password
        // alone, its id): the manifest names one of the stanzas that open the archive.
        encryption: plan
            .archive
            .key
            .as_ref()
            .map(crate::format::Key::id)
            .or_else(|| plan.archive.recipients.first().map(Recipient::id))
            .or_else(|| {
                plan.archive
                    .passphrase
                    .as_ref()
                    .map(PassphraseRecipient::id)
            })
            .map(|id| Encryption {
                algorithm: crate::format::ALGORITHM.into(),
                key_id: id.to_string(),
            }),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        locked_until: None,
    }
}

/// The blocking end of the fan-out: cuts the archive into blocks for every live destination.
struct FanoutSink {
    senders: Vec<mpsc::Sender<Message>>,
    block: BytesMut,
    cancel: CancellationToken,
}

impl FanoutSink {
    fn send_block(&mut self) -> io::Result<()> {
        if self.cancel.is_cancelled() {
            return Err(io::Error::other(Error::new(
                ErrorKind::Cancelled,
                "the backup was cancelled",
            )));
        }
        if self.block.is_empty() {
            return Ok(());
        }
        let block = self.block.split().freeze();
        self.block.reserve(BLOCK_LEN);
        // A closed channel is a destination that failed: drop it, the others go on.
        self.senders
            .retain(|tx| tx.blocking_send(Message::Block(block.clone())).is_ok());
        if self.senders.is_empty() {
            return Err(io::Error::other(Error::new(
                ErrorKind::Destination,
                "every destination failed, so the backup was stopped",
            )));
        }
        Ok(())
    }
}

impl Write for FanoutSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BLOCK_LEN - self.block.len());
        self.block.extend_from_slice(&data[..n]);
        if self.block.len() == BLOCK_LEN {
            self.send_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_block()
    }
}
