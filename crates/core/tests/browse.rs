//! The archive index end to end through a local destination: a backup writes it, `ls`
//! reads it with a few small ranged reads, a selective restore fetches only the blocks of
//! what it restores, and an archive without an index says so.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;

use service_backup_core::ErrorKind;
use service_backup_core::catalog::{BackupEntry, list_backups};
use service_backup_core::compression::Algorithm;
use service_backup_core::destination::counting::Counting;
use service_backup_core::destination::{Destination, LocalDestination};
use service_backup_core::format::index::EntryKind;
use service_backup_core::format::{Key, Keyring};
use service_backup_core::layout::Layout;
use service_backup_core::ops::backup::{BackupPlan, Target, run_backup};
use service_backup_core::ops::browse::{Selection, open_backup, restore_selected};
use service_backup_core::ops::restore::Decryption;
use service_backup_core::progress::NoProgress;
use service_backup_testkit::{dump_file, noise_file};
use tokio_util::sync::CancellationToken;

/// `len` bytes that no compressor shrinks, written to `path`, so that the archive has
/// several blocks of 1 MiB.
fn random_file(path: &Path, len: usize, seed: u64) {
    std::fs::write(path, service_backup_testkit::incompressible(len, seed | 1)).unwrap();
}

/// Several blocks of data that does not compress, a dump, a folder of small files and a
/// link.
fn tree(root: &Path) {
    std::fs::create_dir_all(root.join("db/sub")).unwrap();
    std::fs::create_dir_all(root.join("etc/conf.d")).unwrap();
    random_file(&root.join("db/big.bin"), 6_000_000, 11);
    dump_file(&root.join("db/dump.sql"), 1, 40_000);
    noise_file(&root.join("db/sub/blob.bin"), 300_000, 13);
    random_file(&root.join("db/zz-after.bin"), 2_000_000, 12);
    for i in 0..20 {
        std::fs::write(
            root.join(format!("etc/conf.d/{i:02}.conf")),
            format!("setting {i}\n"),
        )
        .unwrap();
    }
    std::fs::write(root.join("etc/main.conf"), b"main\n").unwrap();
    symlink("db/dump.sql", root.join("link-to-dump")).unwrap();
}

fn plan(source: &Path, key: Option<Key>, compression: Algorithm) -> BackupPlan {
    let mut plan = service_backup_testkit::backup_plan(source, "test-0");
    plan.archive.key = key;
    plan.archive.compression = compression;
    plan
}

