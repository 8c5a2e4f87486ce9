//! The BOSH job's lifecycle and BBR scripts run as the director and the bbr CLI run them,
//! on the rendered job laid out under a temporary folder instead of `/var/vcap`
//! (`common::bosh::relocate`), so that they need neither root nor a VM: `post-start` (with a
//! stand-in agent that records its arguments and exits with a chosen code, and with the real
//! agent's `check` after `pre-start`, as the director runs them), and `bin/bbr/metadata`, `backup` and `restore`
//! with the real binary, installed by the package's packaging script, through a real backup
//! into `BBR_ARTIFACT_DIRECTORY` and a real restore from it.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::bosh::{KEY, install_package, relocate, render};
use common::{sample_tree, tree};

/// The user the tests run as: the job's backup user, so that no user switch is needed.
fn this_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn executable(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// What a script run gave.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `job/bin/<script>` with `env`, as root's scripts are run: no arguments, the
/// environment given.
fn run_script(job: &Path, script: &str, env: &[(&str, &Path)]) -> Ran {
    let mut command = Command::new(job.join("bin").join(script));
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().unwrap();
    let ran = Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    common::printed(&ran.stdout);
    common::printed(&ran.stderr);
    ran
}

/// Renders `properties` (YAML under `service-backup:`) and lays the job out under `root`.
fn job_under(root: &Path, properties: &str) -> PathBuf {
    job_under_as(root, &this_user(), properties)
}

/// As [`job_under`], with `user` as the backup user.
fn job_under_as(root: &Path, user: &str, properties: &str) -> PathBuf {
    let rendered = render(&format!(
        "service-backup:\n  backup_user: {user}\n{properties}"
    ));
    rendered.expect_rendered();
    relocate(&rendered, root)
}

const WITH_DESTINATION: &str = "  destinations:\n  - {type: local, config: {path: /srv/nfs}}\n  \
                                source_folder: /srv/dump\n  cron_schedule: \"0 3 * * *\"\n";

/// A stand-in for the agent: records its arguments in `root/args`, prints a line, and
/// exits with the code in `root/code`.
fn stand_in_agent(root: &Path) {
    let args = root.join("args");
    let code = root.join("code");
    executable(
        &root.join("packages/service-backup/bin/service-backup"),
        &format!(
            "#!/bin/sh\necho \"$@\" > {args}\necho \"destination local: cannot write the probe\"\n\
             exit $(cat {code})\n",
            args = args.display(),
            code = code.display()
        ),
    );
}

#[test]
fn post_start_runs_check_and_fails_the_deploy_with_its_code() {
    for code in [0, 1, 2] {
        let root = tempfile::tempdir().unwrap();
        let job = job_under(root.path(), WITH_DESTINATION);
        stand_in_agent(root.path());
        std::fs::write(root.path().join("code"), code.to_string()).unwrap();
        let ran = run_script(&job, "post-start", &[]);
        assert_eq!(ran.code, code, "{} {}", ran.stdout, ran.stderr);
        // The check's own output is what the deploy shows.
        assert!(
            ran.stdout
                .contains("destination local: cannot write the probe"),
            "{}",
            ran.stdout
        );
        let args = std::fs::read_to_string(root.path().join("args")).unwrap();
        assert_eq!(
            args.trim(),
            format!("check {}", job.join("config/backup.yml").display())
        );
    }
}

#[test]
fn post_start_does_nothing_when_turned_off_or_when_backups_are_disabled() {
    for (properties, said) in [
        (
            format!("{WITH_DESTINATION}  post_start_check: false\n"),
            "post_start_check is false",
        ),
        (String::new(), "backups are disabled"),
    ] {
        let root = tempfile::tempdir().unwrap();
        let job = job_under(root.path(), &properties);
        stand_in_agent(root.path());
        std::fs::write(root.path().join("code"), "1").unwrap();
        let ran = run_script(&job, "post-start", &[]);
        assert_eq!(ran.code, 0, "{} {}", ran.stdout, ran.stderr);
        assert!(ran.stdout.contains(said), "{}", ran.stdout);
        assert!(
            !root.path().join("args").exists(),
            "the agent ran although the check is off"
        );
    }
}

/// A job with a source folder, a dump executable, a key, a restore target and a restore
/// executable, all under `root`, and the real agent installed.
struct Vm {
    root: tempfile::TempDir,
    job: PathBuf,
}

impl Vm {
    fn new(extra: &str) -> Self {
        Self::new_as(&this_user(), extra)
    }

    /// A job whose backup user is `user` (the folder open to it).
    fn new_as(user: &str, extra: &str) -> Self {
        common::secret(KEY);
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let r = root.path().display().to_string();
        sample_tree(&root.path().join("source"));
        std::fs::create_dir_all(root.path().join("nfs")).unwrap();
        executable(
            &root.path().join("dump"),
            &format!("#!/bin/sh\necho dumped > {r}/source/dump.rdb\n"),
        );
        executable(
            &root.path().join("load"),
            &format!("#!/bin/sh\necho \"$@\" > {r}/loaded\n"),
        );
        let job = job_under_as(
            root.path(),
            user,
            &format!(
                "  destinations:\n  - {{type: local, config: {{path: {r}/nfs}}}}\n  \
                 source_folder: {r}/source\n  source_executable: {r}/dump\n  \
                 cron_schedule: \"0 3 * * *\"\n  state_dir: {r}/state\n  \
                 encryption: {{key: {KEY}}}\n  \
                 restore: {{target_folder: {r}/restored, restore_executable: {r}/load --from-bbr}}\n{extra}"
            ),
        );
        install_package(&root.path().join("packages/service-backup"));
        Self { root, job }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// A bbr script with `BBR_ARTIFACT_DIRECTORY` set to `artifacts`, with the trailing
    /// slash bbr gives it.
    fn bbr(&self, script: &str, artifacts: &Path) -> Ran {
        let dir = PathBuf::from(format!("{}/", artifacts.display()));
        run_script(
            &self.job,
            &format!("bbr/{script}"),
            &[("BBR_ARTIFACT_DIRECTORY", &dir)],
        )
    }
}

/// The files under `dir`, relative to it, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            found.extend(files(&path).into_iter().map(|f| format!("{name}/{f}")));
        } else {
            found.push(name);
        }
    }
    found.sort();
    found
}

