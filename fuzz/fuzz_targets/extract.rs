//! Tar extraction into a target on a real file system: whatever the tar (or tar.gz) says,
//! nothing is created outside the target directory (symlinks are made as the archive says,
//! wherever they point, and nothing is written through one), and nothing panics.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use service_backup_core::pipeline::extract::Extractor;

/// One scratch folder for the whole run, in memory when /dev/shm exists: creating and
/// removing a temporary folder per input would cost more than the extraction.
fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary directory")
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let scratch = scratch();
    let target = scratch.join("target");
    if target.exists() {
        make_writable(&target);
        std::fs::remove_dir_all(&target).expect("the last target is removed");
    }
    std::fs::create_dir(&target).expect("the target");
    // A verdict either way; the check below holds after a refusal too: nothing was written
    // beside the target, through a link or otherwise.
    let _ = if data.starts_with(&[0x1f, 0x8b]) {
        Extractor::into_dir(&target).run(flate2::read::GzDecoder::new(data))
    } else {
        Extractor::into_dir(&target).run(data)
    };
    let beside: Vec<_> = std::fs::read_dir(scratch)
        .expect("the scratch directory")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("target")], "an entry escaped");
});

/// Gives every directory below `dir` its owner's rights back, so that it can be removed.
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                make_writable(&entry.path());
            }
        }
    }
}
