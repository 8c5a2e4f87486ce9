//! The test server's address from the environment, and an sshd of a test's own.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use service_backup_core::destination::RetryPolicy;
use service_backup_core::secret::Secret;
use service_backup_scp::ScpSettings;

/// A variable exported by tests/servers/scp.sh; fails the test when missing.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through tests/run.sh, which starts the server")
    })
}

/// The content of the key file named by the variable `name`.
pub fn key_from(name: &str) -> Secret {
    Secret::new(std::fs::read_to_string(env(name)).unwrap())
}

/// A directory on the test server (the server is local), unique to this test.
pub fn unique_dir(test: &str) -> PathBuf {
    let token: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    PathBuf::from(env("SB_TEST_SCP_DIR")).join(format!("{test}-{token:x}-{}", std::process::id()))
}

/// Quick retries, so that fault tests end fast.
pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        budget: Duration::from_secs(10),
    }
}

/// Settings for the test server at `port`, writing under `dir`, with the host key pinned.
pub fn settings_on(port: u16, dir: &Path) -> ScpSettings {
    let mut s = ScpSettings::new(
        "127.0.0.1",
        env("SB_TEST_SCP_USER"),
        dir.display().to_string(),
        key_from("SB_TEST_SCP_KEY"),
    );
    s.port = port;
    s.fingerprint = Some(env("SB_TEST_SCP_FINGERPRINT"));
    s.timeout = Duration::from_secs(10);
    s.retry = quick_retry();
    s
}

/// Settings for the shared test server, writing under `dir`.
pub fn settings(dir: &Path) -> ScpSettings {
    settings_on(env("SB_TEST_SCP_PORT").parse().unwrap(), dir)
}

/// Every file below `root` on disk, relative, sorted.
pub fn files_below(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Whether a relative path's file name is hidden (a temporary file).
pub fn is_hidden(rel: &str) -> bool {
    rel.rsplit('/').next().unwrap().starts_with('.')
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An sshd of the test's own (the binary tests/run.sh installed), to stop and restart.
pub struct OwnSshd {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnSshd {
    /// Starts one on a free port, with the shared server's host and client keys.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut sshd = Self {
            port: free_port(),
            dir,
            child: None,
        };
        let host_keys: String = env("SB_TEST_SCP_HOST_KEYS")
            .split(':')
            .map(|k| format!("HostKey {k}\n"))
            .collect();
        let config = format!(
            "Port {}\nListenAddress 127.0.0.1\n{host_keys}AuthorizedKeysFile {}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n\
             UsePAM no\nPidFile {}/sshd.pid\nSubsystem sftp internal-sftp\n",
            sshd.port,
            env("SB_TEST_SCP_AUTHORIZED_KEYS"),
            sshd.dir.path().display()
        );
        std::fs::write(sshd.dir.path().join("sshd_config"), config).unwrap();
        sshd.restart();
        sshd
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "sshd is running");
        let dir = self.dir.path();
        let child = Command::new(env("SB_TEST_SCP_SSHD"))
            .arg("-D")
            .arg("-f")
            .arg(dir.join("sshd_config"))
            .arg("-E")
            .arg(dir.join("sshd.log"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not open port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Freezes it: connections open, but nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws it.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("sshd is running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Kills it and every connection it serves (each runs in a process of its own).
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let children = descendants(child.id());
        let _ = child.kill();
        let _ = child.wait();
        for pid in children {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

impl Drop for OwnSshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The processes below `pid`, from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let child: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let parent: u32 = rest.split(' ').nth(1)?.parse().ok()?;
            Some((child, parent))
        })
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parents {
            if parent == p {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}
