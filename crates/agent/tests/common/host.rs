//! Helpers of the host-side fault tests: small full disks, daemons driven by signals,
//! processes frozen mid-upload, and the checks every fault row repeats.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Env, Run, binary, tree};

/// A tmpfs of a fixed size mounted on a folder; unmounted when dropped, also on panic.
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it: `2m`) on `dir`, creating it.
    pub fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "mount -t tmpfs on {} failed (the host-side fault tests run as root): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// Changes the size of the mounted tmpfs (its content stays).
    pub fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(ok.success(), "remount of {} failed", self.dir.display());
    }

    /// Writes a file in the tmpfs until the disk is full; returns its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0x55u8; 4096];
        loop {
            match file.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// A file of `len` pseudo-random (incompressible) bytes, so that its archive is as large.
pub fn random_file(path: &Path, len: usize) {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ len as u64;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(len);
    std::fs::write(path, data).unwrap();
}

/// An executable shell script `name` in the env's folder; returns its path.
pub fn script(env: &Env, name: &str, body: &str) -> String {
    let path = env.path(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// Waits until `done` holds, failing with `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The hidden temporary upload files (`.NAME.tmp-*`) under `root`, with their sizes.
pub fn temp_files(root: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
            } else if e.file_name().to_string_lossy().contains(".tmp-") {
                out.push((p, meta.len()));
            }
        }
    }
    out
}

/// Every file (not folder) under `root`.
pub fn files(root: &Path) -> Vec<PathBuf> {
    tree(root)
        .into_iter()
        .filter(|(p, _)| !p.ends_with('/'))
        .map(|(p, _)| root.join(p))
        .collect()
}

/// A process of the binary, started in the background with its JSON log in a file.
pub struct Agent {
    /// The process.
    pub child: Child,
    /// Its stdout (the JSON log lines).
    pub log: PathBuf,
    stderr: PathBuf,
}

impl Agent {
    /// Starts `service-backup ARGS` in the env's folder with `vars` set; `tag` names its
    /// log files.
    pub fn start(env: &Env, tag: &str, args: &[&str], vars: &[(&str, &str)]) -> Self {
        let log = env.path(&format!("{tag}.log"));
        let stderr = env.path(&format!("{tag}.err"));
        let child = Command::new(binary())
            .args(args)
            .envs(vars.iter().copied())
            .current_dir(env.dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Self { child, log, stderr }
    }

    /// The daemon (`run config.yml`).
    pub fn daemon(env: &Env, tag: &str, vars: &[(&str, &str)]) -> Self {
        Self::start(env, tag, &["run", "config.yml"], vars)
    }

    /// The JSON log lines so far.
    pub fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with('}'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON log line: {l}")))
            .collect()
    }

    /// How many lines carry `message`.
    pub fn count(&self, message: &str) -> usize {
        self.lines()
            .iter()
            .filter(|l| super::action(l) == message)
            .count()
    }

    /// Waits until `message` was logged `n` times.
    pub fn wait_for(&self, message: &str, n: usize, limit: Duration) {
        let start = Instant::now();
        while self.count(message) < n {
            assert!(
                start.elapsed() < limit,
                "{message:?} not logged {n} times within {limit:?}:\n{}\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default(),
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` (`TERM`, `STOP`, …) to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{sig}");
    }

    /// Freezes the process once `ready` holds, so that a signal finds it mid-work
    /// whatever the machine's load; the caller sends the signal, then [`Agent::resume`].
    pub fn freeze_when(&self, what: &str, ready: impl FnMut() -> bool) {
        wait_until(what, Duration::from_mins(1), ready);
        self.signal("STOP");
    }

    /// Lets a frozen process go on.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Waits for the exit (at most `limit`) and returns what it did, recorded for the
    /// secrets check.
    pub fn wait(mut self, limit: Duration) -> (Run, Duration) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < limit,
                "the process did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = start.elapsed();
        let mut stdout = vec![];
        std::fs::File::open(&self.log)
            .unwrap()
            .read_to_end(&mut stdout)
            .unwrap();
        let mut stderr = vec![];
        std::fs::File::open(&self.stderr)
            .unwrap()
            .read_to_end(&mut stderr)
            .unwrap();
        let run = Run::from(std::process::Output {
            status,
            stdout,
            stderr,
        });
        (run, took)
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The env's backups (`list --json`, with `more` arguments), checking the run went well.
pub fn listed(env: &Env, more: &[&str]) -> Vec<Value> {
    let mut args = vec!["list", "config.yml", "--json"];
    args.extend_from_slice(more);
    let out = env.run(&args);
    out.expect(0);
    no_panic(&out);
    serde_json::from_str(&out.stdout).unwrap_or_else(|_| panic!("{}", out.all()))
}

/// The env's tasks (`tasks --json`).
pub fn tasks(env: &Env) -> Vec<Value> {
    let out = env.run(&["tasks", "config.yml", "--json"]);
    out.expect(0);
    no_panic(&out);
    serde_json::from_str(&out.stdout).unwrap_or_else(|_| panic!("{}", out.all()))
}

/// The task with `id`.
pub fn task(env: &Env, id: i64) -> Value {
    tasks(env)
        .into_iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no task {id}"))
}

/// (status, reason) of a task.
pub fn state(t: &Value) -> (String, String) {
    (
        t["status"].as_str().unwrap_or("").to_string(),
        t["reason"].as_str().unwrap_or("").to_string(),
    )
}

/// Fails when a run panicked or printed a bare library error.
pub fn no_panic(run: &Run) {
    let all = run.all();
    assert!(
        !all.contains("panicked") && !all.contains("RUST_BACKTRACE"),
        "a panic: {all}"
    );
}

/// Point 5 of every row: a backup now succeeds, is listed, verifies, and restores the
/// source tree; returns its name.
pub fn next_backup_restores(env: &Env, more_list: &[&str]) -> String {
    let out = env.run(&["backup", "config.yml"]);
    out.expect(0);
    no_panic(&out);
    let newest = listed(env, more_list)
        .into_iter()
        .next()
        .expect("the new backup is listed");
    let name = newest["name"].as_str().unwrap().to_string();
    let v = env.run(&["verify", "config.yml", "--backup", &name]);
    v.expect(0);
    let target = env.path(&super::unique("restored"));
    let r = env.restore_into(&name, &target, &[]);
    r.expect(0);
    no_panic(&r);
    assert_eq!(tree(&env.path("source")), tree(&target), "restored tree");
    std::fs::remove_dir_all(&target).unwrap();
    name
}
