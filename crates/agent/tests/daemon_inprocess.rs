//! The daemon run inside the test process, on a temporary state dir and a local
//! destination: the schedule, the queue, the shutdown token and the reload path. Signals,
//! exit codes and logs, which need a process, are tested through the binary in `daemon.rs`.

use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use service_backup::config::{self, Config};
use service_backup::context;
use service_backup::daemon;
use service_backup::destinations;
use service_backup::queue::{Enqueued, Queue};
use service_backup::tasks::Tasks;
use service_backup::tasks::store::{Task, TaskKind};
use service_backup_core::catalog::{BackupEntry, list_backups};
use service_backup_core::format::Key;
use service_backup_core::task::TaskState;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long anything the tests wait for may take.
const LIMIT: Duration = Duration::from_mins(1);

/// A folder with a configuration, a key, a source folder and a local destination.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    /// A site whose configuration ends with `extra` (a schedule, executables).
    fn new(extra: &str) -> Self {
        let site = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let source = site.path("source");
        std::fs::create_dir_all(source.join("meta")).unwrap();
        std::fs::write(
            source.join("dump.sql"),
            "INSERT INTO t VALUES (1);\n".repeat(1000),
        )
        .unwrap();
        std::fs::write(source.join("meta/info.json"), "{\"service\": \"test\"}\n").unwrap();
        let key = Key::generate().unwrap();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(site.path("backup.key"))
            .unwrap();
        std::io::Write::write_all(
            &mut file,
            format!("{}\n", key.to_base64().as_str()).as_bytes(),
        )
        .unwrap();
        site.write_config(extra);
        site
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config_file(&self) -> PathBuf {
        self.path("config.yml")
    }

    fn write_config(&self, extra: &str) {
        let d = self.dir.path().display();
        let yaml = format!(
            "destinations:\n- type: local\n  name: disk\n  config:\n    path: {d}/backups\n\
             source_folder: {d}/source\nstate_dir: {d}/state\n\
             encryption:\n  key_file: {d}/backup.key\n{extra}"
        );
        std::fs::write(self.config_file(), yaml).unwrap();
    }

    fn config(&self) -> Config {
        config::load(&self.config_file()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// An executable script in the site, `body` run by `sh`.
    fn script(&self, name: &str, body: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    /// The complete backups the destination lists.
    async fn backups(&self) -> Vec<BackupEntry> {
        self.list().await.unwrap()
    }

    /// How many complete backups the destination lists, while a backup may be writing to
    /// it (a listing that races with a temporary file's removal counts as none).
    async fn listed_while_running(&self) -> usize {
        self.list().await.map_or(0, |l| l.len())
    }

    async fn list(&self) -> service_backup_core::Result<Vec<BackupEntry>> {
        let config = self.config();
        let target = destinations::build(&config, &config.destinations[0])?;
        list_backups(&*target.destination, &target.layout).await
    }

    /// The backup tasks, oldest first (read once the daemon has stopped).
    async fn backup_tasks(&self) -> Vec<Task> {
        let tasks = Tasks::open(&context::state_dir(&self.config()))
            .await
            .unwrap();
        tasks.list(TaskKind::Backup).await.unwrap()
    }

    /// Every file under the destination's folder, hidden ones (temporary uploads) included.
    fn stored_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.path("backups"), &mut out);
        out
    }
}

/// A daemon serving a site inside this process.
struct Running {
    queue: Arc<Queue>,
    shutdown: CancellationToken,
    task: JoinHandle<service_backup_core::Result<()>>,
}

impl Running {
    fn start(site: &Site) -> Self {
        let queue = Arc::new(Queue::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(daemon::serve(
            site.config_file(),
            site.config(),
            queue.clone(),
            shutdown.clone(),
        ));
        Self {
            queue,
            shutdown,
            task,
        }
    }

    /// Cancels the shutdown token and waits for the daemon to return.
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("the daemon stops after the shutdown token")
            .expect("the daemon does not panic")
            .expect("the daemon stops without error");
    }
}

/// Waits until `check` holds, polling.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < LIMIT, "{what} within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A schedule that does not fire during a test (03:00 on 1 January).
const NEVER: &str = "cron_schedule: \"0 3 1 1 *\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_backup_runs_and_is_listed() {
    let site = Site::new("cron_schedule: \"@every 1s\"\n");
    let daemon = Running::start(&site);
    let s = &site;
    wait_until("a scheduled backup is listed", || async move {
        s.listed_while_running().await > 0
    })
    .await;
    daemon.stop().await;
    let listed = site.backups().await;
    let tasks = site.backup_tasks().await;
    let done: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.state == TaskState::Done)
        .collect();
    assert!(!done.is_empty(), "a done backup task: {tasks:?}");
    for task in &done {
        assert_eq!(task.trigger, "schedule");
        let name = task
            .backup_name
            .as_deref()
            .expect("a done backup has a name");
        assert!(
            listed.iter().any(|e| e.manifest.name == name),
            "the backup {name} of a done task is listed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_asked_for_while_one_runs_waits_and_later_ones_coalesce() {
    let site = Site::new("");
    let (started, go) = (site.path("started"), site.path("go"));
    let dump = site.script(
        "dump.sh",
        &format!(
            "echo x >> '{}'\nwhile [ ! -e '{}' ]; do sleep 0.05; done",
            started.display(),
            go.display()
        ),
    );
    site.write_config(&format!("{NEVER}source_executable: {dump}\n"));
    let daemon = Running::start(&site);

    assert_eq!(daemon.queue.request(false), Enqueued::Started);
    let marker = &started;
    wait_until("the first backup's source executable runs", || async move {
        marker.exists()
    })
    .await;
    assert_eq!(daemon.queue.request(false), Enqueued::Queued);
    assert_eq!(daemon.queue.request(false), Enqueued::Coalesced);
    assert_eq!(daemon.queue.request(false), Enqueued::Coalesced);
    assert_eq!(
        daemon.queue.request(true),
        Enqueued::Rejected,
        "with exit_if_in_progress a request while one runs is refused"
    );

    std::fs::write(&go, "").unwrap();
    let s = &site;
    wait_until("the waiting backup runs after the first", || async move {
        s.listed_while_running().await >= 2
    })
    .await;
    // Long enough for a third run to show, if the coalesced requests had not run as one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    daemon.stop().await;

    assert_eq!(
        site.backups().await.len(),
        2,
        "the first backup and one for the waiting and coalesced requests"
    );
    let runs = std::fs::read_to_string(&started).unwrap();
    assert_eq!(runs.lines().count(), 2, "the source executable ran twice");
    let tasks = site.backup_tasks().await;
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    assert!(
        tasks.iter().all(|t| t.state == TaskState::Done),
        "{tasks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_token_cancels_the_running_backup_and_leaves_nothing_listed() {
    let site = Site::new(NEVER);
    // Incompressible, so that the upload takes long enough to be stopped midway.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let data: Vec<u8> = (0..96 * 1024 * 1024 / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    std::fs::write(site.path("source/random.bin"), data).unwrap();
    let daemon = Running::start(&site);

    assert_eq!(daemon.queue.request(false), Enqueued::Started);
    let s = &site;
    wait_until("the upload writes its temporary file", || async move {
        !s.stored_files().is_empty()
    })
    .await;
    daemon.stop().await;

    assert!(
        site.backups().await.is_empty(),
        "a cancelled backup is not listed"
    );
    let left: Vec<PathBuf> = site
        .stored_files()
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(".tmp-"))
        })
        .collect();
    assert!(left.is_empty(), "temporary upload files left: {left:?}");
    let tasks = site.backup_tasks().await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].state, TaskState::Failed);
    assert_eq!(tasks[0].reason.as_deref(), Some("terminated"));
}

