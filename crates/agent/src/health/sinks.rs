//! Where health events go: Kafka (queued, never waited on), a file (one JSON line per
//! event, appended) and stdout.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;

use super::event::{Event, Names};
use super::kafka::KafkaSink;
use crate::config::HealthConfig;

/// The configured sinks.
pub struct Sinks {
    kafka: Option<(KafkaSink, String)>,
    file: Option<PathBuf>,
    stdout: bool,
    /// Whether the last write to the file failed, so that a failing file is logged once.
    file_failing: Arc<AtomicBool>,
    /// Whether a write to the file is in progress: at most one thread ever waits on it.
    file_busy: Arc<AtomicBool>,
    /// The events dropped because a write was still in progress.
    file_dropped: Arc<AtomicU64>,
}

impl Sinks {
    /// The sinks of `health`; the Kafka sender starts now and stops with `cancel`.
    pub fn start(health: &HealthConfig, names: &Names, cancel: CancellationToken) -> Self {
        let kafka = health.kafka.as_ref().map(|k| {
            let topic = format!("{}{}", k.topic_prefix, names.tenant());
            (KafkaSink::start(k, topic.clone(), cancel), topic)
        });
        Self {
            kafka,
            file: health.file.clone(),
            stdout: health.stdout,
            file_failing: Arc::default(),
            file_busy: Arc::default(),
            file_dropped: Arc::default(),
        }
    }

    /// The sinks in words, for the start-up line.
    pub fn describe(&self) -> String {
        let mut out = Vec::new();
        if let Some((_, topic)) = &self.kafka {
            out.push(format!("kafka topic {topic}"));
        }
        if let Some(file) = &self.file {
            out.push(format!("file {}", file.display()));
        }
        if self.stdout {
            out.push("stdout".to_string());
        }
        out.join(", ")
    }

    /// Sends `event` to every sink without waiting for a broker.
    pub fn publish(&self, event: &Event) {
        let Ok(line) = serde_json::to_vec(event) else {
            return;
        };
        if let Some((kafka, _)) = &self.kafka {
            kafka.push(line.clone());
        }
        if self.stdout {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&line).and_then(|()| out.write_all(b"\n"));
            let _ = out.flush();
        }
        if let Some(file) = self.file.clone() {
            // A write that hangs (a FIFO opened by a reader that never reads, a hung mount)
            // must not cost a thread per event: while one is in progress, events are dropped.
            if self.file_busy.swap(true, Ordering::AcqRel) {
                if self.file_dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::error!(file = %file.display(), "A write of a health event to the file is still in progress; events are dropped until it ends");
                }
                return;
            }
            let (failing, busy, dropped) = (
                self.file_failing.clone(),
                self.file_busy.clone(),
                self.file_dropped.clone(),
            );
            tokio::task::spawn_blocking(move || {
                let written = append_line(&file, &line);
                busy.store(false, Ordering::Release);
                match written {
                    Ok(()) => {
                        let lost = dropped.swap(0, Ordering::Relaxed);
                        if lost > 0 {
                            tracing::warn!(file = %file.display(), dropped = lost, "Health events are written to the file again");
                        }
                        failing.store(false, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if !failing.swap(true, Ordering::Relaxed) {
                            tracing::error!(file = %file.display(), error = %e, "Health events cannot be written to the file; check health.file and its folder");
                        }
                    }
                }
            });
        }
    }

    /// How many events were dropped because a write to the file was still in progress.
    pub fn file_dropped(&self) -> u64 {
        self.file_dropped.load(Ordering::Relaxed)
    }
}

/// Appends `line` and a newline to `path`, created with mode 0640. Refused: a symbolic
/// link, anything but a regular file (a FIFO, a device), a file of another owner, and one
/// that the group or others may write.
pub fn append_line(path: &Path, line: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    // O_NONBLOCK: opening a FIFO without a reader fails at once instead of waiting for one.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    // Checked on what was opened, so that nothing can be swapped in between.
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other(
            "it is not a regular file (a FIFO, a device or a socket is refused)",
        ));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(std::io::Error::other(format!(
            "it is owned by user id {}, not by the agent's user (id {euid})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(std::io::Error::other(format!(
            "its mode {:o} lets the group or others write it; at most 0644 is accepted",
            meta.mode() & 0o7777
        )));
    }
    let mut buf = line.to_vec();
    buf.push(b'\n');
    // One write, so that lines of two writers never interleave.
    file.write_all(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_file_sink_appends_lines_with_mode_0640_and_refuses_links() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("health.jsonl");
        append_line(&path, b"{\"a\":1}").unwrap();
        append_line(&path, b"{\"a\":2}").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "{mode:o}");
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(append_line(&link, b"x").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    }

    #[test]
    fn a_fifo_or_a_device_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.jsonl");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Without a reader, a blocking open would wait for one for ever.
        let started = std::time::Instant::now();
        assert!(append_line(&fifo, b"x").is_err());
        // With a reader, the open succeeds: the type of what was opened is checked.
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let e = append_line(&fifo, b"x").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let mut got = Vec::new();
        let _ = std::io::Read::read_to_end(&mut &reader, &mut got);
        assert!(got.is_empty(), "{got:?}");
        assert!(append_line(Path::new("/dev/null"), b"x").is_err());
    }

    #[test]
    fn a_file_others_may_write_or_of_another_owner_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("health.jsonl");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = append_line(&path, b"x").unwrap_err();
        assert!(e.to_string().contains("group or others write"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert!(append_line(&path, b"x").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        append_line(&path, b"x").unwrap();
        // Only root can give a file away; as another user, the owner check is the same
        // comparison and the mode rows above still run.
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let e = append_line(&path, b"y").unwrap_err();
            assert!(e.to_string().contains("owned by user id 65534"), "{e}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "x\n");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_event_finding_a_write_in_progress_is_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("health.jsonl");
        let sinks = Sinks {
            kafka: None,
            file: Some(path.clone()),
            stdout: false,
            file_failing: Arc::default(),
            file_busy: Arc::new(AtomicBool::new(true)),
            file_dropped: Arc::default(),
        };
        let event = Event {
            version: super::super::event::SCHEMA_VERSION,
            timestamp: String::new(),
            id: String::new(),
            platform: super::super::event::PLATFORM,
            tenant_name: String::new(),
            space_name: String::new(),
            cloud_service_name: String::new(),
            service_instance: super::super::event::ServiceInstance {
                id: String::new(),
                name: String::new(),
                instance_class_name: String::new(),
            },
            health_status: super::super::status::Level::Ok,
            health_description: String::new(),
        };
        for _ in 0..3 {
            sinks.publish(&event);
        }
        assert_eq!(sinks.file_dropped(), 3);
        assert!(!path.exists());
    }
}
