//! The servers the tests start for themselves, each a [`ServerProcess`] configured for one
//! program that `tests/run.sh` installed: moto (S3), Azurite (Azure Blob storage),
//! fake-gcs-server (Google Cloud Storage) and OpenSSH's sshd.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::Duration;

use crate::env;
use crate::server::ServerProcess;

/// A moto S3 server on a free port, not started; its state is in memory, so a restart
/// starts empty. Its endpoint is [`ServerProcess::url`] of `""`.
pub fn moto() -> ServerProcess {
    let server = ServerProcess::new("moto", env("SB_TEST_MOTO_SERVER"));
    let port = server.port.to_string();
    server.args(["-H", "127.0.0.1", "-p", &port])
}

/// An Azurite blob service on a free port, not started, its data and log in `dir` (kept
/// across restarts). Its endpoint is [`azurite_endpoint`].
pub fn azurite(dir: &Path) -> ServerProcess {
    std::fs::create_dir_all(dir).unwrap();
    let server = ServerProcess::new("Azurite", env("SB_TEST_AZURITE_BIN"));
    let port = server.port.to_string();
    server
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port, "--location"])
        .args([dir])
        .args([
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
            "--silent",
        ])
        .log(dir.join("azurite.log"))
}

/// The blob endpoint of an Azurite, with the test account.
pub fn azurite_endpoint(server: &ServerProcess) -> String {
    server.url(&format!("/{}", env("SB_TEST_AZURE_ACCOUNT")))
}

/// A fake-gcs-server on a free port, not started, its objects under `dir` (kept across
/// restarts) and its log in it. Its JSON API's base URL is [`ServerProcess::url`] of `""`.
pub fn fake_gcs(dir: &Path) -> ServerProcess {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let server = ServerProcess::new("fake-gcs-server", env("SB_TEST_GCS_BIN"));
    let port = server.port.to_string();
    let url = server.url("");
    server
        .args(["-scheme", "http", "-host", "127.0.0.1", "-port", &port])
        .args([
            "-external-url",
            &url,
            "-backend",
            "filesystem",
            "-filesystem-root",
        ])
        .args([root])
        .log(dir.join("fake-gcs-server.log"))
}

/// An sshd of the test's own (the program `tests/servers/scp.sh` found), with the shared
/// test server's authorized keys, its configuration and log in a folder of its own. It
/// derefs to its [`ServerProcess`] (port, start, stop, kill, pause).
pub struct Sshd {
    server: ServerProcess,
    // After `server`: the folder outlives the process.
    dir: tempfile::TempDir,
}

impl Sshd {
    /// Started, with the shared test server's host keys.
    pub fn start() -> Self {
        let sshd = Self::stopped();
        let keys = env("SB_TEST_SCP_HOST_KEYS");
        sshd.set_host_keys(keys.split(':').map(Path::new));
        sshd.started()
    }

    /// Not started and with no host key yet: [`Sshd::set_host_keys`] comes first.
    pub fn stopped() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = ServerProcess::new("sshd", env("SB_TEST_SCP_SSHD"))
            .args(["-D", "-f"])
            .args([dir.path().join("sshd_config")])
            .args(["-E"])
            .args([dir.path().join("sshd.log")])
            .ready_within(Duration::from_secs(10));
        Self { server, dir }
    }

    /// Starts it and waits until it listens.
    #[must_use]
    pub fn started(mut self) -> Self {
        self.server.start();
        self
    }

    /// Its folder: configuration, pid file and log (`sshd.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes its configuration with these host keys (and no other); it takes effect at
    /// the next start.
    pub fn set_host_keys<'a>(&self, keys: impl IntoIterator<Item = &'a Path>) {
        let host_keys: String = keys
            .into_iter()
            .map(|k| format!("HostKey {}\n", k.display()))
            .collect();
        let config = format!(
            "Port {}\nListenAddress 127.0.0.1\n{host_keys}AuthorizedKeysFile {}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n\
             UsePAM no\nPidFile {}/sshd.pid\nSubsystem sftp internal-sftp\n",
            self.server.port,
            env("SB_TEST_SCP_AUTHORIZED_KEYS"),
            self.dir().display()
        );
        std::fs::write(self.dir().join("sshd_config"), config).unwrap();
    }
}

impl Deref for Sshd {
    type Target = ServerProcess;

    fn deref(&self) -> &ServerProcess {
        &self.server
    }
}

impl DerefMut for Sshd {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.server
    }
}