#[test]
fn bbr_backup_writes_one_archive_that_bbr_restore_brings_back() {
    let vm = Vm::new("");
    let metadata = run_script(&vm.job, "bbr/metadata", &[]);
    assert_eq!(
        (metadata.code, metadata.stdout.as_str()),
        (0, "---\nskip_bbr_scripts: false\n"),
        "{}",
        metadata.stderr
    );

    // backup: the dump executable, then one encrypted archive and its manifest in the
    // artifact folder, and nothing in the configured destination.
    let artifacts = vm.path("bbr-backup");
    std::fs::create_dir_all(&artifacts).unwrap();
    let ran = vm.bbr("backup", &artifacts);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let written = files(&artifacts);
    assert_eq!(written.len(), 2, "{written:?}");
    assert!(
        written.iter().any(|f| f.ends_with(".tar.gz.enc")),
        "{written:?}"
    );
    assert!(written.iter().any(|f| f.ends_with(".json")), "{written:?}");
    assert_eq!(files(&vm.path("nfs")), Vec::<String>::new());
    assert!(
        vm.path("source/dump.rdb").exists(),
        "the dump executable ran"
    );
    let archive = written.iter().find(|f| f.ends_with(".enc")).unwrap();
    let bytes = std::fs::read(artifacts.join(archive)).unwrap();
    assert!(
        !bytes.windows(6).any(|w| w == b"dumped"),
        "the archive is not encrypted"
    );

    // restore, from the copy bbr brings back to a new folder: the source's content in
    // restore.target_folder, then the restore executable.
    let copied = vm.path("bbr-restore");
    let status = Command::new("cp")
        .arg("-r")
        .arg(&artifacts)
        .arg(&copied)
        .status()
        .unwrap();
    assert!(status.success());
    // bbr copies the files back with an owner and modes of its own: here another user's,
    // readable by that user only. The restore hands them to the backup user first.
    let as_root = this_user() == "root";
    if as_root {
        for name in files(&copied) {
            let file = copied.join(name);
            std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    let ran = vm.bbr("restore", &copied);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(tree(&vm.path("restored")), tree(&vm.path("source")));
    if as_root {
        use std::os::unix::fs::MetadataExt as _;
        for name in files(&copied) {
            let owner = std::fs::metadata(copied.join(&name)).unwrap().uid();
            assert_eq!(
                owner, 0,
                "{name} was not handed to the backup user (root here)"
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(vm.path("loaded")).unwrap(),
        "--from-bbr\n"
    );

    // A second restore replaces what the first left (bbr restores onto a used VM too).
    std::fs::write(vm.path("restored/stray"), "x").unwrap();
    let ran = vm.bbr("restore", &copied);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(tree(&vm.path("restored")), tree(&vm.path("source")));
}

#[test]
fn bbr_scripts_fail_with_a_message_and_leave_nothing() {
    let vm = Vm::new("");
    // No archive in the artifact folder.
    let empty = vm.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let ran = vm.bbr("restore", &empty);
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    assert!(
        ran.stderr
            .contains("expected one archive of service-backup"),
        "{}",
        ran.stderr
    );
    assert!(!vm.path("restored").exists() || files(&vm.path("restored")).is_empty());
    assert!(!vm.path("loaded").exists(), "the restore executable ran");

    // Without the variable bbr sets.
    let ran = run_script(&vm.job, "bbr/backup", &[]);
    assert_ne!(ran.code, 0);
    assert!(
        ran.stderr.contains("BBR_ARTIFACT_DIRECTORY"),
        "{}",
        ran.stderr
    );

    // A failing dump executable fails the backup, and no archive is left for bbr.
    executable(
        &vm.path("dump"),
        "#!/bin/sh\necho 'dump failed' >&2\nexit 3\n",
    );
    let artifacts = vm.path("bbr-backup");
    std::fs::create_dir_all(&artifacts).unwrap();
    let ran = vm.bbr("backup", &artifacts);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        files(&artifacts).iter().all(|f| !f.contains(".tar.")),
        "{:?}",
        files(&artifacts)
    );
}

#[test]
fn bbr_metadata_skips_the_scripts_when_turned_off_or_without_a_source_folder() {
    let vm = Vm::new("  bbr: {enabled: false}\n");
    let ran = run_script(&vm.job, "bbr/metadata", &[]);
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "---\nskip_bbr_scripts: true\n")
    );
    let root = tempfile::tempdir().unwrap();
    let job = job_under(root.path(), "");
    let ran = run_script(&job, "bbr/metadata", &[]);
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "---\nskip_bbr_scripts: true\n")
    );
}

