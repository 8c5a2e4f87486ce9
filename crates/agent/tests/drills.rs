//! Restore drills against a local destination and moto's S3 (started by `tests/run.sh`):
//! a good backup passes (task, metrics, `tasks`), a damaged copy fails naming its
//! destination, the restore check executable runs in a scratch folder that is always
//! removed and never touches the live target, too little free space fails at once, and in
//! the daemon drills and backups on `@every 1s` never overlap.

mod common;

use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use service_backup::api::metrics::{Sample, drill as drill_metrics, prometheus};
use service_backup::config::{self, Config};
use service_backup::context::RunContext;
use service_backup::daemon;
use service_backup::drill::{self, DrillReport, scratch};
use service_backup::jobs::backup;
use service_backup::progress::Bar;
use service_backup::queue::Queue;
use service_backup::tasks::Tasks;
use service_backup::tasks::store::{Task, TaskKind};
use service_backup_core::format::Key;
use service_backup_core::task::TaskState;
use service_backup_testkit::{env, unique};
use tokio_util::sync::CancellationToken;

/// The S3 secret of the sites with a moto destination: it never appears in a reason.
const S3_SECRET: &str = "drills/S3+secret+access+key/never-printed";

/// How long anything the tests wait for may take.
const LIMIT: Duration = Duration::from_secs(90);

/// A folder with a key, a source folder, a live restore target, a local destination
/// (`disk`) and, with `s3`, a bucket of its own on moto (`objects`).
struct Site {
    dir: tempfile::TempDir,
    bucket: Option<String>,
}

