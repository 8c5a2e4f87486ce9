//! The `parachute` datapoints of the a9s metrics API, and its threshold
//! (`max_disk_threshold`), settable at run time and kept across restarts in the state dir.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::Point;
use super::system::Disk;

/// The file in the state dir that keeps a threshold set through the API.
pub const THRESHOLD_FILE: &str = "parachute-threshold.json";

/// What the threshold file holds, and what the threshold routes answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Threshold {
    /// The used share of a disk, in percent, at which parachute activates; 0: never.
    pub max_disk_threshold: u64,
}

/// The parachute: its threshold and which disks are past it, to log each crossing once.
#[derive(Debug)]
pub struct Parachute {
    file: Option<PathBuf>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Set through the API (and kept in the file), else `None`: the configuration's.
    set: Option<u64>,
    configured: u64,
    activated: HashSet<String>,
}

/// The most of the threshold file read: it holds one small JSON object.
const MAX_FILE_BYTES: u64 = 256;

/// The bytes of `path` if it is a small regular file, `None` if there is none. A symbolic
/// link, FIFO or device is refused unopened or unread: a FIFO would block start-up.
fn read_small_file(path: &Path) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err("it is a symbolic link".into());
        }
        Err(e) => return Err(e.to_string()),
    };
    if !file.metadata().map_err(|e| e.to_string())?.is_file() {
        return Err("it is not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("it is larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(Some(bytes))
}

impl Parachute {
    /// A parachute with `configured` as its threshold, unless `state_dir` keeps one set
    /// through the API (a file that cannot be read is logged and ignored).
    pub fn load(state_dir: Option<&Path>, configured: u64) -> Self {
        let file = state_dir.map(|d| d.join(THRESHOLD_FILE));
        let set = file.as_deref().and_then(|f| match read_small_file(f) {
            Ok(Some(bytes)) => match serde_json::from_slice::<Threshold>(&bytes) {
                Ok(t) if t.max_disk_threshold <= 100 => Some(t.max_disk_threshold),
                _ => {
                    tracing::warn!(file = %f.display(), "the parachute threshold file is not valid; the configured threshold is used");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(file = %f.display(), error = %e, "the parachute threshold file cannot be read; the configured threshold is used");
                None
            }
        });
        Self {
            file,
            state: Mutex::new(State {
                set,
                configured,
                activated: HashSet::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The threshold in force.
    pub fn threshold(&self) -> u64 {
        let s = self.lock();
        s.set.unwrap_or(s.configured)
    }

    /// Whether the threshold in force was set through the API.
    pub fn is_set(&self) -> bool {
        self.lock().set.is_some()
    }

    /// Takes the configuration's threshold (after a reload); one set through the API stays.
    pub fn configure(&self, configured: u64) {
        self.lock().configured = configured;
    }

    /// Sets the threshold (0 to 100) and keeps it in the state dir, replacing the file at
    /// once so that a crash leaves the old or the new value, never half of one.
    pub fn set(&self, threshold: u64) -> std::io::Result<()> {
        if threshold > 100 {
            return Err(std::io::Error::other("the threshold is over 100"));
        }
        if let Some(file) = &self.file {
            let dir = file.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let mut temp = tempfile::NamedTempFile::new_in(dir)?;
            serde_json::to_writer(
                &mut temp,
                &Threshold {
                    max_disk_threshold: threshold,
                },
            )?;
            temp.write_all(b"\n")?;
            temp.as_file().sync_all()?;
            temp.persist(file).map_err(|e| e.error)?;
        }
        self.lock().set = Some(threshold);
        Ok(())
    }

    /// The parachute datapoints of `disks`, logging `Limit reached for: <name> disk` for
    /// each disk that crossed the threshold since the last call (and once only until it
    /// falls below it again).
    pub fn points(&self, disks: &[Disk], out: &mut Vec<Point>) {
        let mut state = self.lock();
        let threshold = state.set.unwrap_or(state.configured);
        let mut points = Vec::new();
        let mut any_error = false;
        let mut any_activated = false;
        for d in disks {
            let name = &d.name;
            let Some(u) = d.usage else {
                any_error = true;
                points.push(Point::new(format!("parachute.disk.{name}.error"), 1));
                continue;
            };
            let percent = u.used_percent();
            // 0 switches the check off, as a9s parachute's usage_limit does.
            let activated = threshold > 0 && percent >= threshold;
            any_activated |= activated;
            if activated {
                if state.activated.insert(name.clone()) {
                    tracing::error!(
                        disk = %name,
                        used_percent = percent,
                        max_disk_threshold = threshold,
                        "Limit reached for: {name} disk"
                    );
                }
            } else {
                state.activated.remove(name);
            }
            let p = |what: &str, v: u64| {
                Point::new(format!("parachute.disk.{name}.{what}"), i128::from(v))
            };
            points.push(p("error", 0));
            points.push(p("total", u.total));
            points.push(p("used", u.used));
            points.push(p("used_percent", percent));
            points.push(p("used_threshold", threshold));
            points.push(p("free", u.free));
            points.push(p("activated", u64::from(activated)));
        }
        // A disk no longer reported is no longer past the threshold.
        state
            .activated
            .retain(|n| disks.iter().any(|d| &d.name == n));
        out.push(Point::new("parachute.error", i128::from(any_error)));
        out.push(Point::new("parachute.activated", i128::from(any_activated)));
        out.extend(points);
    }
}

/// A threshold as a client sends it: a whole number from 0 to 100.
pub fn parse_threshold(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) || raw.len() > 3 {
        return None;
    }
    raw.parse().ok().filter(|t| *t <= 100)
}

#[cfg(test)]
mod tests {
    use super::super::system::Usage;
    use super::*;

    fn disk(name: &str, used: u64) -> Disk {
        Disk {
            name: name.to_string(),
            usage: Some(Usage {
                total: 100,
                used,
                free: 100 - used,
            }),
        }
    }

    /// A writer into a shared buffer, for the log lines of a test.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `f` logs, as text.
    fn logged(f: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    fn value(points: &[Point], path: &str) -> Option<i128> {
        points.iter().find(|p| p.path == path).map(|p| p.value)
    }

    #[test]
    fn a_crossing_activates_and_is_logged_once() {
        let p = Parachute::load(None, 80);
        let logs = logged(|| {
            let mut out = Vec::new();
            p.points(&[disk("persistent", 79), disk("ephemeral", 10)], &mut out);
            assert_eq!(value(&out, "parachute.activated"), Some(0));
            assert_eq!(value(&out, "parachute.disk.persistent.activated"), Some(0));
            assert_eq!(
                value(&out, "parachute.disk.persistent.used_threshold"),
                Some(80)
            );
            for _ in 0..3 {
                let mut out = Vec::new();
                p.points(&[disk("persistent", 85), disk("ephemeral", 10)], &mut out);
                assert_eq!(value(&out, "parachute.activated"), Some(1));
                assert_eq!(value(&out, "parachute.disk.persistent.activated"), Some(1));
                assert_eq!(value(&out, "parachute.disk.ephemeral.activated"), Some(0));
            }
        });
        assert_eq!(
            logs.matches("Limit reached for: persistent disk").count(),
            1,
            "{logs}"
        );
        // Below, then past it again: a second crossing, a second line.
        let again = logged(|| {
            p.points(&[disk("persistent", 50)], &mut Vec::new());
            p.points(&[disk("persistent", 80)], &mut Vec::new());
        });
        assert_eq!(
            again.matches("Limit reached for: persistent disk").count(),
            1,
            "{again}"
        );
        assert!(!logs.contains("ephemeral disk") && !again.contains("ephemeral disk"));
    }

    #[test]
    fn zero_switches_the_check_off_and_errors_are_flagged() {
        let p = Parachute::load(None, 0);
        let mut out = Vec::new();
        let broken = Disk {
            name: "data".into(),
            usage: None,
        };
        p.points(&[disk("persistent", 100), broken], &mut out);
        assert_eq!(value(&out, "parachute.activated"), Some(0));
        assert_eq!(value(&out, "parachute.error"), Some(1));
        assert_eq!(value(&out, "parachute.disk.data.error"), Some(1));
        assert_eq!(value(&out, "parachute.disk.persistent.error"), Some(0));
    }

    #[test]
    fn a_threshold_set_is_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let p = Parachute::load(Some(dir.path()), 80);
        assert_eq!((p.threshold(), p.is_set()), (80, false));
        p.set(42).unwrap();
        assert!(p.set(101).is_err());
        assert_eq!(p.threshold(), 42);
        let again = Parachute::load(Some(dir.path()), 90);
        assert_eq!((again.threshold(), again.is_set()), (42, true));
        again.configure(70);
        assert_eq!(
            again.threshold(),
            42,
            "a reload keeps the one set at run time"
        );
        std::fs::write(
            dir.path().join(THRESHOLD_FILE),
            "{\"max_disk_threshold\": 500}",
        )
        .unwrap();
        assert_eq!(Parachute::load(Some(dir.path()), 90).threshold(), 90);
    }

    #[test]
    fn a_threshold_file_that_is_a_link_fifo_or_too_long_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(THRESHOLD_FILE);
        // A FIFO no one writes to: reading it would block for ever.
        nix::unistd::mkfifo(&file, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(Parachute::load(Some(dir.path()), 80).threshold(), 80);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        std::fs::remove_file(&file).unwrap();
        let elsewhere = dir.path().join("elsewhere.json");
        std::fs::write(&elsewhere, "{\"max_disk_threshold\": 5}").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
        let p = Parachute::load(Some(dir.path()), 80);
        assert_eq!(
            (p.threshold(), p.is_set()),
            (80, false),
            "not through a link"
        );
        std::fs::remove_file(&file).unwrap();
        let long = format!("{{\"max_disk_threshold\": 5{}}}", " ".repeat(300));
        std::fs::write(&file, long).unwrap();
        assert_eq!(Parachute::load(Some(dir.path()), 80).threshold(), 80);
        std::fs::write(&file, "{\"max_disk_threshold\": 5}").unwrap();
        assert_eq!(Parachute::load(Some(dir.path()), 80).threshold(), 5);
    }

    #[test]
    fn thresholds_from_clients() {
        for (raw, want) in [("0", Some(0)), ("100", Some(100)), (" 85 ", Some(85))] {
            assert_eq!(parse_threshold(raw), want, "{raw}");
        }
        for bad in ["-1", "101", "abc", "", "1.5", "1e2", "0100", "+5"] {
            assert_eq!(parse_threshold(bad), None, "{bad}");
        }
    }
}