/// Bad input of `backup --to-dir`, the flag the bbr backup script uses: each refused with
/// exit 2 and its message, nothing written.
#[test]
fn backup_to_dir_refuses_a_missing_folder_and_a_config_without_source_folder() {
    let env = common::Env::new();
    let missing = env.path("no-such-folder");
    let ran = env.run(&[
        "backup",
        "config.yml",
        "--to-dir",
        missing.to_str().unwrap(),
    ]);
    ran.expect(2);
    assert!(
        ran.stderr.contains(&format!(
            "backup --to-dir {}: not a folder",
            missing.display()
        )),
        "{}",
        ran.stderr
    );
    assert!(!missing.exists());
    assert!(!env.path("backups").exists(), "the destination was written");

    let folder = env.path("artifacts");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(env.path("bare.yml"), "destinations: []\n").unwrap();
    let ran = env.run(&["backup", "bare.yml", "--to-dir", folder.to_str().unwrap()]);
    ran.expect(2);
    assert!(
        ran.stderr
            .contains("backup --to-dir needs source_folder in the configuration"),
        "{}",
        ran.stderr
    );
    assert_eq!(files(&folder), Vec::<String>::new());

    // A link, even with bbr's trailing slash: its target is not written.
    let link = env.path("link");
    std::os::unix::fs::symlink(&folder, &link).unwrap();
    let given = format!("{}/", link.display());
    let ran = env.run(&["backup", "config.yml", "--to-dir", &given]);
    ran.expect(2);
    assert!(
        ran.stderr.contains(&format!(
            "backup --to-dir {}: refusing a symbolic link; give the folder itself",
            link.display()
        )),
        "{}",
        ran.stderr
    );
    assert_eq!(files(&folder), Vec::<String>::new());
}

