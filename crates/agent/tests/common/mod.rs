//! Helpers for tests that run the real `service-backup` binary.
#![allow(dead_code)]

pub mod bosh;
pub mod host;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

// What the tests of every crate share, under the names these tests use; each test file
// takes only some of them.
#[allow(unused_imports)]
pub use service_backup_testkit::{env as server_env, sample_tree, tree, unique};

/// The binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_service-backup"))
}

/// The project's configuration fixtures (`tests/fixtures/config`).
pub fn config_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

/// What a run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub raw_stdout: Vec<u8>,
}

impl Run {
    pub fn from(out: Output) -> Self {
        collect("output", &out.stdout);
        collect("output", &out.stderr);
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            raw_stdout: out.stdout,
        }
    }

    /// Asserts the exit code, showing the output when it differs.
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Every line the run printed.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// The folder where tests/run.sh collects what every run printed and every secret the
/// tests configured (`SB_TEST_OUTPUT_DIR`); its checker fails the run when a secret shows
/// up in the output. Unset when the tests run without tests/run.sh.
fn output_dir() -> Option<PathBuf> {
    std::env::var_os("SB_TEST_OUTPUT_DIR").map(PathBuf::from)
}

/// Appends `bytes` to `<kind>-<pid>.log` in the collection folder, if there is one.
fn collect(kind: &str, bytes: &[u8]) {
    use std::io::Write as _;
    let Some(dir) = output_dir() else {
        return;
    };
    let path = dir.join(format!("{kind}-{}.log", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot append to {}: {e}", path.display()));
    // One write per record: runs of parallel tests do not interleave inside a line.
    let mut record = bytes.to_vec();
    record.push(b'\n');
    file.write_all(&record).unwrap();
}

/// Declares a secret the test configured: it must never appear in anything a run prints.
pub fn secret(value: &str) {
    assert!(!value.contains('\n'), "one secret per line");
    collect("secrets", value.as_bytes());
}

/// Adds what a process printed elsewhere (a daemon's log files) to the collection.
pub fn printed(text: &str) {
    collect("output", text.as_bytes());
}

/// Writes a file that holds secrets (a tokens file, a TLS key) with mode 0600, as the
/// agent requires of them.
pub fn write_private(path: &Path, contents: impl AsRef<[u8]>) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    file.write_all(contents.as_ref()).unwrap();
}

/// The binary in `cwd`, with no input and its output piped: a process a test watches
/// while it runs (add the arguments, then spawn it).
pub fn piped(cwd: &Path) -> Command {
    let mut command = Command::new(binary());
    command
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs the binary with `args` in `cwd`.
pub fn run(cwd: &Path, args: &[&str]) -> Run {
    run_with_stdin(cwd, args, None)
}

/// Runs the binary with `args`, feeding `stdin`.
pub fn run_with_stdin(cwd: &Path, args: &[&str], stdin: Option<&[u8]>) -> Run {
    use std::io::Write as _;
    let mut child = Command::new(binary())
        .args(args)
        .current_dir(cwd)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    Run::from(child.wait_with_output().unwrap())
}

/// A working folder with a sample source, a key and a config with a local destination.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        let env = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        sample_tree(&env.path("source"));
        let key = run(env.dir.path(), &["keygen", "--output", "backup.key"]);
        key.expect(0);
        secret(&env.key_text());
        env.write_config("");
        env
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `config.yml` with the local destination, the key, and `extra` YAML lines
    /// (which may set their own `cron_schedule`).
    pub fn write_config(&self, extra: &str) {
        let d = self.dir.path().display();
        let schedule = if extra.contains("cron_schedule:") {
            ""
        } else {
            "cron_schedule: \"*/5 * * * *\"\n"
        };
        let yaml = format!(
            "destinations:\n- type: local\n  name: disk\n  config:\n    path: {d}/backups\n\
             source_folder: {d}/source\n{schedule}\
             encryption:\n  key_file: {d}/backup.key\n{extra}"
        );
        std::fs::write(self.path("config.yml"), yaml).unwrap();
    }

    pub fn run(&self, args: &[&str]) -> Run {
        run(self.dir.path(), args)
    }

    /// `restore config.yml --backup NAME --target TARGET` with `extra` arguments.
    pub fn restore_into(&self, name: &str, target: &Path, extra: &[&str]) -> Run {
        let mut args = vec![
            "restore",
            "config.yml",
            "--backup",
            name,
            "--target",
            target.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// Makes a backup and returns the `list --json` entry of the newest one.
    pub fn backup(&self) -> serde_json::Value {
        self.run(&["backup", "config.yml"]).expect(0);
        let list = self.run(&["list", "config.yml", "--json"]);
        list.expect(0);
        let items: Vec<serde_json::Value> = serde_json::from_str(&list.stdout).unwrap();
        items[0].clone()
    }

    /// The stored archive of a listed backup.
    pub fn archive_of(&self, item: &serde_json::Value) -> PathBuf {
        self.path("backups").join(item["key"].as_str().unwrap())
    }

    /// The key file's content (a secret, for leak checks).
    pub fn key_text(&self) -> String {
        std::fs::read_to_string(self.path("backup.key"))
            .unwrap()
            .trim()
            .to_string()
    }
}

/// Whether the tests run as root (file modes do not stop root from reading).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

/// The action of a lager log line: its message without `ServiceBackup.` and the original's
/// session (`ServiceBackup.WithIdentifier.Perform backup started` → `Perform backup
/// started`). A message without the `ServiceBackup.` prefix fails the test.
pub fn action(line: &serde_json::Value) -> &str {
    let message = line["message"].as_str().unwrap_or_default();
    let rest = message
        .strip_prefix("ServiceBackup.")
        .unwrap_or_else(|| panic!("a log message without the ServiceBackup. prefix: {line}"));
    rest.strip_prefix("WithIdentifier.").unwrap_or(rest)
}

/// A self-signed certificate for `localhost` and 127.0.0.1, made by openssl in `dir` as
/// `cert.pem` and `key.pem` (mode 0600); returns their paths.
pub fn self_signed_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-addext"])
        .args(["subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-keyout", "key.pem", "-out", "cert.pem"])
        .current_dir(dir)
        .output()
        .expect("openssl is needed to make the test certificate (apt-get install -y openssl)");
    assert!(out.status.success(), "{out:?}");
    let key = dir.join("key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir.join("cert.pem"), key)
}

/// A private CA (`ca.pem`) and a certificate it signed for 127.0.0.1 and localhost
/// (`cert.pem`, `key.pem`), made by openssl in `dir`; returns the CA's PEM.
pub fn private_ca(dir: &std::path::Path, name: &str) -> String {
    service_backup_testkit::private_ca(dir, name)
}

/// The operator's restore on a fresh VM: copies the identity file `identity` into `fresh`
/// (which holds the configuration), restores into `fresh/restored` with it, and checks
/// that the identity's secret line appears in no output.
pub fn restore_with_identity(fresh: &Path, identity: &Path) -> Run {
    std::fs::copy(identity, fresh.join("ops.identity")).unwrap();
    let restore = run(
        fresh,
        &[
            "restore",
            "config.yml",
            "--identity",
            "ops.identity",
            "--target",
            "restored",
        ],
    );
    restore.expect(0);
    let secret = std::fs::read_to_string(identity).unwrap();
    assert!(!restore.all().contains(secret.lines().last().unwrap()));
    restore
}

/// `text` with every backup name (`20261206T104801Z-vm-403a67f2`: a UTC time, the
/// instance id and a random suffix) replaced by `[name]`.
pub fn backup_names_out(text: &str) -> String {
    let bytes = text.as_bytes();
    let starts_name = |i: usize| {
        bytes.len() >= i + 17
            && bytes[i..i + 8].iter().all(u8::is_ascii_digit)
            && bytes[i + 8] == b'T'
            && bytes[i + 9..i + 15].iter().all(u8::is_ascii_digit)
            && &bytes[i + 15..i + 17] == b"Z-"
    };
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if starts_name(i) {
            out.push_str("[name]");
            i += 17;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'-' | b'_'))
            {
                i += 1;
            }
        } else {
            let c = text[i..].chars().next().expect("inside the text");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Sets the modes of the sample tree, so that `ls` shows the same whatever the umask.
pub fn fixed_modes(root: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = if meta.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        if meta.is_dir() {
            fixed_modes(&path);
        }
    }
}
