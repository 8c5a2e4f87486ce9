//! The release blob: the binary the tests build (the same code and link as the release's)
//! runs on the stemcell, and `scripts/build-release-binary.sh` strips it, keeps its debug
//! information beside it, and refuses a binary that needs a newer glibc.
//!
//! The ELF is read with `objdump` from binutils, which every machine that links these tests
//! has: it provides the linker that `cc` calls.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest as _;

/// The glibc of the Ubuntu Jammy stemcells the BOSH release deploys to. A binary that needs
/// a newer symbol version (`GLIBC_2.36` or later) fails to start there ("version
/// `GLIBC_2.xx` not found"), so monit restarts it for ever.
const STEMCELL_GLIBC: (u32, u32) = (2, 35);
/// The OpenSSL of the same stemcells (Jammy's libssl3 is 3.0.2).
const STEMCELL_OPENSSL: (u32, u32) = (3, 0);
/// The shared libraries a Jammy stemcell has for the agent.
const STEMCELL_LIBRARIES: [&str; 10] = [
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libssl.so.3",
    "libcrypto.so.3",
    "libz.so.1",
];

fn objdump(args: &[&str], file: &Path) -> String {
    let out = Command::new("objdump")
        .args(args)
        .arg(file)
        .output()
        .expect("objdump (binutils) runs: it is what the linker comes with");
    assert!(out.status.success(), "objdump {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The versions `file` needs of the symbols whose version names start with `prefix`
/// (`GLIBC_`), as (major, minor).
fn needed_versions(headers: &str, prefix: &str) -> Vec<(u32, u32)> {
    headers
        .split_whitespace()
        .filter_map(|word| word.strip_prefix(prefix))
        .map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap());
            (parts.next().unwrap(), parts.next().unwrap_or(0))
        })
        .collect()
}

#[test]
fn the_binary_needs_nothing_newer_than_the_jammy_stemcell_has() {
    let headers = objdump(&["-p"], &common::binary());
    let glibc = needed_versions(&headers, "GLIBC_");
    assert!(!glibc.is_empty(), "no glibc version reference:\n{headers}");
    let newest = glibc.iter().max().unwrap();
    assert!(
        *newest <= STEMCELL_GLIBC,
        "the binary needs GLIBC_{}.{}, newer than the stemcell's 2.35:\n{headers}",
        newest.0,
        newest.1
    );
    for openssl in needed_versions(&headers, "OPENSSL_") {
        assert!(
            openssl <= STEMCELL_OPENSSL,
            "OPENSSL_{openssl:?}:\n{headers}"
        );
    }
    let needed: Vec<&str> = headers
        .lines()
        .filter_map(|l| l.trim().strip_prefix("NEEDED"))
        .map(str::trim)
        .collect();
    assert!(needed.contains(&"libc.so.6"), "{headers}");
    for library in needed {
        assert!(
            STEMCELL_LIBRARIES.contains(&library),
            "{library} is not on a Jammy stemcell:\n{headers}"
        );
    }
}

#[test]
fn the_versions_of_an_objdump_are_read_as_numbers() {
    let sample = "  required from libc.so.6:\n    0x09691a75 0x00 03 GLIBC_2.2.5\n    \
                  0x06969194 0x00 11 GLIBC_2.14\n    0x069691b4 0x00 12 GLIBC_2.34\n";
    let versions = needed_versions(sample, "GLIBC_");
    assert_eq!(versions, [(2, 2), (2, 14), (2, 34)]);
    // 2.4 < 2.35 < 2.36, as numbers and not as text.
    assert!((2, 4) < STEMCELL_GLIBC && STEMCELL_GLIBC < (2, 36));
}

/// A copy of the release's script in a folder of its own, laid out as the release is.
fn release_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-release-binary.sh");
    std::fs::copy(script, dir.path().join("scripts/build-release-binary.sh")).unwrap();
    dir
}

/// Runs the copied script on `binary` with `path` as PATH (no bosh CLI on it).
fn build_release(release: &Path, binary: &Path, path: &str) -> common::Run {
    let out = Command::new("bash")
        .arg(release.join("scripts/build-release-binary.sh"))
        .arg("--binary")
        .arg(binary)
        .arg("--debug-dir")
        .arg(release.join("debug"))
        .env("PATH", path)
        .output()
        .unwrap();
    common::Run::from(out)
}

fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sections(file: &Path) -> Vec<String> {
    objdump(&["-h"], file)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.next()?.parse::<u32>().ok()?;
            words.next().map(str::to_string)
        })
        .collect()
}

#[test]
fn the_script_strips_the_blob_and_keeps_the_debug_information_beside_it() {
    let release = release_copy();
    let input = common::binary();
    let before = sha256(&input);
    let run = build_release(release.path(), &input, "/usr/bin:/bin");
    run.expect(0);
    assert!(
        run.stdout.contains("(Ubuntu Jammy stemcells: GLIBC_2.35)"),
        "{}",
        run.stdout
    );
    assert_eq!(sha256(&input), before, "the input binary was changed");

    let blob: PathBuf = release
        .path()
        .join("blobs/service-backup/service-backup-linux-amd64");
    let debug = release.path().join("debug/service-backup.debug");
    let blob_size = std::fs::metadata(&blob).unwrap().len();
    assert!(blob_size < std::fs::metadata(&input).unwrap().len());

    let blob_sections = sections(&blob);
    for gone in [".debug_info", ".debug_line", ".debug_str"] {
        assert!(
            !blob_sections.iter().any(|s| s == gone),
            "{gone} in {blob_sections:?}"
        );
    }
    assert!(
        blob_sections.iter().any(|s| s == ".gnu_debuglink"),
        "{blob_sections:?}"
    );
    let link = objdump(&["-s", "-j", ".gnu_debuglink"], &blob);
    assert!(link.contains("service-backup.d"), "{link}");
    assert!(
        objdump(&["-t"], &blob).contains("\nno symbols"),
        "the blob has a symbol table"
    );
    let debug_sections = sections(&debug);
    assert!(
        debug_sections.iter().any(|s| s == ".debug_line"),
        "{debug_sections:?}"
    );
    let symbols = objdump(&["-t"], &debug);
    assert!(
        symbols.contains("service_backup"),
        "the debug file has no symbol table"
    );

    // The blob still runs, and the release records it as `bosh add-blob` does.
    let version = Command::new(&blob).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("service-backup "));
    let recorded = std::fs::read_to_string(release.path().join("config/blobs.yml")).unwrap();
    assert_eq!(
        recorded,
        format!(
            "service-backup/service-backup-linux-amd64:\n  size: {blob_size}\n  sha: sha256:{}\n",
            sha256(&blob)
        )
    );
}

#[test]
fn the_script_refuses_a_binary_that_needs_a_newer_glibc() {
    let release = release_copy();
    // An objdump that reports what a binary linked on a newer system needs.
    let tools = release.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let fake = tools.join("objdump");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho '  required from libc.so.6:'\necho '    0x069691b4 0x00 12 GLIBC_2.34'\n\
         echo '    0x069691b9 0x00 13 GLIBC_2.39'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", tools.display());
    let run = build_release(release.path(), &common::binary(), &path);
    run.expect(1);
    assert!(
        run.stderr.contains(
            "needs GLIBC_2.39, newer than the stemcell's GLIBC_2.35: it would not start there"
        ),
        "{}",
        run.stderr
    );
    assert!(!release.path().join("blobs").exists(), "a blob was added");
    assert!(
        !release.path().join("debug").exists(),
        "debug information was written"
    );
    assert!(!release.path().join("config/blobs.yml").exists());
}