async fn backup(
    source: &Path,
    store: &Path,
    key: Option<Key>,
    compression: Algorithm,
) -> (Arc<Counting>, BackupEntry) {
    let local: Arc<dyn Destination> = Arc::new(LocalDestination::new(store));
    let counting = Arc::new(Counting::new(local));
    let layout = Layout::new("svc/prod", None);
    let target = Target {
        name: "local".into(),
        destination: counting.clone(),
        layout: layout.clone(),
    };
    let outcomes = run_backup(
        plan(source, key, compression),
        vec![target],
        Arc::new(NoProgress),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    outcomes[0].result.as_ref().unwrap();
    let entry = list_backups(&*counting, &layout).await.unwrap().remove(0);
    counting.take_bytes();
    (counting, entry)
}

fn decryption(key: Option<&Key>) -> Decryption {
    Decryption::new(key.map(|k| Keyring::new(k.clone())))
}

fn key() -> Key {
    Key::from_bytes([7u8; 32])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_reads_only_the_header_and_index_and_lists_every_entry() {
    for (compression, k) in [
        (Algorithm::Gzip, Some(key())),
        (Algorithm::Zstd, Some(key())),
        (Algorithm::Gzip, None),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src");
        tree(&source);
        let (dest, entry) =
            backup(&source, &dir.path().join("store"), k.clone(), compression).await;
        let opened = open_backup(dest.clone(), &entry, &decryption(k.as_ref()))
            .await
            .unwrap();
        let index = opened.index().expect("a new backup has an index");
        let entries: Vec<_> = index.entries().map(|e| e.unwrap()).collect();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths.len() as u64,
            entry.manifest.file_count,
            "{compression:?}: {paths:?}"
        );
        assert!(paths.contains(&"db/big.bin") && paths.contains(&"etc/conf.d/07.conf"));
        let big = entries.iter().find(|e| e.path == "db/big.bin").unwrap();
        assert_eq!((big.kind, big.size), (EntryKind::File, 6_000_000));
        let link = entries.iter().find(|e| e.path == "link-to-dump").unwrap();
        assert_eq!(link.kind, EntryKind::Symlink);
        assert_eq!(link.link.as_deref(), Some("db/dump.sql"));
        let read = dest.bytes_read();
        let stored = entry.manifest.stored_bytes;
        println!("{compression:?}: ls read {read} bytes of {stored}");
        assert!(read * 20 < stored, "ls read {read} of {stored} bytes");
        assert_eq!(read, opened.fetched());
    }
}

fn same_file(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(x == y, "{} differs from {}", a.display(), b.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_file_and_one_folder_come_back_alone_fetching_only_their_blocks() {
    for compression in [Algorithm::Gzip, Algorithm::Zstd] {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src");
        tree(&source);
        let k = Some(key());
        let (dest, entry) =
            backup(&source, &dir.path().join("store"), k.clone(), compression).await;
        let stored = entry.manifest.stored_bytes;

        // One file in the middle of the archive, after the big one.
        let opened = open_backup(dest.clone(), &entry, &decryption(k.as_ref()))
            .await
            .unwrap();
        let target = dir.path().join("one");
        let stats = restore_selected(
            opened,
            Selection::new(&["db/zz-after.bin"]),
            target.clone(),
            false,
            Some(entry.manifest.plain_bytes),
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
        same_file(
            &source.join("db/zz-after.bin"),
            &target.join("db/zz-after.bin"),
        );
        assert!(!target.join("db/big.bin").exists());
        assert!(!target.join("etc").exists());
        let read = dest.take_bytes();
        println!("{compression:?}: one file of 2 MB: read {read} of {stored} bytes");
        assert!(read < 2_000_000 + 3 * 1_100_000, "read {read}");
        assert_eq!(stats.extracted.entries, 2, "db and its file, no more");

        // A folder, by glob and by name.
        let opened = open_backup(dest.clone(), &entry, &decryption(k.as_ref()))
            .await
            .unwrap();
        let target = dir.path().join("folder");
        restore_selected(
            opened,
            Selection::new(&["etc/conf.d/", "etc/*.conf"]),
            target.clone(),
            false,
            None,
            Arc::new(NoProgress),
        )
        .await
        .unwrap();
        for i in 0..20 {
            let name = format!("etc/conf.d/{i:02}.conf");
            same_file(&source.join(&name), &target.join(&name));
        }
        same_file(&source.join("etc/main.conf"), &target.join("etc/main.conf"));
        assert!(!target.join("db").exists());
        let read = dest.take_bytes();
        println!("{compression:?}: a folder of small files: read {read} of {stored} bytes");
        // The small files share one block (1 MiB of input) with the end of the noise.
        assert!(
            read < 1_300_000 && read * 6 < stored,
            "read {read} of {stored}"
        );

        // A pattern that matches nothing names itself, and nothing is written.
        let opened = open_backup(dest.clone(), &entry, &decryption(k.as_ref()))
            .await
            .unwrap();
        let target = dir.path().join("none");
        let e = restore_selected(
            opened,
            Selection::new(&["etc/main.conf", "nope/*.txt"]),
            target.clone(),
            false,
            None,
            Arc::new(NoProgress),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.to_string().contains("\"nope/*.txt\" matches nothing"),
            "{e}"
        );
        assert!(!target.exists(), "nothing is written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_the_index_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("src");
    tree(&source);
    let k = Some(key());
    let store = dir.path().join("store");
    let (dest, entry) = backup(&source, &store, k.clone(), Algorithm::Gzip).await;
    // The index sits just before the end: flip a byte 200 bytes before it.
    let path = store.join(&entry.archive_key);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 200;
    bytes[at] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let e = open_backup(dest.clone(), &entry, &decryption(k.as_ref()))
        .await
        .err()
        .expect("refused");
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.to_string().contains("fails authentication"), "{e}");
}

/// A plain archive (nothing authenticates its index) whose index was rewritten to list
/// `etc/main.conf` as `etc/main.cnf`, at the same offset: `restore --include etc/main.cnf`
/// reads a tar header that names another file than the index does, and refuses the
/// archive as corrupt before anything is written (before, it restored `etc/main.conf`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_archive_whose_index_names_another_entry_than_its_tar_header_is_refused() {
    use service_backup_core::format::index::{
        ArchiveIndex, EntryEncoder, Footer, carrier, encode_head,
    };
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("src");
    tree(&source);
    let store = dir.path().join("store");
    let (dest, mut entry) = backup(&source, &store, None, Algorithm::Gzip).await;
    let path = store.join(&entry.archive_key);
    let bytes = std::fs::read(&path).unwrap();

    // The index, read as a reader finds it: the footer at the end, then its carriers.
    let payload_len = bytes.len() as u64;
    let footer_len = carrier::footer_carrier_len(Algorithm::Gzip);
    let tail = &bytes[bytes.len() - usize::try_from(footer_len).unwrap()..];
    let raw = carrier::footer_in(Algorithm::Gzip, tail).expect("a footer");
    let footer = Footer::decode(raw, payload_len, footer_len)
        .unwrap()
        .expect("an index");
    let start = usize::try_from(footer.index_start).unwrap();
    let carriers = &bytes[start..start + usize::try_from(footer.carriers_len).unwrap()];
    let body = carrier::body_of(Algorithm::Gzip, carriers, &footer).unwrap();
    let index = ArchiveIndex::decode(body, footer.index_start).unwrap();
    let mut entries: Vec<_> = index.entries().map(Result::unwrap).collect();
    let renamed = entries
        .iter_mut()
        .find(|e| e.path == "etc/main.conf")
        .unwrap();
    renamed.path = "etc/main.cnf".into();

    // The same archive with the rewritten index, its CRC and footer made anew.
    let blocks: Vec<u32> = index
        .block_starts
        .windows(2)
        .map(|w| u32::try_from(w[1] - w[0]).unwrap())
        .collect();
    let mut new_body = encode_head(
        index.block_size,
        &blocks,
        index.tar_len,
        entries.len() as u64,
    );
    let mut encoder = EntryEncoder::default();
    for e in &entries {
        encoder.encode(e, &mut new_body);
    }
    let mut forged = bytes[..start].to_vec();
    carrier::write_index(
        Algorithm::Gzip,
        &new_body[..],
        footer.index_start,
        &mut forged,
    )
    .unwrap();
    std::fs::write(&path, &forged).unwrap();
    entry.manifest.stored_bytes = forged.len() as u64;
    entry.archive_size = forged.len() as u64;

    // The forged index reads as an index: the name is listed.
    let opened = open_backup(dest.clone(), &entry, &decryption(None))
        .await
        .unwrap();
    let listed: Vec<String> = opened
        .index()
        .unwrap()
        .entries()
        .map(|e| e.unwrap().path)
        .collect();
    assert!(listed.iter().any(|p| p == "etc/main.cnf"), "{listed:?}");

    let target = dir.path().join("restored");
    let e = restore_selected(
        opened,
        Selection::new(&["etc/main.cnf"]),
        target.clone(),
        false,
        None,
        Arc::new(NoProgress),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(
        e.to_string().contains(
            "the archive's index does not match its tar stream: it lists file \"etc/main.cnf\""
        ) && e.to_string().contains("names file \"etc/main.conf\""),
        "{e}"
    );
    assert!(!target.exists(), "nothing is written");
    let beside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".service-backup-"))
        .collect();
    assert!(beside.is_empty(), "left behind: {beside:?}");
}
