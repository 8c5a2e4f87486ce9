//! The Debian package (`cargo deb`, `[package.metadata.deb]`): built from the binary under
//! test, installed on this machine with dpkg, run as its systemd unit runs it (by systemd
//! when systemd is PID 1, else the unit's `ExecStart` as its `User`), one scheduled backup
//! to the local destination of the example configuration, a restore, then purged.
//!
//! The package is built from the test profile's binary (`--no-build`): what is tested is
//! what the package puts where and what the unit runs; the release build is the same
//! source with other optimisation settings (cargo-deb 3.8 warns that it does not support
//! the dev profile and may refuse it in a later version: tests/servers/deb.sh pins 3.8.0).
//! Needs root (CI runs as root on a throwaway machine) and cargo-deb from
//! `tests/servers/deb.sh` (`SB_TEST_CARGO_DEB`). It installs into the real system and
//! removes everything it added afterwards, also when it fails.

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{binary, is_root, sample_tree, server_env, tree};

const PACKAGE: &str = "service-backup";
const CONFIG: &str = "/etc/service-backup/config.yml";
const KEY: &str = "/etc/service-backup/backup.key";
const STATE: &str = "/var/lib/service-backup";
const SOURCE: &str = "/var/lib/service-backup/source";
const BACKUPS: &str = "/var/backups/service-backup";
const UNIT: &str = "/lib/systemd/system/service-backup.service";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a command, returning (exit code, stdout, stderr).
fn sh(program: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} does not run: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(program: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = sh(program, args);
    assert_eq!(
        code, 0,
        "{program} {args:?}:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// The binary under test's standard output for `args`.
fn binary_run(args: &[&str]) -> Vec<u8> {
    let out = Command::new(binary()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// dpkg, retried while another installation on this machine holds its lock.
fn dpkg(args: &[&str]) -> (i32, String, String) {
    let start = Instant::now();
    loop {
        let result = sh("dpkg", args);
        let locked = result.2.contains("lock");
        if result.0 == 0 || !locked || start.elapsed() > Duration::from_mins(2) {
            return result;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn installed() -> bool {
    let (_, status, _) = sh("dpkg-query", &["-W", "-f=${Status}", PACKAGE]);
    status.contains("ok installed")
}

/// A command line run as the service-backup user, as the unit's `User=` would.
fn as_user(args: &[&str]) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args([
            "--reuid=service-backup",
            "--regid=service-backup",
            "--init-groups",
            "--",
        ])
        .args(args)
        .current_dir(STATE)
        .stdin(Stdio::null());
    command
}

fn as_user_ok(args: &[&str]) -> String {
    let out = as_user(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes what the test installed, whatever state it got to.
struct Cleanup {
    daemon: Option<Child>,
    under_systemd: bool,
}

impl Cleanup {
    fn run(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.under_systemd {
            let _ = sh("systemctl", &["stop", "service-backup"]);
        }
        let _ = dpkg(&["--purge", PACKAGE]);
        for path in [BACKUPS, STATE, "/etc/service-backup"] {
            let _ = std::fs::remove_dir_all(path);
        }
        let _ = sh("userdel", &["service-backup"]);
        let _ = sh("groupdel", &["service-backup"]);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run();
    }
}

/// The value of `Key=` in the installed unit.
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
        .to_string()
}

#[test]
fn the_debian_package_installs_runs_a_backup_and_a_restore_and_purges() {
    let cargo_deb = server_env("SB_TEST_CARGO_DEB");
    assert!(
        is_root(),
        "this test installs a package with dpkg and needs root, as CI has"
    );
    assert!(
        !installed() && !Path::new("/usr/bin/service-backup").exists(),
        "service-backup is already installed on this machine: this test installs and purges \
         its own package, so remove it first (dpkg --purge service-backup)"
    );

    // Build the .deb from the binary under test (target/<profile>/service-backup).
    let exe = binary();
    let profile_dir = exe.parent().unwrap();
    let profile = profile_dir.file_name().unwrap().to_str().unwrap();
    let profile = if profile == "debug" { "dev" } else { profile };
    let target_dir = profile_dir.parent().unwrap();
    let work = tempfile::tempdir().unwrap();
    let deb = work.path().join("service-backup.deb");
    // What scripts/build-deb.sh puts beside the binary before packaging.
    let completion = binary_run(&["completions", "bash"]);
    std::fs::write(profile_dir.join("service-backup.bash"), completion).unwrap();
    let page = binary_run(&["man"]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &page).unwrap();
    std::fs::write(
        profile_dir.join("service-backup.1.gz"),
        gz.finish().unwrap(),
    )
    .unwrap();
    let started = Instant::now();
    let out = Command::new(&cargo_deb)
        .args(["-p", PACKAGE, "--no-build", "--fast", "--profile", profile])
        .arg("--output")
        .arg(&deb)
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo deb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("cargo deb took {:?}", started.elapsed());
    let contents = ok("dpkg-deb", &["--contents", deb.to_str().unwrap()]);
    for path in [
        "./usr/bin/service-backup",
        "./lib/systemd/system/service-backup.service",
        "./etc/service-backup/config.yml",
        "./usr/share/bash-completion/completions/service-backup",
        "./usr/share/man/man1/service-backup.1.gz",
    ] {
        assert!(
            contents.contains(path),
            "{path} not in the package:\n{contents}"
        );
    }

    let mut cleanup = Cleanup {
        daemon: None,
        under_systemd: Path::new("/run/systemd/system").is_dir(),
    };
    let (code, stdout, stderr) = dpkg(&["-i", deb.to_str().unwrap()]);
    assert_eq!(code, 0, "dpkg -i:\n{stdout}\n{stderr}");
    assert!(installed());

    // What the package put where.
    let version = ok("/usr/bin/service-backup", &["--version"]);
    assert!(version.starts_with("service-backup "), "{version}");
    // The completion and the man page, where bash-completion and man look for them.
    let loaded = ok(
        "bash",
        &[
            "-c",
            "source /usr/share/bash-completion/completions/service-backup && complete -p service-backup",
        ],
    );
    assert!(loaded.contains("_service__backup"), "{loaded}");
    let page = Command::new("man")
        .args(["-l", "/usr/share/man/man1/service-backup.1.gz"])
        .env("MANPAGER", "cat")
        .output()
        .expect("man (man-db) is installed: tests/run.sh installs it");
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(page.contains("SERVICE-BACKUP BACKUP"), "{page}");
    ok("getent", &["passwd", "service-backup"]);
    let config_meta = std::fs::metadata(CONFIG).unwrap();
    assert_eq!(config_meta.permissions().mode() & 0o777, 0o640);
    let group = ok("stat", &["-c", "%G", CONFIG]);
    assert_eq!(group.trim(), "service-backup");
    for dir in [STATE, BACKUPS] {
        let meta = std::fs::metadata(dir).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{dir}");
        assert_eq!(
            ok("stat", &["-c", "%U", dir]).trim(),
            "service-backup",
            "{dir}"
        );
    }
    let conffiles = ok("dpkg-query", &["--showformat=${Conffiles}", "-W", PACKAGE]);
    assert!(conffiles.contains(CONFIG), "{conffiles}");
    let unit = std::fs::read_to_string(UNIT).expect("the unit is installed");
    for line in [
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "User=service-backup",
        // A configuration error (exit 2) is not retried every RestartSec.
        "RestartPreventExitStatus=2",
        "LimitNOFILE=65536",
        "LimitCORE=0",
        "SyslogLevelPrefix=yes",
    ] {
        assert!(unit.contains(line), "{line} not in the unit");
    }
    // No ExecStartPre: systemd restarts a unit whose ExecStartPre fails, whatever its status.
    assert!(!unit.contains("ExecStartPre="), "{unit}");
    let (code, _, stderr) = sh("systemd-analyze", &["verify", UNIT]);
    assert_eq!(code, 0, "systemd-analyze verify: {stderr}");

    // The example configuration is valid as installed.
    let example = as_user_ok(&["/usr/bin/service-backup", "validate", CONFIG]);
    assert!(example.contains("valid; 1 destination(s)"), "{example}");

    // The example configuration, with a key and a schedule that fires soon.
    ok("/usr/bin/service-backup", &["keygen", "--output", KEY]);
    ok("chown", &["service-backup:service-backup", KEY]);
    let config = std::fs::read_to_string(CONFIG).unwrap();
    let config = config
        .replace(
            "cron_schedule: \"0 3 * * *\"",
            "cron_schedule: \"@every 2s\"",
        )
        .replace("# encryption:\n#   key_file:", "encryption:\n  key_file:");
    assert!(config.contains("@every 2s") && config.contains("\nencryption:\n"));
    std::fs::write(CONFIG, config).unwrap();
    sample_tree(Path::new(SOURCE));
    ok(
        "chown",
        &["-R", "-h", "service-backup:service-backup", SOURCE],
    );

    // Run the daemon as the unit runs it.
    let exec_start = unit_value(&unit, "ExecStart");
    let argv: Vec<&str> = exec_start.split_whitespace().collect();
    assert_eq!(argv, ["/usr/bin/service-backup", "run", CONFIG]);
    let log = work.path().join("daemon.log");
    if cleanup.under_systemd {
        ok("systemctl", &["daemon-reload"]);
        ok("systemctl", &["start", "service-backup"]);
    } else {
        let child = as_user(&argv)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        cleanup.daemon = Some(child);
    }

    // A scheduled backup appears in the local destination.
    let deadline = Instant::now() + Duration::from_secs(90);
    let listed = loop {
        let out = as_user(&["/usr/bin/service-backup", "list", CONFIG, "--json"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.contains("\"name\"") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no backup within 90 s; daemon log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(listed.contains(".tar.gz.enc"), "{listed}");

    // SIGTERM, as `systemctl stop` sends it: a graceful exit.
    if cleanup.under_systemd {
        ok("systemctl", &["stop", "service-backup"]);
    } else {
        let mut child = cleanup.daemon.take().unwrap();
        ok("kill", &["-TERM", &child.id().to_string()]);
        let status = child.wait().unwrap();
        assert!(status.success(), "the daemon exited with {status}");
        let lines = std::fs::read_to_string(&log).unwrap();
        assert!(
            lines.contains("Upload backup completed successfully"),
            "{lines}"
        );
    }

    // A restore of the latest backup, as the service user.
    let target = format!("{STATE}/restored");
    as_user_ok(&[
        "/usr/bin/service-backup",
        "restore",
        CONFIG,
        "--target",
        &target,
    ]);
    assert_eq!(tree(Path::new(&target)), tree(Path::new(SOURCE)));
    let restored = std::fs::metadata(format!("{target}/dump.sql")).unwrap();
    assert_eq!(
        restored.uid(),
        std::fs::metadata(STATE).unwrap().uid(),
        "restored files belong to the service user"
    );

    // Purge removes the package and its state; nothing of the package is left.
    cleanup.run();
    assert!(!installed());
    for gone in ["/usr/bin/service-backup", UNIT, CONFIG, STATE] {
        assert!(!Path::new(gone).exists(), "{gone} is still there");
    }
}