/// bbr copies the artifacts back as root; a root-owned 0600 archive is readable by the
/// backup user once `bin/bbr/restore` handed the folder to it (run as root only: another
/// backup user is needed).
#[test]
fn bbr_restore_reads_root_owned_artifacts_as_another_backup_user() {
    assert_eq!(this_user(), "root", "these tests run as root");
    let vm = Vm::new_as("nobody", "");
    let artifacts = vm.path("bbr-backup");
    std::fs::create_dir_all(&artifacts).unwrap();
    let ran = vm.bbr("backup", &artifacts);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let copied = vm.path("bbr-restore");
    let status = Command::new("cp")
        .arg("-r")
        .arg(&artifacts)
        .arg(&copied)
        .status()
        .unwrap();
    assert!(status.success());
    for name in files(&copied) {
        let file = copied.join(name);
        std::os::unix::fs::chown(&file, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let ran = vm.bbr("restore", &copied);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(tree(&vm.path("restored")), tree(&vm.path("source")));
}

/// The artifact folder bbr gives is handed to the backup user: a symbolic link there is
/// refused (root would otherwise chown its target), and a link planted under it for the
/// day's folder does not send the archive elsewhere.
#[test]
fn bbr_scripts_refuse_links_in_the_artifact_folder() {
    use std::os::unix::fs::MetadataExt as _;
    let vm = Vm::new("");
    let target = vm.path("elsewhere");
    std::fs::create_dir_all(&target).unwrap();
    let before = std::fs::metadata(&target).unwrap().uid();
    let link = vm.path("bbr-link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for script in ["backup", "restore"] {
        let ran = vm.bbr(script, &link);
        assert_eq!(ran.code, 1, "{script}: {}\n{}", ran.stdout, ran.stderr);
        assert!(
            ran.stderr.contains(&format!(
                "refusing BBR_ARTIFACT_DIRECTORY {}: it is a symbolic link",
                link.display()
            )),
            "{script}: {}",
            ran.stderr
        );
    }
    assert_eq!(std::fs::metadata(&target).unwrap().uid(), before);
    assert_eq!(files(&target), Vec::<String>::new());
    assert!(!vm.path("loaded").exists(), "the restore executable ran");

    // A day folder planted as a link to elsewhere: refused, nothing written there.
    let artifacts = vm.path("bbr-backup");
    let today = chrono::Utc::now().format("%Y/%m").to_string();
    std::fs::create_dir_all(artifacts.join(&today)).unwrap();
    let day = chrono::Utc::now().format("%Y/%m/%d").to_string();
    std::os::unix::fs::symlink(&target, artifacts.join(&day)).unwrap();
    let ran = vm.bbr("backup", &artifacts);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr.contains("symbolic link"),
        "{}\n{}",
        ran.stdout,
        ran.stderr
    );
    assert_eq!(files(&target), Vec::<String>::new());
}

#[test]
fn post_start_with_the_real_agent_passes_a_working_destination_and_fails_a_broken_one() {
    let vm = Vm::new("");
    // The director's order: pre-start (which secures the rendered secret files), the
    // agent's start, then post-start.
    let ran = run_script(&vm.job, "pre-start", &[]);
    assert_eq!(ran.code, 0, "{} {}", ran.stdout, ran.stderr);
    let ran = run_script(&vm.job, "post-start", &[]);
    assert_eq!(ran.code, 0, "{} {}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("ok"), "{}", ran.stdout);
    assert!(
        files(&vm.path("nfs")).is_empty(),
        "the probe was left behind"
    );

    // The destination's folder replaced by a file: no probe can be written, even as root,
    // and the deploy fails with the check's exit code and its reason.
    std::fs::remove_dir(vm.path("nfs")).unwrap();
    std::fs::write(vm.path("nfs"), "not a folder").unwrap();
    let ran = run_script(&vm.job, "post-start", &[]);
    assert_eq!(ran.code, 1, "{} {}", ran.stdout, ran.stderr);
    let said = format!("{}{}", ran.stdout, ran.stderr);
    assert!(said.contains("FAILED"), "{said}");
    assert!(said.contains("check failed for destination"), "{said}");
    assert_eq!(
        std::fs::read_to_string(vm.path("nfs")).unwrap(),
        "not a folder"
    );
}
