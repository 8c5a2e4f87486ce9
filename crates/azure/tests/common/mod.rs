//! What the tests against Azurite share: the server's address from the environment,
//! settings, unique names, and Azurite instances of a test's own.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use service_backup_azure::{AzureDestination, AzureSettings};
use service_backup_core::destination::RetryPolicy;
use service_backup_core::secret::Secret;

/// An environment variable that `tests/run.sh` sets; a test fails without it.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through tests/run.sh, which starts the server")
    })
}

/// Azurite's account key (public, but handled as the secret it stands for).
pub fn key() -> String {
    env("SB_TEST_AZURE_KEY")
}

/// A name no other test run uses: container names allow lowercase letters and digits.
pub fn unique(what: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{what}-{}-{nanos:09}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Retries that give up within a second or two.
pub fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        budget: Duration::from_secs(5),
    }
}

/// Settings for `container` on the shared server.
pub fn settings(container: &str) -> AzureSettings {
    settings_at(&env("SB_TEST_AZURE_ENDPOINT"), container)
}

/// Settings for `container` on the blob endpoint `endpoint`.
pub fn settings_at(endpoint: &str, container: &str) -> AzureSettings {
    AzureSettings {
        storage_account: env("SB_TEST_AZURE_ACCOUNT"),
        storage_access_key: Secret::new(key()),
        container: container.to_string(),
        endpoint: endpoint.to_string(),
        retry: quick_retry(),
    }
}

/// A destination in a new container of the shared server.
pub fn destination() -> AzureDestination {
    AzureDestination::new(settings(&unique("conf"))).unwrap()
}

/// The SDK's client of a container, to do what the destination never does (delete it).
pub fn sdk_container(settings: &AzureSettings) -> azure_storage_blobs::prelude::ContainerClient {
    let credentials = azure_storage::StorageCredentials::access_key(
        settings.storage_account.clone(),
        azure_core::auth::Secret::new(settings.storage_access_key.expose().to_string()),
    );
    let location = azure_storage::CloudLocation::Custom {
        account: settings.storage_account.clone(),
        uri: settings.endpoint.clone(),
    };
    azure_storage_blobs::prelude::ClientBuilder::with_location(location, credentials)
        .container_client(settings.container.clone())
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An Azurite of a test's own, which the test may stop and start again.
pub struct Azurite {
    pub port: u16,
    child: Option<Child>,
    dir: std::path::PathBuf,
}

impl Azurite {
    /// Starts Azurite on a free port, its data in `dir`.
    pub fn start(dir: &Path) -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
            dir: dir.to_path_buf(),
        };
        server.restart();
        server
    }

    /// The blob endpoint.
    pub fn endpoint(&self) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            env("SB_TEST_AZURE_ACCOUNT")
        )
    }

    /// Starts the server again on the same port and data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = std::fs::File::create(self.dir.join("azurite.log")).unwrap();
        let child = Command::new(env("SB_TEST_AZURITE_BIN"))
            .args(["--blobHost", "127.0.0.1", "--blobPort"])
            .arg(self.port.to_string())
            .arg("--location")
            .arg(&self.dir)
            .args([
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
                "--silent",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("Azurite starts");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "Azurite did not open port {} within 60 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server as an operator would (SIGTERM), and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let start = Instant::now();
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if start.elapsed() > Duration::from_secs(15) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
