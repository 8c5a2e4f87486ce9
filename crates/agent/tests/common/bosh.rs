//! Rendering the BOSH job (`jobs/service-backup/`) as the director does, with
//! `tests/bosh/render.rb` and the ruby of `tests/servers/ruby.sh` (`SB_TEST_RUBY`), and
//! installing its package as the director's compile step does.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::Value;

use super::{Run, run, server_env};

/// A key as `service-backup keygen` prints it (32 bytes in base64).
pub const KEY: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn job_dir() -> PathBuf {
    repo().join("jobs/service-backup")
}

/// What rendering a manifest gave: the exit code, stderr, and the job's rendered files.
pub struct Rendered {
    pub dir: tempfile::TempDir,
    pub code: i32,
    pub stderr: String,
}

impl Rendered {
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    pub fn file(&self, rel: &str) -> String {
        std::fs::read_to_string(self.out().join(rel))
            .unwrap_or_else(|e| panic!("rendered {rel}: {e}"))
    }

    pub fn expect_rendered(&self) -> &Self {
        assert_eq!(self.code, 0, "render failed:\n{}", self.stderr);
        self
    }

    /// `service-backup validate` on the rendered config, from the rendered job's folder,
    /// once the files with secrets are 0600, as the job's scripts make them (`prepare` in
    /// helpers.sh) before the agent reads them.
    pub fn validate(&self) -> Run {
        for file in ["backup.yml", "backup.key", "api-tokens", "api-tls.key"] {
            let path = self.out().join("config").join(file);
            if path.exists() {
                let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
                std::fs::set_permissions(&path, mode).unwrap();
            }
        }
        let config = self.out().join("config/backup.yml");
        run(self.dir.path(), &["validate", config.to_str().unwrap()])
    }

    /// The rendered config as YAML.
    pub fn config(&self) -> Value {
        serde_norway::from_str(&self.file("config/backup.yml")).expect("rendered YAML parses")
    }

    /// `bash -n` on every rendered script (`bin/` and `bin/bbr/`); returns how many were
    /// checked.
    pub fn check_scripts(&self) -> usize {
        let mut paths = Vec::new();
        for folder in ["bin", "bin/bbr"] {
            for entry in std::fs::read_dir(self.out().join(folder)).expect("rendered bin/") {
                let path = entry.unwrap().path();
                if path.is_file() {
                    paths.push(path);
                }
            }
        }
        let mut checked = 0;
        for path in paths {
            let out = Command::new("bash")
                .arg("-n")
                .arg(&path)
                .output()
                .expect("bash runs");
            assert!(
                out.status.success(),
                "bash -n {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
        checked
    }
}

/// Renders the job for `manifest` (a deployment manifest or a bare properties mapping).
pub fn render(manifest: &str) -> Rendered {
    render_with(&job_dir(), manifest, &[], &[])
}

/// Renders the job in `job` for `manifest` after the operations of `ops_files` (YAML
/// texts, as `bosh deploy -o`), with the jobs of `providers` providing its links.
pub fn render_with(
    job: &Path,
    manifest: &str,
    ops_files: &[&str],
    providers: &[&Path],
) -> Rendered {
    let ruby = server_env("SB_TEST_RUBY");
    let dir = tempfile::tempdir().unwrap();
    let manifest_path = dir.path().join("manifest.yml");
    std::fs::write(&manifest_path, manifest).unwrap();
    let mut command = Command::new(&ruby);
    command
        .arg(repo().join("tests/bosh/render.rb"))
        .arg(job)
        .arg(&manifest_path)
        .arg(dir.path().join("out"));
    for (i, ops) in ops_files.iter().enumerate() {
        let path = dir.path().join(format!("ops-{i}.yml"));
        std::fs::write(&path, ops).unwrap();
        command.arg("--ops-file").arg(path);
    }
    for provider in providers {
        command.arg("--provider").arg(provider);
    }
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{ruby} does not run: {e}"));
    Rendered {
        dir,
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The blob the package's spec names, relative to the package's compile folder.
pub const BLOB: &str = "service-backup/service-backup-linux-amd64";

/// Runs `packages/service-backup/packaging` as the director's compile step does (the
/// blob, here the binary under test, in the working folder; `BOSH_INSTALL_TARGET` set)
/// and returns the installed binary's path.
pub fn install_package(target: &Path) -> PathBuf {
    let compile = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(compile.path().join("service-backup")).unwrap();
    std::fs::copy(super::binary(), compile.path().join(BLOB)).unwrap();
    let out = Command::new("bash")
        .arg(repo().join("packages/service-backup/packaging"))
        .current_dir(compile.path())
        .env("BOSH_INSTALL_TARGET", target)
        .output()
        .unwrap();
    assert!(out.status.success(), "packaging: {out:?}");
    target.join("bin/service-backup")
}

/// The rendered job laid out as on a VM, but under `root` instead of `/var/vcap`: the job's
/// files in `root/jobs/service-backup` with every `/var/vcap/` of its scripts pointing under
/// `root`, so that its scripts run without root and without touching `/var/vcap`; the
/// agent they run is whatever the test puts at `root/packages/service-backup/bin/service-backup`.
pub fn relocate(rendered: &Rendered, root: &Path) -> PathBuf {
    let job = root.join("jobs/service-backup");
    let prefix = format!("{}/", root.display());
    for rel in walk(&rendered.out()) {
        let from = rendered.out().join(&rel);
        let to = job.join(&rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let text = std::fs::read_to_string(&from).unwrap();
        let text = if rel.starts_with("bin") {
            text.replace("/var/vcap/", &prefix)
        } else {
            text
        };
        std::fs::write(&to, text).unwrap();
        let mode = std::fs::metadata(&from).unwrap().permissions();
        std::fs::set_permissions(&to, mode).unwrap();
    }
    job
}

/// The files under `dir`, relative to it.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = PathBuf::from(path.file_name().unwrap());
        if path.is_dir() {
            files.extend(walk(&path).into_iter().map(|p| rel.join(p)));
        } else {
            files.push(rel);
        }
    }
    files
}

/// The `missing_properties_message` of the tests' manifests.
pub const MESSAGE: &str = "Ask the platform team for the backup settings.";

/// Renders `manifest` expecting the director's failure with `problem` (followed by
/// [`MESSAGE`] only when something is missing), no secret in what it printed, and nothing
/// written.
pub fn expect_refused(manifest: &str, problem: &str) {
    let rendered = render(manifest);
    assert_eq!(rendered.code, 1, "{problem}: rendered anyway:\n{manifest}");
    // The operator's message follows only what is missing, as the agent's own problems.
    let line = if problem.starts_with("Missing values for") {
        format!("Invalid config - {problem}. {MESSAGE}")
    } else {
        format!("Invalid config - {problem}.\n")
    };
    assert!(
        rendered.stderr.contains(&line),
        "expected {line:?} in:\n{}",
        rendered.stderr
    );
    assert!(
        rendered
            .stderr
            .contains("Error filling in template 'backup.yml.erb'"),
        "{}",
        rendered.stderr
    );
    for secret in ["SECRET", KEY] {
        assert!(
            !rendered.stderr.contains(secret),
            "a secret leaked: {}",
            rendered.stderr
        );
    }
    assert!(
        !rendered.out().exists(),
        "{problem}: files were written although rendering failed"
    );
}
