//! `GET /metrics`: Graphite lines `<path> <value> <unix-seconds>`, sampled on an interval
//! into a bounded ring. Paths are `<namespace>.system.*` (load ×1000000, cpu, memory,
//! swap, disks), `<namespace>.parachute.*` and `<namespace>.backup.*`.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;

use crate::tasks::store::Task;
use service_backup_core::task::TaskState;

/// How many samples the ring keeps (an hour at the default interval).
pub const RING_SAMPLES: usize = 360;

/// How often a sample is taken.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

/// The latest samples, each a list of Graphite lines.
#[derive(Debug, Default)]
pub struct Ring {
    samples: Mutex<VecDeque<Vec<String>>>,
}

impl Ring {
    /// Adds a sample, dropping the oldest beyond [`RING_SAMPLES`].
    pub fn push(&self, sample: Vec<String>) {
        let mut s = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.len() == RING_SAMPLES {
            s.pop_front();
        }
        s.push_back(sample);
    }

    /// The lines of the `quantity` latest samples (all when `None`), oldest first.
    pub fn latest(&self, quantity: Option<usize>) -> Vec<String> {
        let s = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = quantity.unwrap_or(s.len()).min(s.len());
        s.iter().skip(s.len() - n).flatten().cloned().collect()
    }
}

pub use super::request::parse_quantity;

/// What a sample reports besides the machine: the disks to watch and the backup history.
pub struct Inputs<'a> {
    /// The namespace every path starts with.
    pub namespace: &'a str,
    /// Folders whose disks parachute watches (the source folder, the state dir).
    pub watched: Vec<&'a Path>,
    /// The used share of a disk, in percent, at which parachute reports the limit reached.
    pub parachute_threshold: u64,
    /// The backup tasks, oldest first.
    pub backups: &'a [Task],
}

/// The name of the disk that holds `mount`: `system` for `/`, `ephemeral` for
/// `/var/vcap/data`, `persistent` for `/var/vcap/store`, else the mount point with `/`
/// as `_`.
pub fn disk_name(mount: &str) -> String {
    match mount {
        "/" => "system".to_string(),
        "/var/vcap/data" => "ephemeral".to_string(),
        "/var/vcap/store" => "persistent".to_string(),
        other => other.trim_matches('/').replace(['/', '.', ' '], "_"),
    }
}

/// Takes one sample now.
pub fn sample(inputs: &Inputs<'_>) -> Vec<String> {
    let ts = Utc::now().timestamp();
    let mut lines = Vec::new();
    let mut put = |path: &str, value: i128| {
        lines.push(format!("{}.{path} {value} {ts}", inputs.namespace));
    };
    cpu(&mut put);
    load(&mut put);
    memory(&mut put);
    let mounts = mounts();
    let mut reported = Vec::new();
    // The usual BOSH disks, when present, then the disks of the watched folders.
    for m in ["/", "/var/vcap/data", "/var/vcap/store"] {
        if mounts.iter().any(|x| x == m) {
            reported.push(m.to_string());
        }
    }
    for w in &inputs.watched {
        if let Some(m) = mount_of(&mounts, w)
            && !reported.contains(&m)
        {
            reported.push(m);
        }
    }
    let mut disk_error = 0;
    for m in &reported {
        let name = disk_name(m);
        if let Ok(v) = nix::sys::statvfs::statvfs(m.as_str()) {
            let frag = i128::from(v.fragment_size());
            let total = i128::from(v.blocks()) * frag;
            let free = i128::from(v.blocks_available()) * frag;
            let used = total - i128::from(v.blocks_free()) * frag;
            let percent = if total > 0 { used * 100 / total } else { 0 };
            put(&format!("system.disk.{name}.error"), 0);
            put(&format!("system.disk.{name}.total"), total);
            put(&format!("system.disk.{name}.used"), used);
            put(&format!("system.disk.{name}.free"), free);
            put(&format!("system.disk.{name}.percent"), percent);
            let threshold = i128::from(inputs.parachute_threshold);
            put(&format!("parachute.{name}.used_percent"), percent);
            put(&format!("parachute.{name}.threshold"), threshold);
            put(
                &format!("parachute.{name}.limit_reached"),
                i128::from(percent >= threshold),
            );
        } else {
            disk_error = 1;
            put(&format!("system.disk.{name}.error"), 1);
        }
    }
    put("system.disk.error", disk_error);
    backups(inputs.backups, &mut put);
    lines
}

fn cpu(put: &mut impl FnMut(&str, i128)) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        put("system.cpu.error", 1);
        return;
    };
    put("system.cpu.error", 0);
    for line in stat.lines().filter(|l| l.starts_with("cpu")) {
        let mut f = line.split_whitespace();
        let Some(name) = f.next() else { continue };
        let v: Vec<i128> = f.filter_map(|x| x.parse().ok()).collect();
        if v.len() < 4 {
            continue;
        }
        // /proc/stat: user nice system idle iowait …, in clock ticks.
        put(&format!("system.{name}.user"), v[0] + v[1]);
        put(&format!("system.{name}.system"), v[2]);
        put(&format!("system.{name}.idle"), v[3]);
    }
}

