//! Archives made to exhaust a restore's memory, measured through the real binary.
//!
//! Alone in its test binary: the peak memory of the children is read with
//! `getrusage(RUSAGE_CHILDREN)`, the largest resident set of any child this process
//! waited for, so no other test's child may run beside it.

mod common;

use std::io::Write as _;

use nix::sys::resource::{UsageWho, getrusage};

/// The most memory a refusing restore or verify may take, in KiB.
const PEAK_KIB: i64 = 64 * 1024;

#[test]
fn a_gnu_long_name_of_1_5_gib_is_refused_in_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    // The report's archive: a tar whose first entry is a GNU long name of 1.5 GiB, gzipped
    // (written as it is compressed: a few MB on disk, never 1.5 GiB in memory).
    let size: u64 = 3 << 29;
    let path = dir.path().join("long-name.tar.gz");
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(size);
    h.set_cksum();
    gz.write_all(h.as_bytes()).unwrap();
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..size / chunk.len() as u64 {
        gz.write_all(&chunk).unwrap();
    }
    let mut tail = tar::Header::new_gnu();
    tail.set_path("x").unwrap();
    tail.set_size(0);
    tail.set_cksum();
    gz.write_all(tail.as_bytes()).unwrap();
    gz.write_all(&[0u8; 1024]).unwrap();
    gz.finish().unwrap().flush().unwrap();
    let stored = std::fs::metadata(&path).unwrap().len();
    assert!(stored < 16 << 20, "{stored} bytes");

    let verify = common::run(dir.path(), &["verify", "--file", "long-name.tar.gz"]);
    let restore = common::run(
        dir.path(),
        &["restore", "--file", "long-name.tar.gz", "--target", "t"],
    );
    for run in [&verify, &restore] {
        run.expect(1);
        assert!(
            run.stderr.contains(&format!(
                "the archive is corrupt: its tar stream holds a GNU long name entry of {size} bytes, over the limit of 65536 bytes"
            )),
            "{}",
            run.stderr
        );
    }
    assert!(!dir.path().join("t").exists(), "the target was left");
    // ru_maxrss is in KiB on Linux.
    let peak = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss();
    assert!(peak > 0, "no child was measured");
    println!("the largest child peaked at {peak} KiB");
    assert!(
        peak < PEAK_KIB,
        "a child of verify or restore peaked at {peak} KiB"
    );
}

/// Writes `blocks` (raw 512-byte tar blocks) gzipped to `path`, `repeat` times, then the
/// end-of-archive marker.
fn write_gz_repeated(
    path: &std::path::Path,
    head: &[u8],
    blocks: &[u8],
    repeat: usize,
    tail: &[u8],
) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    gz.write_all(head).unwrap();
    for _ in 0..repeat {
        gz.write_all(blocks).unwrap();
    }
    gz.write_all(tail).unwrap();
    gz.write_all(&[0u8; 1024]).unwrap();
    gz.finish().unwrap().flush().unwrap();
}

/// The peak resident set of the children so far, in KiB, asserted under `limit`.
fn assert_peak_under(limit: i64) {
    let peak = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss();
    assert!(peak > 0, "no child was measured");
    println!("the largest child peaked at {peak} KiB");
    assert!(peak < limit, "a child peaked at {peak} KiB");
}

#[test]
fn a_folder_entry_repeated_a_million_times_is_restored_in_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    // The report's archive: one 255-byte ustar folder entry, over and over.
    let long = format!("{}/{}", "p".repeat(154), "d".repeat(99));
    let mut h = tar::Header::new_ustar();
    h.set_path(&long).unwrap();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o750);
    h.set_size(0);
    h.set_cksum();
    let blocks = h.as_bytes().repeat(4096);
    write_gz_repeated(&dir.path().join("dirs.tar.gz"), &[], &blocks, 256, &[]);

    common::run(
        dir.path(),
        &["restore", "--file", "dirs.tar.gz", "--target", "t"],
    )
    .expect(0);
    let restored = dir.path().join("t").join(&long);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&restored).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o750);
    assert_peak_under(PEAK_KIB);
}

