//! The `system` datapoints of the a9s metrics API: CPU time per CPU in milliseconds, load
//! ×1,000,000, memory, swap, and the disks (physical devices with a size > 0, named from
//! their mount point).

use std::path::Path;

use super::Point;

/// The name of the disk mounted at `mount`: `system` for `/`, `ephemeral` for
/// `/var/vcap/data`, `persistent` for `/var/vcap/store`, else the mount point without its
/// leading `/` and with `/` as `_` (and `.` and spaces as `_` too, since a name is one
/// part of a dotted Graphite path).
pub fn disk_name(mount: &str) -> String {
    match mount.trim_end_matches('/') {
        "" => "system".to_string(),
        "/var/vcap/data" => "ephemeral".to_string(),
        "/var/vcap/store" => "persistent".to_string(),
        other => other
            .strip_prefix('/')
            .unwrap_or(other)
            .replace(['/', '.', ' '], "_"),
    }
}

/// Clock ticks (of `/proc/stat`) as whole milliseconds, for `ticks_per_second` ticks a
/// second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn ticks_to_ms(ticks: u64, ticks_per_second: u64) -> i128 {
    if ticks_per_second == 0 {
        return 0;
    }
    i128::from(ticks) * 1000 / i128::from(ticks_per_second)
}

/// The clock ticks a second of this machine.
fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        // Linux's USER_HZ whenever sysconf cannot say.
        .unwrap_or(100)
}

/// `system.cpu.error`, then `system.cpu<N>.{user,system,idle}` in ms, from `stat` (the text
/// of `/proc/stat`, `None` when unreadable).
pub fn cpu(stat: Option<&str>, ticks_per_second: u64, out: &mut Vec<Point>) {
    let Some(stat) = stat else {
        out.push(Point::new("system.cpu.error", 1));
        return;
    };
    out.push(Point::new("system.cpu.error", 0));
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let Some(name) = fields.next() else { continue };
        // Only the per-CPU lines: `cpu` alone is the sum of them all.
        let Some(n) = name.strip_prefix("cpu") else {
            continue;
        };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let v: Vec<u64> = fields.filter_map(|x| x.parse().ok()).collect();
        if v.len() < 4 {
            continue;
        }
        // user nice system idle …: nice is user time too.
        let ms = |t| ticks_to_ms(t, ticks_per_second);
        out.push(Point::new(format!("system.{name}.user"), ms(v[0] + v[1])));
        out.push(Point::new(format!("system.{name}.system"), ms(v[2])));
        out.push(Point::new(format!("system.{name}.idle"), ms(v[3])));
    }
}

/// `system.load.load1|5|15` ×1,000,000, from `loadavg` (the text of `/proc/loadavg`);
/// nothing when it cannot be read (the docs define no error flag for the load).
pub fn load(loadavg: Option<&str>, out: &mut Vec<Point>) {
    let Some(v) = loadavg.and_then(|s| {
        let v: Vec<f64> = s
            .split_whitespace()
            .take(3)
            .filter_map(|x| x.parse().ok())
            .collect();
        (v.len() == 3).then_some(v)
    }) else {
        return;
    };
    for (name, x) in ["load1", "load5", "load15"].iter().zip(v) {
        // A load average is small and positive: the cast cannot overflow.
        #[allow(clippy::cast_possible_truncation)]
        let scaled = (x * 1_000_000.0).round() as i128;
        out.push(Point::new(format!("system.load.{name}"), scaled));
    }
}

/// `system.memory.*` and `system.swap.*` in bytes, from `meminfo` (the text of
/// `/proc/meminfo`).
pub fn memory(meminfo: Option<&str>, out: &mut Vec<Point>) {
    let Some(info) = meminfo else {
        out.push(Point::new("system.memory.error", 1));
        out.push(Point::new("system.swap.error", 1));
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
    out.push(Point::new("system.memory.error", 0));
    out.push(Point::new("system.memory.total", total));
    out.push(Point::new(
        "system.memory.used",
        total - free - buffers - cached,
    ));
    out.push(Point::new("system.memory.free", free));
    out.push(Point::new("system.memory.shared", field("Shmem")));
    out.push(Point::new("system.memory.buffers", buffers));
    out.push(Point::new("system.memory.cached", cached));
    let swap_total = field("SwapTotal");
    let swap_free = field("SwapFree");
    out.push(Point::new("system.swap.error", 0));
    out.push(Point::new("system.swap.total", swap_total));
    out.push(Point::new("system.swap.used", swap_total - swap_free));
    out.push(Point::new("system.swap.free", swap_free));
}

/// A disk's use, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// The size of the file system.
    pub total: u64,
    /// The bytes in use (the blocks reserved for root count as free, as `df` shows them).
    pub used: u64,
    /// The bytes an ordinary user may still write.
    pub free: u64,
}

impl Usage {
    /// The used share in whole percent of the used and free bytes, rounded up as `df`
    /// does, so that a disk whose ordinary users cannot write any more shows 100.
    pub fn used_percent(self) -> u64 {
        let base = self.used + self.free;
        if base == 0 {
            return 0;
        }
        (self.used * 100).div_ceil(base)
    }
}