fn load(put: &mut impl FnMut(&str, i128)) {
    let parsed = std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| {
        let v: Vec<f64> = s
            .split_whitespace()
            .take(3)
            .filter_map(|x| x.parse().ok())
            .collect();
        (v.len() == 3).then_some(v)
    });
    match parsed {
        Some(v) => {
            put("system.load.error", 0);
            for (name, x) in ["load1", "load5", "load15"].iter().zip(v) {
                put(
                    &format!("system.load.{name}"),
                    (x * 1_000_000.0).round() as i128,
                );
            }
        }
        None => put("system.load.error", 1),
    }
}

fn memory(put: &mut impl FnMut(&str, i128)) {
    let Ok(info) = std::fs::read_to_string("/proc/meminfo") else {
        put("system.memory.error", 1);
        put("system.swap.error", 1);
        return;
    };
    let field = |key: &str| -> i128 {
        info.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<i128>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    let total = field("MemTotal");
    let free = field("MemFree");
    let buffers = field("Buffers");
    let cached = field("Cached");
    put("system.memory.error", 0);
    put("system.memory.total", total);
    put("system.memory.used", total - free - buffers - cached);
    put("system.memory.free", free);
    put("system.memory.shared", field("Shmem"));
    put("system.memory.buffers", buffers);
    put("system.memory.cached", cached);
    let swap_total = field("SwapTotal");
    let swap_free = field("SwapFree");
    put("system.swap.error", 0);
    put("system.swap.total", swap_total);
    put("system.swap.used", swap_total - swap_free);
    put("system.swap.free", swap_free);
}

fn backups(tasks: &[Task], put: &mut impl FnMut(&str, i128)) {
    let last_done = tasks.iter().rev().find(|t| t.state == TaskState::Done);
    if let Some(t) = last_done {
        put(
            "backup.last_success_time",
            i128::from(t.updated_at.timestamp()),
        );
        put(
            "backup.last_size_bytes",
            i128::from(t.stored_bytes.unwrap_or(0)),
        );
        put(
            "backup.last_duration_seconds",
            t.duration_in_seconds.unwrap_or(0.0).round() as i128,
        );
    }
    let failures = tasks
        .iter()
        .rev()
        .filter(|t| matches!(t.state, TaskState::Done | TaskState::Failed))
        .take_while(|t| t.state == TaskState::Failed)
        .count();
    put(
        "backup.consecutive_failures",
        i128::try_from(failures).unwrap_or(0),
    );
    put(
        "backup.running",
        i128::from(tasks.iter().any(|t| t.state == TaskState::Running)),
    );
}

/// The mount points of this machine.
fn mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|s| {
            s.lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .map(|m| m.replace("\\040", " "))
                .collect()
        })
        .unwrap_or_default()
}

/// The mount point that holds `path` (the longest prefix).
fn mount_of(mounts: &[String], path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    mounts
        .iter()
        .filter(|m| path.starts_with(m.as_str()))
        .max_by_key(|m| m.len())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::request::INVALID_QUANTITY;

    #[test]
    fn quantity_rules() {
        assert_eq!(parse_quantity(None), Ok(None));
        assert_eq!(parse_quantity(Some("3")), Ok(Some(3)));
        assert_eq!(
            parse_quantity(Some("99999999999999999999999")),
            Ok(Some(usize::MAX))
        );
        for bad in ["0", "-1", "abc", "", "1.5", "00"] {
            assert_eq!(parse_quantity(Some(bad)), Err(INVALID_QUANTITY), "{bad}");
        }
    }

    #[test]
    fn the_ring_is_bounded_and_returns_the_latest() {
        let ring = Ring::default();
        for i in 0..RING_SAMPLES + 5 {
            ring.push(vec![format!("a {i} 0"), format!("b {i} 0")]);
        }
        assert_eq!(ring.latest(None).len(), RING_SAMPLES * 2);
        assert_eq!(
            ring.latest(Some(1)),
            vec![
                format!("a {} 0", RING_SAMPLES + 4),
                format!("b {} 0", RING_SAMPLES + 4)
            ]
        );
    }

    #[test]
    fn disk_names_follow_the_mount_point_rules() {
        assert_eq!(disk_name("/"), "system");
        assert_eq!(disk_name("/var/vcap/data"), "ephemeral");
        assert_eq!(disk_name("/var/vcap/store"), "persistent");
        assert_eq!(disk_name("/mnt/x.y"), "mnt_x_y");
    }

    #[test]
    fn a_sample_has_the_system_paths() {
        let lines = sample(&Inputs {
            namespace: "ns",
            watched: vec![Path::new("/")],
            parachute_threshold: 80,
            backups: &[],
        });
        for path in [
            "ns.system.cpu.error 0 ",
            "ns.system.load.load1 ",
            "ns.system.memory.total ",
            "ns.system.swap.total ",
            "ns.system.disk.system.total ",
            "ns.parachute.system.threshold 80 ",
            "ns.backup.consecutive_failures 0 ",
        ] {
            assert!(
                lines.iter().any(|l| l.starts_with(path)),
                "{path} in {lines:?}"
            );
        }
    }
}
