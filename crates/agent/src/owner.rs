//! Which process a task belongs to, and whether that process still runs: so that a task
//! left `running` by a process that died is told apart from one a live daemon runs while
//! `service-backup tasks` or a manual backup opens the same database.

/// This process, as `BOOT_ID PID START_TICKS`: unique across reboots and reused pids.
pub fn this_process() -> String {
    let pid = std::process::id();
    format!(
        "{} {pid} {}",
        boot_id().unwrap_or_default(),
        start_ticks(pid).unwrap_or_default()
    )
}

/// Whether the process an owner string names (see [`this_process`]) still runs. An owner
/// that cannot be read (none recorded, by an older version) counts as gone.
pub fn is_alive(owner: Option<&str>) -> bool {
    let Some(owner) = owner else {
        return false;
    };
    let mut parts = owner.split(' ');
    let (Some(boot), Some(pid), Some(start)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    !boot.is_empty()
        && boot_id().as_deref() == Some(boot)
        && start_ticks(pid).is_some_and(|t| t.to_string() == start)
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The start time of process `pid` in clock ticks since boot (field 22 of its stat).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_others_are_not() {
        let me = this_process();
        assert!(is_alive(Some(&me)), "{me}");
        let mut parts: Vec<&str> = me.split(' ').collect();
        parts[2] = "1";
        assert!(!is_alive(Some(&parts.join(" "))), "a reused pid");
        assert!(!is_alive(Some("other-boot 1 1")));
        assert!(!is_alive(None));
        assert!(!is_alive(Some("garbage")));
    }
}