/// A disk the metrics report: its name and its use (`None` when it could not be read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// The name from the mount point ([`disk_name`]).
    pub name: String,
    /// Its use, or `None` when `statvfs` failed.
    pub usage: Option<Usage>,
}

/// The disks to report from `mounts` (the text of `/proc/self/mounts`): physical devices
/// (`/dev/…`, loop devices left out) with a size greater than 0, each device once, under
/// its documented mount point (`/`, `/var/vcap/data`, `/var/vcap/store`) when it has one,
/// else its shortest. `usage` reads a mount point's use.
pub fn disks(mounts: &str, usage: impl Fn(&str) -> Option<Usage>) -> Vec<Disk> {
    let mut by_device: Vec<(String, String)> = Vec::new();
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(device), Some(mount)) = (f.next(), f.next()) else {
            continue;
        };
        if !device.starts_with("/dev/") || device.starts_with("/dev/loop") {
            continue;
        }
        // /proc/self/mounts writes a space in a path as \040.
        let mount = mount.replace("\\040", " ");
        let documented = |m: &str| matches!(m, "/" | "/var/vcap/data" | "/var/vcap/store");
        match by_device.iter_mut().find(|(d, _)| d == device) {
            Some((_, kept)) => {
                let better = (documented(&mount) && !documented(kept))
                    || (documented(&mount) == documented(kept) && mount.len() < kept.len());
                if better {
                    *kept = mount;
                }
            }
            None => by_device.push((device.to_string(), mount)),
        }
    }
    let mut disks: Vec<Disk> = Vec::new();
    for (_, mount) in by_device {
        let read = usage(&mount);
        if read.is_some_and(|u| u.total == 0) {
            continue;
        }
        let name = disk_name(&mount);
        if disks.iter().any(|d| d.name == name) {
            continue;
        }
        disks.push(Disk { name, usage: read });
    }
    disks
}

/// The use of the file system at `mount`.
pub fn statvfs_usage(mount: &str) -> Option<Usage> {
    let v = nix::sys::statvfs::statvfs(mount).ok()?;
    let frag = v.fragment_size();
    let total = v.blocks() * frag;
    let free_all = v.blocks_free() * frag;
    Some(Usage {
        total,
        used: total.saturating_sub(free_all),
        free: v.blocks_available() * frag,
    })
}

/// `system.disk.error`, then `system.disk.<name>.{error,total,used,free,used_percent}`.
pub fn disk_points(disks: &[Disk], out: &mut Vec<Point>) {
    let any_error = disks.iter().any(|d| d.usage.is_none());
    out.push(Point::new("system.disk.error", i128::from(any_error)));
    for d in disks {
        let name = &d.name;
        let Some(u) = d.usage else {
            out.push(Point::new(format!("system.disk.{name}.error"), 1));
            continue;
        };
        out.push(Point::new(format!("system.disk.{name}.error"), 0));
        out.push(Point::new(
            format!("system.disk.{name}.total"),
            i128::from(u.total),
        ));
        out.push(Point::new(
            format!("system.disk.{name}.used"),
            i128::from(u.used),
        ));
        out.push(Point::new(
            format!("system.disk.{name}.free"),
            i128::from(u.free),
        ));
        out.push(Point::new(
            format!("system.disk.{name}.used_percent"),
            i128::from(u.used_percent()),
        ));
    }
}

/// The lines of `mounts` whose mount point is a folder: a container's files bound from the
/// host's disk (`/etc/hosts`, `/etc/resolv.conf`) are no disks of its own.
fn folder_mounts(mounts: &str) -> String {
    mounts
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|m| Path::new(&m.replace("\\040", " ")).is_dir())
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Every `system` datapoint of this machine now, and the disks read for parachute.
pub fn sample(out: &mut Vec<Point>) -> Vec<Disk> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    cpu(read("/proc/stat").as_deref(), ticks_per_second(), out);
    load(read("/proc/loadavg").as_deref(), out);
    memory(read("/proc/meminfo").as_deref(), out);
    let disks = local_disks();
    disk_points(&disks, out);
    disks
}

