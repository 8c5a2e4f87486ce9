//! A server program of a test's own on a loopback port, which the test may stop as an
//! operator would, kill as a crash would, freeze, and start again on the same port.
//! [`crate::emulators`] configures it for each server the tests use.

use std::ffi::OsString;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A server process: how to start it, and the running child if it runs.
pub struct ServerProcess {
    /// The loopback port it listens on, the same across restarts.
    pub port: u16,
    name: String,
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    log: Option<PathBuf>,
    ready_within: Duration,
    child: Option<Child>,
}

impl ServerProcess {
    /// `program` (a server called `name` in failures) on a free port; not started yet.
    /// Its arguments usually name [`ServerProcess::port`].
    pub fn new(name: &str, program: impl Into<OsString>) -> Self {
        Self {
            port: crate::free_port(),
            name: name.to_string(),
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            log: None,
            ready_within: Duration::from_mins(1),
            child: None,
        }
    }

    /// Adds arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets a variable of the server's environment.
    #[must_use]
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((name.into(), value.into()));
        self
    }

    /// Writes the server's stdout and stderr to `path`, new at each start (else nowhere).
    #[must_use]
    pub fn log(mut self, path: impl Into<PathBuf>) -> Self {
        self.log = Some(path.into());
        self
    }

    /// How long a start may take to open the port before the test fails (60 s unless set).
    #[must_use]
    pub fn ready_within(mut self, limit: Duration) -> Self {
        self.ready_within = limit;
        self
    }

    /// Starts it and waits until it listens; the test fails if it does not.
    #[must_use]
    pub fn started(mut self) -> Self {
        self.start();
        self
    }

    /// Starts it (again, on the same port) and waits until it listens.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let (stdout, stderr) = match &self.log {
            Some(path) => {
                let file = std::fs::File::create(path)
                    .unwrap_or_else(|e| panic!("{} log {}: {e}", self.name, path.display()));
                (Stdio::from(file.try_clone().unwrap()), Stdio::from(file))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({}): {e}",
                    self.name,
                    self.program.display()
                )
            });
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < self.ready_within,
                "{} did not open port {} within {:?}",
                self.name,
                self.port,
                self.ready_within
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether it was started and not stopped or killed since.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Stops it as an operator would (SIGTERM) and waits until it is gone; kills it after
    /// 15 s. The processes it started for its connections are left as a real stop leaves
    /// them.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = kill(pid(&child), Signal::SIGTERM);
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills it at once (SIGKILL), with every process below it (an sshd serves each
    /// connection in one), as a crash would, and reaps it.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let below = descendants(child.id());
        let _ = child.kill();
        let _ = child.wait();
        for p in below {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
    }

    /// Freezes it (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    fn signal(&self, signal: Signal) {
        let child = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        kill(pid(child), signal).unwrap_or_else(|e| panic!("{signal} to {}: {e}", self.name));
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn pid(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).expect("a process id fits in an i32"))
}

/// Every process below `pid`, from /proc.
fn descendants(pid: u32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let child: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            // The command name in parentheses may hold spaces: the fields after it count.
            let parent = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((child, parent))
        })
        .collect();
    let mut out = Vec::new();
    let mut todo = vec![i32::try_from(pid).expect("a process id fits in an i32")];
    while let Some(p) = todo.pop() {
        for &(child, parent) in &parents {
            if parent == p {
                out.push(child);
                todo.push(child);
            }
        }
    }
    out
}