#[test]
fn a_gnu_sparse_map_of_a_million_blocks_is_refused_in_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    // The report's archive (sparse_bomb): a GNU sparse header, then extension blocks of 21
    // empty chunks each, every one saying another follows; the tar crate kept them all.
    let chunk = b"00000000000\0".repeat(2);
    let mut h = tar::Header::new_gnu();
    h.set_path("sparse").unwrap();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_size(0);
    let mut head = h.as_bytes().to_vec();
    head[386..482].copy_from_slice(&chunk.repeat(4));
    head[482] = 1;
    head[148..156].fill(b' ');
    let sum: u32 = head.iter().map(|b| u32::from(*b)).sum();
    head[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut ext = chunk.repeat(21);
    ext.push(1);
    ext.resize(512, 0);
    let mut last = chunk.repeat(21);
    last.resize(512, 0);
    let blocks = ext.repeat(2048);
    write_gz_repeated(
        &dir.path().join("sparse.tar.gz"),
        &head,
        &blocks,
        512,
        &last,
    );

    let verify = common::run(dir.path(), &["verify", "--file", "sparse.tar.gz"]);
    let restore = common::run(
        dir.path(),
        &["restore", "--file", "sparse.tar.gz", "--target", "t"],
    );
    for run in [&verify, &restore] {
        run.expect(1);
        assert!(
            run.stderr.contains(
                "the archive is corrupt: its entry \"sparse\" is a GNU sparse file, which a restore does not read"
            ),
            "{}",
            run.stderr
        );
    }
    assert!(!dir.path().join("t").exists(), "the target was left");
    assert_peak_under(PEAK_KIB);
}

#[test]
fn a_million_symlinks_are_refused_in_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    // The report's archive (links_bomb): a million short symlinks, each kept for the end;
    // their names alone passed the 64 MiB budget late, at three times that in memory.
    let path = dir.path().join("links.tar.gz");
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    for i in 0..1_000_000u32 {
        let mut h = tar::Header::new_gnu();
        h.set_path(format!("{i:x}")).unwrap();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_link_name("x").unwrap();
        h.set_size(0);
        h.set_cksum();
        gz.write_all(h.as_bytes()).unwrap();
    }
    gz.write_all(&[0u8; 1024]).unwrap();
    gz.finish().unwrap().flush().unwrap();

    let verify = common::run(dir.path(), &["verify", "--file", "links.tar.gz"]);
    verify.expect(1);
    assert!(
        verify
            .stderr
            .contains("the archive holds more symlinks than a restore keeps track of (64 MiB of memory for them)"),
        "{}",
        verify.stderr
    );
    assert_peak_under(PEAK_KIB);
}

/// The attacker's report: `check --timeout 10` against such a server ran 20.9 s at 1.99 GB
/// resident. The error body is read only in part: quick, little memory, a short message.
#[test]
fn an_s3_endpoint_streaming_an_endless_error_is_read_in_little_memory() {
    let port = service_backup_testkit::endless_error_server().0;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::create_dir_all(dir.path().join("source")).unwrap();
    let secret = "hostile/S3+secret+access+key/never-printed";
    common::secret(secret);
    std::fs::write(
        dir.path().join("config.yml"),
        format!(
            "destinations:\n- type: s3\n  name: hostile\n  config:\n    bucket_name: hostile\n    bucket_path: backups\n    \
             access_key_id: AKIAHOSTILE\n    secret_access_key: {secret}\n    \
             endpoint_url: http://127.0.0.1:{port}\n    region: us-east-1\n\
             source_folder: {d}/source\ncron_schedule: \"@daily\"\nstate_dir: {d}/state\n"
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let check = common::run(dir.path(), &["check", "config.yml", "--timeout", "3"]);
    let took = started.elapsed();
    println!("{}{}", check.stdout, check.stderr);
    check.expect(1);
    assert!(
        check.stdout.contains("FAILED destination hostile: "),
        "{}",
        check.stdout
    );
    assert!(took < std::time::Duration::from_secs(8), "took {took:?}");
    let line = check
        .stdout
        .lines()
        .find(|l| l.starts_with("FAILED destination hostile"))
        .unwrap();
    assert!(line.len() < 1500, "{} characters", line.len());
    // Each log line (a retry names the error) is short too: the store's message is cut.
    for line in check.stderr.lines() {
        assert!(line.len() < 1000, "{} characters: {line:.200}", line.len());
    }
    assert_peak_under(PEAK_KIB);
}