/// The disks of this machine and their use now.
pub fn local_disks() -> Vec<Disk> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    disks(&folder_mounts(&mounts), statvfs_usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_names_follow_the_mount_point_rules() {
        assert_eq!(disk_name("/"), "system");
        assert_eq!(disk_name("/var/vcap/data"), "ephemeral");
        assert_eq!(disk_name("/var/vcap/store"), "persistent");
        assert_eq!(disk_name("/var/vcap/store/"), "persistent");
        assert_eq!(disk_name("/mnt/backups"), "mnt_backups");
        assert_eq!(disk_name("/data"), "data");
        assert_eq!(disk_name("/mnt/x.y z"), "mnt_x_y_z");
    }

    #[test]
    fn cpu_ticks_become_milliseconds() {
        assert_eq!(ticks_to_ms(89_431, 100), 894_310);
        assert_eq!(ticks_to_ms(3, 300), 10);
        assert_eq!(ticks_to_ms(1, 1000), 1);
        assert_eq!(ticks_to_ms(5, 0), 0);
        // The machine's own rate, as the sampler uses it.
        assert!(ticks_per_second() > 0);
        let mut out = Vec::new();
        cpu(
            Some(
                "cpu  10 2 30 400 0 0 0 0 0 0\ncpu0 10 2 30 400 0 0 0 0 0 0\n\
                 cpu1 1 0 2 3 0 0 0\nintr 5 1\n",
            ),
            250,
            &mut out,
        );
        let shown: Vec<(String, i128)> = out.into_iter().map(|p| (p.path, p.value)).collect();
        let want: Vec<(String, i128)> = [
            ("system.cpu.error", 0),
            ("system.cpu0.user", 48),
            ("system.cpu0.system", 120),
            ("system.cpu0.idle", 1600),
            ("system.cpu1.user", 4),
            ("system.cpu1.system", 8),
            ("system.cpu1.idle", 12),
        ]
        .into_iter()
        .map(|(p, v)| (p.to_string(), v))
        .collect();
        assert_eq!(shown, want);
        let mut out = Vec::new();
        cpu(None, 100, &mut out);
        assert_eq!(out, vec![Point::new("system.cpu.error", 1)]);
    }

    #[test]
    fn load_is_scaled_by_a_million() {
        let mut out = Vec::new();
        load(Some("3.54 0.05 2.358398 1/2 3"), &mut out);
        let values: Vec<i128> = out.iter().map(|p| p.value).collect();
        assert_eq!(values, vec![3_540_000, 50_000, 2_358_398]);
    }

    #[test]
    fn memory_used_is_total_less_free_buffers_and_cache() {
        // The docs' example: 4136923136 total, 151093248 free, 137117696 buffers and
        // 570118144 cached give 3278594048 used.
        let info = "MemTotal: 4039964 kB\nMemFree: 147552 kB\nBuffers: 133904 kB\n\
                    Cached: 556756 kB\nShmem: 21248 kB\nSwapTotal: 4039676 kB\nSwapFree: 4039676 kB\n";
        let mut out = Vec::new();
        memory(Some(info), &mut out);
        let get = |p: &str| out.iter().find(|x| x.path == p).map(|x| x.value);
        assert_eq!(get("system.memory.total"), Some(4_136_923_136));
        assert_eq!(get("system.memory.used"), Some(3_278_594_048));
        assert_eq!(get("system.swap.used"), Some(0));
        assert_eq!(get("system.swap.free"), Some(4_136_628_224));
    }

    #[test]
    fn only_physical_devices_with_a_size_are_disks() {
        let mounts = "proc /proc proc rw 0 0\n\
            /dev/sda1 / ext4 rw 0 0\n\
            tmpfs /run tmpfs rw 0 0\n\
            /dev/sda1 /etc/hosts ext4 rw 0 0\n\
            /dev/sdb2 /var/vcap/data/root_tmp ext4 rw 0 0\n\
            /dev/sdb2 /var/vcap/data ext4 rw 0 0\n\
            /dev/sdc1 /var/vcap/store ext4 rw 0 0\n\
            /dev/loop0 /snap/core ext4 ro 0 0\n\
            /dev/sdd1 /mnt/my\\040data ext4 rw 0 0\n\
            /dev/sde1 /empty ext4 rw 0 0\n\
            /dev/sdf1 /unreadable ext4 rw 0 0\n";
        let usage = |m: &str| match m {
            "/empty" => Some(Usage {
                total: 0,
                used: 0,
                free: 0,
            }),
            "/unreadable" => None,
            _ => Some(Usage {
                total: 100,
                used: 80,
                free: 15,
            }),
        };
        let found = disks(mounts, usage);
        let names: Vec<&str> = found.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "system",
                "ephemeral",
                "persistent",
                "mnt_my_data",
                "unreadable"
            ]
        );
        assert_eq!(found[4].usage, None);
        let mut out = Vec::new();
        disk_points(&found, &mut out);
        assert_eq!(out[0], Point::new("system.disk.error", 1));
        assert!(out.contains(&Point::new("system.disk.persistent.used_percent", 85)));
        assert!(out.contains(&Point::new("system.disk.unreadable.error", 1)));
    }

    #[test]
    fn files_bound_into_a_container_are_no_disks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts");
        std::fs::write(&file, "").unwrap();
        let mounts = format!(
            "/dev/vda {} ext4 rw 0 0\n/dev/vda {} ext4 rw 0 0\n",
            file.display(),
            dir.path().display()
        );
        assert_eq!(
            folder_mounts(&mounts),
            format!("/dev/vda {} ext4 rw 0 0\n", dir.path().display())
        );
    }

    #[test]
    fn used_percent_rounds_up_over_what_users_may_write() {
        let u = |used, free| Usage {
            total: 1000,
            used,
            free,
        };
        assert_eq!(u(0, 950).used_percent(), 0);
        assert_eq!(u(1, 949).used_percent(), 1);
        assert_eq!(u(950, 0).used_percent(), 100);
        assert_eq!(u(500, 500).used_percent(), 50);
        assert_eq!(u(0, 0).used_percent(), 0);
    }
}
