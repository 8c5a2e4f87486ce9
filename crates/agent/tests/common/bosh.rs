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

    /// `bash -n` on every rendered script; returns how many were checked.
    pub fn check_scripts(&self) -> usize {
        let mut checked = 0;
        for entry in std::fs::read_dir(self.out().join("bin")).expect("rendered bin/") {
            let path = entry.unwrap().path();
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
    let ruby = server_env("SB_TEST_RUBY");
    let dir = tempfile::tempdir().unwrap();
    let manifest_path = dir.path().join("manifest.yml");
    std::fs::write(&manifest_path, manifest).unwrap();
    let out = Command::new(&ruby)
        .arg(repo().join("tests/bosh/render.rb"))
        .arg(job_dir())
        .arg(&manifest_path)
        .arg(dir.path().join("out"))
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
