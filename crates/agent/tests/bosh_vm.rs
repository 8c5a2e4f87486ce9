//! The rendered BOSH job run on this machine laid out as a BOSH VM: the package installed
//! by its packaging script into `/var/vcap/packages`, the job rendered into
//! `/var/vcap/jobs` (`tests/bosh/render.rb`), then its scripts as monit, BOSH and an
//! operator run them: `manual-backup`, `ctl start`, `drain` (a running backup finishes;
//! one that outlasts the bound is aborted), `verify`, `restore`, and the bbr CLI's
//! `bbr/backup` and `bbr/restore`. Needs root (CI has it)
//! and ruby (`SB_TEST_RUBY`); removes `/var/vcap` afterwards, also on failure.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use common::bosh::{KEY, install_package, render};
use serde_json::Value;

/// `/var/vcap` laid out as on a BOSH VM, removed when dropped.
struct VcapLayout;

impl Drop for VcapLayout {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string("/var/vcap/sys/run/service-backup/service-backup.pid");
        if let Ok(pid) = pid {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
        let _ = std::fs::remove_dir_all("/var/vcap");
    }
}

const JOB: &str = "/var/vcap/jobs/service-backup";
const STORE: &str = "/var/vcap/store";

/// Renders the job into /var/vcap/jobs/service-backup with a local destination under
/// /var/vcap/store, as the director and the agent would lay it out.
fn render_onto_vm(drain_timeout: u32, dump_seconds: u32) {
    let manifest = format!(
        "service-backup:\n  destinations:\n  - {{type: local, name: nfs, config: {{path: {STORE}/nfs}}}}\n  \
         source_folder: {STORE}/dump\n  source_executable: {STORE}/dump-tool {dump_seconds}\n  \
         cron_schedule: \"@every 1s\"\n  backup_user: nobody\n  encryption: {{key: {KEY}}}\n  \
         restore: {{target_folder: {STORE}/restored}}\n  drain_timeout_seconds: {drain_timeout}\n"
    );
    let rendered = render(&manifest);
    rendered.expect_rendered();
    std::fs::create_dir_all(JOB).unwrap();
    let status = Command::new("cp")
        .arg("-rT")
        .arg(rendered.out())
        .arg(JOB)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Runs a job script; returns (exit code, stdout, stderr).
fn job_script(script: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(format!("{JOB}/bin/{script}"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn complete_backups() -> usize {
    let out = Command::new(common::binary())
        .args(["list", &format!("{JOB}/config/backup.yml"), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let items: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    items.len()
}

/// Whether a backup holds the agent's lock (as bin/drain asks).
fn backup_running() -> bool {
    let lock = format!("{STORE}/service-backup/backup.lock");
    Path::new(&lock).exists()
        && !Command::new("flock")
            .args(["--nonblock", &lock, "true"])
            .status()
            .unwrap()
            .success()
}

fn wait_for(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} within {seconds} s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `bin/ctl start` as monit runs it; a thread reaps the daemon (ctl execs it) so that an
/// exited daemon does not linger as a zombie that still answers `kill -0`.
fn ctl_start() {
    let mut child = Command::new(format!("{JOB}/bin/ctl"))
        .arg("start")
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::spawn(move || child.wait());
    wait_for("the daemon starts", 30, || {
        std::fs::read_to_string("/var/vcap/sys/log/service-backup/service-backup.stdout.log")
            .is_ok_and(|log| log.contains("Service-backup Started"))
    });
}

fn agent_running() -> bool {
    std::fs::read_to_string("/var/vcap/sys/run/service-backup/service-backup.pid").is_ok_and(
        |pid| {
            Command::new("kill")
                .args(["-0", pid.trim()])
                .status()
                .unwrap()
                .success()
        },
    )
}

#[test]
fn the_rendered_job_runs_ctl_manual_backup_drain_restore_and_verify() {
    assert!(
        common::is_root(),
        "this test lays out /var/vcap as on a BOSH VM and runs the job's scripts, which need \
         root, as CI has"
    );
    assert!(
        !Path::new("/var/vcap").exists(),
        "/var/vcap exists on this machine: this test lays out its own and removes it"
    );
    let _layout = VcapLayout;

    // The package, installed by its packaging script, and the data to back up.
    install_package(Path::new("/var/vcap/packages/service-backup"));
    common::sample_tree(&Path::new(STORE).join("dump"));
    std::fs::write(format!("{STORE}/dump-tool"), "#!/bin/sh\nsleep \"$1\"\n").unwrap();
    std::fs::set_permissions(
        format!("{STORE}/dump-tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::create_dir_all(format!("{STORE}/nfs")).unwrap();
    assert!(
        Command::new("chown")
            .args(["nobody", &format!("{STORE}/nfs")])
            .status()
            .unwrap()
            .success()
    );

    render_onto_vm(60, 2);
    let config_before = std::fs::metadata(format!("{JOB}/config/backup.yml")).unwrap();
    assert_eq!(config_before.permissions().mode() & 0o777, 0o644);

    // manual-backup: one backup now; the secret files are the backup user's, mode 0600.
    let (code, stdout, stderr) = job_script("manual-backup", &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Upload backup completed successfully"),
        "{stdout}"
    );
    assert_eq!(complete_backups(), 1);
    for file in ["backup.yml", "backup.key", "api-tokens"] {
        let meta = std::fs::metadata(format!("{JOB}/config/{file}")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            65534,
            "{file} belongs to the backup user"
        );
    }

    // state_dir (task database, lock, known_hosts) is the backup user's alone.
    let state = std::fs::metadata(format!("{STORE}/service-backup")).unwrap();
    assert_eq!(state.permissions().mode() & 0o777, 0o700, "state_dir mode");

    // ctl start: the daemon runs as the backup user, logs in /var/vcap/sys/log.
    ctl_start();
    assert!(agent_running());
    let (code, _, _) = job_script("ctl", &["start"]);
    assert_eq!(code, 0, "a second start is a no-op");

    // drain while a backup runs: it finishes, then the daemon stops, and only 0 is printed.
    wait_for("a scheduled backup holds the lock", 30, backup_running);
    let before = complete_backups();
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = job_script("drain", &[]);
    assert_eq!((code, stdout.as_str()), (0, "0\n"), "{stderr}");
    assert!(!agent_running(), "the daemon still runs after drain");
    // The running backup, not the ones scheduled after it (every second here).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "drain took {:?}",
        started.elapsed()
    );
    assert!(
        complete_backups() > before,
        "the backup that was running did not complete"
    );
    let drain_log = std::fs::read_to_string("/var/vcap/sys/log/service-backup/ctl.log").unwrap();
    assert!(drain_log.contains("waiting up to 60s"), "{drain_log}");

    // verify and restore (into restore.target_folder), as an operator would on the VM.
    let (code, stdout, stderr) = job_script("verify", &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (code, stdout, stderr) = job_script("restore", &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        common::tree(Path::new("/var/vcap/store/restored")),
        common::tree(&Path::new(STORE).join("dump"))
    );

    // BOSH Backup and Restore, as the bbr CLI runs the scripts (as root, the artifact
    // folder root's, in BBR_ARTIFACT_DIRECTORY with a trailing slash): the backup writes
    // one archive there as the backup user, the restore brings it back.
    let artifacts = format!("{STORE}/bbr-backup/service-backup");
    std::fs::create_dir_all(&artifacts).unwrap();
    let bbr = |script: &str| {
        let out = Command::new(format!("{JOB}/bin/bbr/{script}"))
            .env("BBR_ARTIFACT_DIRECTORY", format!("{artifacts}/"))
            .output()
            .unwrap();
        assert!(out.status.success(), "bbr {script}: {out:?}");
    };
    bbr("backup");
    std::fs::write(format!("{STORE}/restored/stray"), "x").unwrap();
    bbr("restore");
    assert_eq!(
        common::tree(Path::new("/var/vcap/store/restored")),
        common::tree(&Path::new(STORE).join("dump"))
    );

    // drain with a backup that outlasts the bound: the daemon is stopped, the backup
    // aborted, nothing partial is listed, and 0 is printed.
    render_onto_vm(1, 60);
    ctl_start();
    wait_for("a scheduled backup holds the lock", 30, backup_running);
    let before = complete_backups();
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = job_script("drain", &[]);
    assert_eq!((code, stdout.as_str()), (0, "0\n"), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "drain took {:?}",
        started.elapsed()
    );
    assert!(!agent_running());
    assert_eq!(complete_backups(), before);
    let (code, _, _) = job_script("ctl", &["stop"]);
    assert_eq!(code, 0, "stop without a daemon is a no-op");
}