#[test]
fn a_reload_keeps_the_configuration_in_force_when_the_new_one_is_bad() {
    let site = Site::new("cron_schedule: \"*/5 * * * *\"\n");
    let config = RwLock::new(site.config());
    let source = |c: &RwLock<Config>| c.read().unwrap().source_folder.clone();
    let before = source(&config);

    std::fs::write(site.config_file(), "destinations: [\n  broken").unwrap();
    assert!(
        !daemon::reload(&site.config_file(), &config),
        "a configuration that does not parse is refused"
    );
    assert_eq!(
        source(&config),
        before,
        "the previous configuration is kept"
    );

    site.write_config("cron_schedule: \"not a schedule\"\n");
    assert!(
        !daemon::reload(&site.config_file(), &config),
        "an invalid configuration is refused"
    );
    assert_eq!(
        source(&config),
        before,
        "the previous configuration is kept"
    );

    std::fs::create_dir_all(site.path("other")).unwrap();
    let d = site.dir.path().display();
    std::fs::write(
        site.config_file(),
        format!(
            "destinations:\n- type: local\n  config:\n    path: {d}/backups\n\
             source_folder: {d}/other\nstate_dir: {d}/state\ncron_schedule: \"*/5 * * * *\"\n"
        ),
    )
    .unwrap();
    assert!(
        daemon::reload(&site.config_file(), &config),
        "a valid configuration is taken"
    );
    assert_eq!(source(&config), Some(site.path("other")));
}
