//! Where health events go: Kafka (queued, never waited on), a file (one JSON line per
//! event, appended) and stdout.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
            let failing = self.file_failing.clone();
            tokio::task::spawn_blocking(move || match append_line(&file, &line) {
                Ok(()) => {
                    failing.store(false, Ordering::Relaxed);
                }
                Err(e) => {
                    if !failing.swap(true, Ordering::Relaxed) {
                        tracing::error!(file = %file.display(), error = %e, "Health events cannot be written to the file; check health.file and its folder");
                    }
                }
            });
        }
    }
}

/// Appends `line` and a newline to `path`, created with mode 0640; a symbolic link there is
/// refused.
pub fn append_line(path: &Path, line: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
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
}