impl Site {
    fn new(s3: bool, extra: &str) -> Self {
        common::secret(S3_SECRET);
        let site = Self {
            dir: tempfile::tempdir().unwrap(),
            bucket: s3.then(|| unique("drills")),
        };
        let source = site.path("source");
        std::fs::create_dir_all(source.join("meta")).unwrap();
        std::fs::write(
            source.join("dump.sql"),
            "INSERT INTO t VALUES (1);\n".repeat(1000),
        )
        .unwrap();
        std::fs::write(source.join("meta/info.json"), "{\"service\": \"test\"}\n").unwrap();
        std::fs::create_dir_all(site.path("live")).unwrap();
        std::fs::write(site.path("live/keep.txt"), "live data\n").unwrap();
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

    fn write_config(&self, extra: &str) {
        let d = self.dir.path().display();
        let s3 = self.bucket.as_ref().map_or_else(String::new, |bucket| {
            format!(
                "- type: s3\n  name: objects\n  config:\n    bucket_name: {bucket}\n    bucket_path: drills\n    \
                 access_key_id: AKIADRILLS000001\n    secret_access_key: {S3_SECRET}\n    \
                 endpoint_url: {}\n    region: us-east-1\n",
                env("SB_TEST_S3_ENDPOINT")
            )
        });
        // A schedule that does not fire during a test (03:00 on 1 January), unless given.
        let never = if extra.contains("cron_schedule") {
            ""
        } else {
            "cron_schedule: '0 3 1 1 *'\n"
        };
        let yaml = format!(
            "{never}destinations:\n- type: local\n  name: disk\n  config:\n    path: {d}/backups\n{s3}\
             source_folder: {d}/source\nstate_dir: {d}/state\ninstance_id: drill-vm\n\
             restore: {{target_folder: {d}/live}}\n\
             encryption:\n  key_file: {d}/backup.key\n{extra}"
        );
        std::fs::write(self.path("config.yml"), yaml).unwrap();
    }

    fn config(&self) -> Config {
        config::load(&self.path("config.yml")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// An executable script in the site, `body` run by `sh`.
    fn script(&self, name: &str, body: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    async fn context(&self) -> RunContext {
        RunContext::open(&self.config()).await.unwrap()
    }

    /// One backup now, to every destination.
    async fn backup(&self) {
        let report = backup::run(
            &self.config(),
            &self.context().await,
            "manual",
            None,
            Bar::hidden(),
        )
        .await
        .unwrap();
        assert!(report.succeeded(), "{:?}", report.problems);
    }

    /// One drill now, with `free` as the scratch space's free bytes.
    async fn drill(&self, free: drill::FreeSpace) -> DrillReport {
        let report = drill::run(&self.config(), &self.context().await, "schedule", free)
            .await
            .unwrap();
        // The reasons go into the task database and the logs.
        common::printed(&report.problems.join("\n"));
        report
    }

    async fn tasks(&self, kind: TaskKind) -> Vec<Task> {
        Tasks::open(&self.path("state"))
            .await
            .unwrap()
            .list(kind)
            .await
            .unwrap()
    }

    /// What the scratch space holds (it must be empty after every drill).
    fn scratch_entries(&self) -> Vec<PathBuf> {
        std::fs::read_dir(scratch::root(&self.path("state")))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    }

    /// The archive file of the local destination's only backup.
    fn local_archive(&self) -> PathBuf {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.to_string_lossy().ends_with(".tar.gz.enc") {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.path("backups"), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        out.remove(0)
    }
}

/// The real free space of the scratch filesystem.
const REAL: drill::FreeSpace = scratch::statvfs_free;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_backup_passes_the_drill_in_every_destination_with_a_task_and_metrics() {
    let site = Site::new(true, "verify_schedule: '@daily'\n");
    site.backup().await;
    let report = site.drill(REAL).await;
    assert!(report.succeeded(), "{:?}", report.problems);
    assert_eq!(report.verified, ["disk", "objects"]);

    let drills = site.tasks(TaskKind::Drill).await;
    assert_eq!(drills.len(), 1, "{drills:?}");
    let task = &drills[0];
    assert_eq!(task.state, TaskState::Done, "{task:?}");
    assert_eq!(task.trigger, "schedule");
    let backups = site.tasks(TaskKind::Backup).await;
    assert_eq!(
        task.backup_name, backups[0].backup_name,
        "the newest backup"
    );
    assert_eq!(task.size_in_bytes, backups[0].size_in_bytes);

    // The metrics: a datapoint in our backup type, and the Prometheus names.
    let points = drill_metrics::points(&drills);
    let value = |path: &str| points.iter().find(|p| p.path == path).map(|p| p.value);
    assert_eq!(value("backup.drill.last_status"), Some(1));
    assert_eq!(
        value("backup.drill.last_success_time"),
        Some(i128::from(task.updated_at.timestamp()))
    );
    let text = prometheus::render(Some(&Sample {
        time: 0,
        namespace: "ns".into(),
        points,
    }));
    assert!(
        text.contains("service_backup_drill_last_status{namespace=\"ns\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "service_backup_drill_last_success_timestamp_seconds{{namespace=\"ns\"}} {}\n",
            task.updated_at.timestamp()
        )),
        "{text}"
    );

    // `tasks` lists the drill beside the backup.
    let listed = common::run(site.dir.path(), &["tasks", "config.yml"]);
    listed.expect(0);
    let line = listed
        .stdout
        .lines()
        .find(|l| l.contains(" drill "))
        .unwrap_or_else(|| panic!("no drill in:\n{}", listed.stdout));
    assert!(
        line.contains(" done ") && line.contains(" schedule "),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_copy_fails_the_drill_naming_its_destination() {
    let site = Site::new(true, "verify_schedule: '@daily'\n");
    site.backup().await;
    let archive = site.local_archive();
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&archive, bytes).unwrap();

    let report = site.drill(REAL).await;
    assert_eq!(report.verified, ["objects"], "the S3 copy is sound");
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let problem = &report.problems[0];
    assert!(
        problem.starts_with("destination disk: backup ") && problem.contains("failed verification"),
        "{problem}"
    );
    let drills = site.tasks(TaskKind::Drill).await;
    assert_eq!(drills[0].state, TaskState::Failed);
    assert_eq!(drills[0].reason.as_deref(), Some(problem.as_str()));
    assert_eq!(
        drill_metrics::points(&drills),
        [service_backup::api::metrics::Point::new(
            "backup.drill.last_status",
            0
        )],
        "no success yet, and the last drill failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_without_a_backup_fails_the_drill() {
    let site = Site::new(false, "verify_schedule: '@daily'\n");
    let report = site.drill(REAL).await;
    assert_eq!(
        report.problems,
        ["destination disk: there is no backup of instance drill-vm to verify"]
    );
    assert_eq!(
        site.tasks(TaskKind::Drill).await[0].state,
        TaskState::Failed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restore_check_runs_in_a_scratch_folder_that_is_always_removed() {
    let site = Site::new(false, "");
    let seen = site.path("seen.txt");
    let check = site.script(
        "check.sh",
        &format!(
            "pwd > {seen}\necho \"$SERVICE_BACKUP_DRILL_DIR $SERVICE_BACKUP_DRILL_BACKUP\" >> {seen}\n\
             grep -c INSERT dump.sql >> {seen}\necho checking the restored data\n\
             echo 'table t is damaged' >&2\nexit $(cat {code})",
            seen = seen.display(),
            code = site.path("exit-code").display()
        ),
    );
    site.write_config(&format!(
        "verify_schedule: '@daily'\nrestore_check_executable: {check}\n"
    ));
    site.backup().await;
    // What a drill cut short by a crash left behind.
    let leftover = scratch::root(&site.path("state")).join("drill-20260101T000000.000Z");
    std::fs::create_dir_all(leftover.join("sub")).unwrap();
    std::fs::write(leftover.join("sub/old"), "x").unwrap();

    std::fs::write(site.path("exit-code"), "0").unwrap();
    let report = site.drill(REAL).await;
    assert!(report.succeeded(), "{:?}", report.problems);
    let seen_text = std::fs::read_to_string(&seen).unwrap();
    let lines: Vec<&str> = seen_text.lines().collect();
    let name = report.backup_name.clone().unwrap();
    let state = std::fs::canonicalize(site.path("state")).unwrap();
    assert!(
        lines[0].starts_with(&format!("{}/drills/drill-", state.display())),
        "the working folder: {seen_text}"
    );
    let (dir_var, backup_var) = lines[1].split_once(' ').unwrap();
    assert!(
        dir_var.starts_with(&format!("{}/drills/drill-", site.path("state").display())),
        "{dir_var}"
    );
    assert_eq!(
        Path::new(dir_var).file_name(),
        Path::new(lines[0]).file_name(),
        "the variable names the working folder"
    );
    assert_eq!(backup_var, name);
    assert_eq!(lines[2], "1000", "the restored dump is there");
    assert!(
        site.scratch_entries().is_empty(),
        "{:?}",
        site.scratch_entries()
    );

    std::fs::write(site.path("exit-code"), "3").unwrap();
    let report = site.drill(REAL).await;
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let problem = &report.problems[0];
    assert!(
        problem.starts_with(&format!("destination disk: backup {name}: the restore check executable exited with code 3 (its last output: ")),
        "{problem}"
    );
    assert!(
        problem.contains("checking the restored data") && problem.contains("table t is damaged"),
        "{problem}"
    );
    assert!(
        site.scratch_entries().is_empty(),
        "{:?}",
        site.scratch_entries()
    );
    let drills = site.tasks(TaskKind::Drill).await;
    assert_eq!(
        drills.iter().map(|t| t.state).collect::<Vec<_>>(),
        [TaskState::Done, TaskState::Failed]
    );
    assert_eq!(drills[1].reason.as_deref(), Some(problem.as_str()));
    // The live target was never written.
    assert_eq!(
        std::fs::read_to_string(site.path("live/keep.txt")).unwrap(),
        "live data\n"
    );
    assert_eq!(std::fs::read_dir(site.path("live")).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_little_free_space_fails_the_drill_before_it_downloads() {
    let site = Site::new(true, "");
    let seen = site.path("seen.txt");
    let check = site.script("check.sh", &format!("touch {}", seen.display()));
    site.write_config(&format!(
        "verify_schedule: '@daily'\nrestore_check_executable: {check}\n"
    ));
    site.backup().await;
    let report = site.drill(|_| Ok(1024 * 1024)).await;
    assert!(report.verified.is_empty(), "nothing was downloaded");
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let backup = &site.tasks(TaskKind::Backup).await[0];
    let (name, plain) = (
        backup.backup_name.clone().unwrap(),
        backup.size_in_bytes.unwrap(),
    );
    let root = scratch::root(&site.path("state"));
    assert_eq!(
        report.problems[0],
        format!(
            "not enough free space to restore backup {name} in {}: it needs 64.0 MiB ({} bytes) (its {:.1} KiB ({plain} bytes) of files and a margin), the filesystem has 1.0 MiB (1048576 bytes) free \
             (free space on the state_dir's filesystem, or move state_dir to a larger one)",
            root.display(),
            plain + scratch::MIN_MARGIN,
            plain as f64 / 1024.0
        )
    );
    assert!(!seen.exists(), "the check did not run");
    assert_eq!(
        site.tasks(TaskKind::Drill).await[0].state,
        TaskState::Failed
    );
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_daemon_drills_and_backups_due_together_never_overlap() {
    let site = Site::new(true, "");
    let dump = site.script("dump.sh", "sleep 0.3");
    let check = site.script("check.sh", "sleep 0.3\ntest -f dump.sql");
    site.write_config(&format!(
        "cron_schedule: '@every 1s'\nsource_executable: {dump}\n\
         verify_schedule: '@every 1s'\nrestore_check_executable: {check}\n"
    ));
    // What a drill cut short by a crash left behind: the daemon removes it as it starts.
    let leftover = scratch::root(&site.path("state")).join("drill-20260101T000000.000Z");
    std::fs::create_dir_all(&leftover).unwrap();

    let queue = Arc::new(Queue::default());
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(daemon::serve(
        site.path("config.yml"),
        site.config(),
        queue,
        shutdown.clone(),
    ));
    let s = &site;
    wait_until("two drills that passed and three backups", || async move {
        let done = |tasks: Vec<Task>| tasks.iter().filter(|t| t.state == TaskState::Done).count();
        done(s.tasks(TaskKind::Drill).await) >= 2 && done(s.tasks(TaskKind::Backup).await) >= 3
    })
    .await;
    shutdown.cancel();
    tokio::time::timeout(LIMIT, daemon)
        .await
        .expect("the daemon stops")
        .unwrap()
        .unwrap();

    assert!(!leftover.exists(), "the leftover is removed at start");
    assert!(
        site.scratch_entries().is_empty(),
        "{:?}",
        site.scratch_entries()
    );
    let drills = site.tasks(TaskKind::Drill).await;
    let backups = site.tasks(TaskKind::Backup).await;
    assert!(
        drills
            .iter()
            .any(|t| t.state == TaskState::Done && t.trigger == "schedule"),
        "{drills:?}"
    );
    // Each task is created once it holds the lock and finished before it lets go of it.
    for d in drills.iter().filter(|t| t.state != TaskState::Queued) {
        for b in backups.iter().filter(|t| t.state != TaskState::Queued) {
            assert!(
                d.updated_at <= b.created_at || b.updated_at <= d.created_at,
                "drill {} ({} to {}) overlaps backup {} ({} to {})",
                d.id,
                d.created_at,
                d.updated_at,
                b.id,
                b.created_at,
                b.updated_at
            );
        }
    }
}

/// Replays the review's finding 1: `<state_dir>/drills` made a link to a folder elsewhere.
/// The drill fails saying so; nothing there is deleted, written or made private, neither by
/// the drill nor by the clean-up that runs at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_at_the_scratch_folder_fails_the_drill_and_is_never_followed() {
    let site = Site::new(false, "");
    let seen = site.path("seen.txt");
    let check = site.script("check.sh", &format!("pwd > {}", seen.display()));
    site.write_config(&format!(
        "verify_schedule: '@daily'\nrestore_check_executable: {check}\n"
    ));
    site.backup().await;
    let outside = site.path("outside");
    std::fs::create_dir_all(outside.join("drill-20260101T000000.000Z")).unwrap();
    std::fs::write(outside.join("canary.txt"), "canary\n").unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = scratch::root(&site.path("state"));
    std::os::unix::fs::symlink(&outside, &root).unwrap();

    let report = site.drill(REAL).await;
    assert_eq!(
        report.problems,
        [format!(
            "the drill scratch folder {} is a symbolic link: refusing to follow it \
             (remove the link; the agent creates the folder itself)",
            root.display()
        )]
    );
    assert!(!seen.exists(), "the check did not run");
    let drills = site.tasks(TaskKind::Drill).await;
    assert_eq!(drills[0].state, TaskState::Failed, "{drills:?}");

    // The start-up clean-up leaves it alone too.
    scratch::clear(&root);
    let outside_entries = |o: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(o)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        outside_entries(&outside),
        ["canary.txt", "drill-20260101T000000.000Z"]
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("canary.txt")).unwrap(),
        "canary\n"
    );
    assert_eq!(
        std::fs::metadata(&outside).unwrap().permissions().mode() & 0o777,
        0o755,
        "not made private"
    );
    assert!(std::fs::symlink_metadata(&root).unwrap().is_symlink());
}

/// Replays the review's finding 3: a restore check executable that never exits held the
/// backup lock for good. With `restore_check_timeout`, its process group is stopped and the
/// drill fails saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_check_that_hangs_is_stopped_at_its_timeout() {
    let site = Site::new(false, "");
    let pid = site.path("sleep.pid");
    let check = site.script(
        "check.sh",
        &format!("sleep 3600 &\necho $! > {}\nwait", pid.display()),
    );
    site.write_config(&format!(
        "verify_schedule: '@daily'\nrestore_check_executable: {check}\nrestore_check_timeout: 1s\n"
    ));
    site.backup().await;
    let started = Instant::now();
    let report = tokio::time::timeout(LIMIT, site.drill(REAL))
        .await
        .expect("the drill ends");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let name = site.tasks(TaskKind::Backup).await[0]
        .backup_name
        .clone()
        .unwrap();
    assert_eq!(
        report.problems,
        [format!(
            "destination disk: backup {name}: the restore check executable timed out after 1s \
             and was stopped (make it faster, or raise restore_check_timeout)"
        )]
    );
    // The executable's own child went with it.
    let sleeper = std::fs::read_to_string(&pid).unwrap();
    let proc_dir = PathBuf::from(format!("/proc/{}", sleeper.trim()));
    wait_until("the hanging check's child is gone", || {
        let gone = std::fs::read_to_string(proc_dir.join("stat"))
            .map_or(true, |stat| stat.contains(") Z "));
        async move { gone }
    })
    .await;
    assert!(
        site.scratch_entries().is_empty(),
        "{:?}",
        site.scratch_entries()
    );
    // The lock is free again: a backup runs.
    site.backup().await;
}

/// Replays the review's finding 12: a newer manifest that claims this instance
/// (`instance_id: drill-vm`) for a backup named for another (`…-other-inst-…`) is not
/// drilled; this instance's own newest backup is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_claiming_this_instance_under_another_name_is_not_drilled() {
    let site = Site::new(false, "verify_schedule: '@daily'\n");
    site.backup().await;
    let own = site.tasks(TaskKind::Backup).await[0]
        .backup_name
        .clone()
        .unwrap();
    let archive = site.local_archive();
    let folder = archive.parent().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join(format!("{own}.json"))).unwrap())
            .unwrap();
    // One minute later, so that it lists first.
    let started = chrono::NaiveDateTime::parse_from_str(&own[..16], "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc()
        + chrono::TimeDelta::minutes(1);
    let other = format!("{}-other-inst-0000abcd", started.format("%Y%m%dT%H%M%SZ"));
    let ext = archive
        .file_name()
        .unwrap()
        .to_string_lossy()
        .strip_prefix(own.as_str())
        .unwrap()
        .to_string();
    let mut planted = manifest.clone();
    planted["name"] = other.clone().into();
    planted["archive"] = format!("{other}{ext}").into();
    planted["started_at"] = started.to_rfc3339().into();
    planted["finished_at"] = started.to_rfc3339().into();
    assert_eq!(planted["instance_id"], "drill-vm");
    std::fs::copy(&archive, folder.join(format!("{other}{ext}"))).unwrap();
    std::fs::write(
        folder.join(format!("{other}.json")),
        serde_json::to_vec_pretty(&planted).unwrap(),
    )
    .unwrap();

    let report = site.drill(REAL).await;
    assert!(report.succeeded(), "{:?}", report.problems);
    assert_eq!(report.backup_name.as_deref(), Some(own.as_str()));
    let drills = site.tasks(TaskKind::Drill).await;
    assert_eq!(drills[0].backup_name.as_deref(), Some(own.as_str()));
}
