//! Extraction: paths, symlinks (each alone, and in chains), limits, modes.

use std::io::Read as _;

use proptest::prelude::*;

use super::*;

#[test]
fn paths_with_dotdot_or_root_are_refused() {
    assert!(checked_path(Path::new("a/b")).is_ok());
    assert!(checked_path(Path::new("./a")).is_ok());
    // The root itself: its entry is taken as the target folder.
    assert_eq!(checked_path(Path::new(".")).unwrap(), PathBuf::new());
    assert_eq!(checked_path(Path::new("./")).unwrap(), PathBuf::new());
    for bad in ["../x", "a/../../x", "/etc/passwd", ""] {
        let err = checked_path(Path::new(bad)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnsafeEntry, "{bad}");
    }
}

#[test]
fn entries_through_an_extracted_symlink_are_refused() {
    // a -> .   a/b -> ..   b/c -> ..   then b/c/escaped: lexically inside, really outside.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut link = |name: &str, to: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        builder.append_link(&mut h, name, to).unwrap();
    };
    link("a", ".");
    link("a/b", "..");
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    dir.set_mode(0o755);
    builder
        .append_data(&mut dir, "b/c/escaped", &[][..])
        .unwrap();
    let bytes = builder.into_inner().unwrap();
    let err = Extractor::into_dir(&root).run(&bytes[..]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsafeEntry, "{err}");
    assert!(
        err.to_string().contains("passes through the symlink"),
        "{err}"
    );
    assert!(!tmp.path().join("escaped").exists());
    assert!(!tmp.path().join("c").exists());
}

/// A tar of `entries`: (path, Some(content)) for a file of mode 0o4755 and mtime
/// 1,000,000,000, (path, None) for a symlink to "target" beside it.
fn archive(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_000_000_000);
        if let Some(bytes) = content {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o4755);
            h.set_size(bytes.len() as u64);
            builder.append_data(&mut h, path, *bytes).unwrap();
        } else {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            builder.append_link(&mut h, path, "target").unwrap();
        }
    }
    builder.into_inner().unwrap()
}

fn extract(entries: &[(&str, Option<&[u8]>)]) -> (tempfile::TempDir, PathBuf, Result<()>) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let bytes = archive(entries);
    let done = Extractor::into_dir(&root).run(&bytes[..]).map(|_| ());
    (tmp, root, done)
}

#[test]
fn files_get_their_content_mode_without_set_id_bits_and_time() {
    use std::os::unix::fs::MetadataExt as _;
    let big: Vec<u8> = (0..3 * COPY_BUFFER + 17).map(|i| (i % 251) as u8).collect();
    let (_tmp, root, done) = extract(&[
        ("a/b/one", Some(b"one")),
        ("a/b/two", Some(&big[..])),
        ("a/c/three", Some(b"")),
        ("top", Some(b"top")),
    ]);
    done.unwrap();
    assert_eq!(std::fs::read(root.join("a/b/one")).unwrap(), b"one");
    assert_eq!(std::fs::read(root.join("a/b/two")).unwrap(), big);
    assert_eq!(std::fs::read(root.join("a/c/three")).unwrap(), b"");
    assert_eq!(std::fs::read(root.join("top")).unwrap(), b"top");
    let meta = std::fs::metadata(root.join("a/b/two")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o755);
    assert_eq!(meta.mtime(), 1_000_000_000);
}

#[test]
fn a_file_entry_twice_keeps_the_last_one() {
    let (_tmp, root, done) = extract(&[("d/f", Some(b"first")), ("d/f", Some(b"second"))]);
    done.unwrap();
    assert_eq!(std::fs::read(root.join("d/f")).unwrap(), b"second");

    // A file entry where a folder was made is refused, and the folder kept.
    let (_tmp, root, done) = extract(&[("d/sub/keep", Some(b"k")), ("d/sub", Some(b"f"))]);
    let err = done.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsafeEntry, "{err}");
    assert!(err.to_string().contains("would replace a folder"), "{err}");
    assert_eq!(std::fs::read(root.join("d/sub/keep")).unwrap(), b"k");
}

#[test]
fn a_file_entry_never_writes_through_a_symlink() {
    // "d/link" -> "target", then a file "d/link": it must not land in "d/target".
    let (_tmp, root, done) = extract(&[
        ("d/first", Some(b"x")),
        ("d/link", None),
        ("d/link", Some(b"through the link")),
    ]);
    let err = done.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsafeEntry, "{err}");
    assert!(!root.join("d/target").exists());
}

#[test]
fn a_file_under_a_symlink_made_in_its_folder_is_refused() {
    // Files in "d" first (the folder is then known), then "d/s" -> "target" and "d/s/f".
    let (_tmp, root, done) = extract(&[
        ("d/target/keep", Some(b"k")),
        ("d/a", Some(b"a")),
        ("d/s", None),
        ("d/s/f", Some(b"through the link")),
    ]);
    let err = done.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsafeEntry, "{err}");
    assert!(
        err.to_string().contains("passes through the symlink"),
        "{err}"
    );
    assert!(!root.join("d/target/f").exists());
}

#[test]
fn symlinks_may_not_leave_the_root() {
    let ok = [
        ("a", "b"),
        ("d/a", "../b"),
        ("d/e/a", "../../b"),
        ("a", "./x/../y"),
    ];
    for (at, to) in ok {
        assert!(
            links::stays_inside_lexically(Path::new(at), Path::new(to)),
            "{at} -> {to}"
        );
    }
    let bad = [
        ("a", "../b"),
        ("d/a", "../../b"),
        ("a", "/etc"),
        ("a", "x/../../y"),
    ];
    for (at, to) in bad {
        assert!(
            !links::stays_inside_lexically(Path::new(at), Path::new(to)),
            "{at} -> {to}"
        );
    }
}

/// One entry of a test archive.
#[derive(Debug, Clone)]
enum E {
    Dir(&'static str, u32),
    File(&'static str, &'static [u8]),
    Link(String, String),
    Hard(&'static str, &'static str),
}

fn link(at: &str, to: &str) -> E {
    E::Link(at.to_string(), to.to_string())
}

/// A header whose name and link name are written as they are (the builder would
/// normalize them).
fn raw_header(kind: tar::EntryType, name: &str, link: &str, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_000_000_000);
    h.set_cksum();
    h
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (h, data): (tar::Header, &[u8]) = match e {
            E::Dir(name, mode) => (
                raw_header(tar::EntryType::Directory, name, "", 0, *mode),
                b"",
            ),
            E::File(name, data) => (
                raw_header(tar::EntryType::Regular, name, "", data.len() as u64, 0o644),
                data,
            ),
            E::Link(name, to) => (raw_header(tar::EntryType::Symlink, name, to, 0, 0o777), b""),
            E::Hard(name, to) => (raw_header(tar::EntryType::Link, name, to, 0, 0o644), b""),
        };
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Extracts `entries` into `tmp/root`; also checks them without writing, which must accept
/// what the restore accepts and refuse every link the restore refuses for where it leads.
/// (Verify does not see a symlink that lands on a file or folder made before it, which a
/// restore refuses: that link goes nowhere.)
fn extract_entries(entries: &[E]) -> (tempfile::TempDir, PathBuf, Result<ExtractStats>) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let bytes = tar_of(entries);
    let done = Extractor::into_dir(&root).run(&bytes[..]);
    let checked = Extractor::check_only().run(&bytes[..]);
    let clash = |e: &Error| e.to_string().contains("would replace a file or folder");
    assert!(
        done.is_ok() == checked.is_ok() || done.as_ref().is_err_and(clash),
        "restore {done:?} and verify {checked:?} differ for {entries:?}"
    );
    (tmp, root, done)
}

/// The names in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_chain_of_symlinks_out_of_the_target_is_refused() {
    // The archive of the report: `s -> .`, then `up` through s eight times and up eight
    // times, which is the root's parent's parent... and `escape` through `up`.
    let (tmp, root, done) = extract_entries(&[
        E::File("fine.txt", b"ok"),
        link("s", "."),
        link("up", "s/s/s/s/s/s/s/s/../../../../../../../.."),
        link("escape", "up/etc/passwd"),
    ]);
    let err = done.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsafeEntry, "{err}");
    assert!(
        err.to_string().contains(
            "refusing archive entry \"up\": its target s/s/s/s/s/s/s/s/../../../../../../../.. passes through the symlink s"
        ),
        "{err}"
    );
    assert_eq!(names(tmp.path()), ["root"], "nothing outside the root");
    assert_eq!(
        names(&root),
        ["fine.txt"],
        "the links made are removed again"
    );
}

#[test]
fn a_link_made_later_cannot_turn_an_earlier_one_outward() {
    // `sub/a -> d/../..` is the root while `sub/d` is a folder; `sub/d -> .` makes it the
    // root's parent.
    let (_tmp, _root, done) = extract_entries(&[link("sub/a", "d/../.."), link("sub/d", ".")]);
    let err = done.unwrap_err();
    assert!(
        err.to_string().contains("passes through the symlink sub/d"),
        "{err}"
    );
    // A link whose folder is a link that came later.
    let (_tmp, _root, done) = extract_entries(&[link("d/l", "x"), link("d", ".")]);
    assert_eq!(done.unwrap_err().kind(), ErrorKind::UnsafeEntry);
    // A hard link to a symlink would be a copy of it in another folder.
    let (_tmp, _root, done) = extract_entries(&[link("d/up", ".."), E::Hard("up", "d/up")]);
    let err = done.unwrap_err();
    assert!(
        err.to_string().contains("passes through the symlink d/up"),
        "{err}"
    );
}

#[test]
fn symlinks_to_files_folders_and_other_links_inside_are_restored() {
    let (_tmp, root, done) = extract_entries(&[
        E::Dir("v2", 0o755),
        E::File("v2/data", b"data"),
        link("current", "v2"),
        link("latest", "current"),
        link("v2/self", "../v2/data"),
        link("later", "not/yet/../there"),
        link("deep/er/up", "../../v2/./data"),
    ]);
    done.unwrap();
    assert_eq!(std::fs::read(root.join("latest/data")).unwrap(), b"data");
    assert_eq!(std::fs::read(root.join("v2/self")).unwrap(), b"data");
    assert_eq!(std::fs::read(root.join("deep/er/up")).unwrap(), b"data");
    assert_eq!(
        std::fs::read_link(root.join("later")).unwrap(),
        Path::new("not/yet/../there")
    );
}

#[test]
fn the_dot_entry_of_tar_c_dir_is_the_target_itself() {
    use std::os::unix::fs::MetadataExt as _;
    let (_tmp, root, done) = extract_entries(&[
        E::Dir("./", 0o701),
        E::Dir("./sub/", 0o755),
        E::File("./sub/a.txt", b"a"),
        E::Dir(".", 0o701),
    ]);
    assert_eq!(done.unwrap().entries, 4);
    assert_eq!(std::fs::read(root.join("sub/a.txt")).unwrap(), b"a");
    // The root keeps its own mode: the entry's is not applied.
    assert_ne!(std::fs::metadata(&root).unwrap().mode() & 0o777, 0o701);
    for entry in [
        E::File("./", b"x"),
        link(".", "sub"),
        E::Hard(".", "sub/a.txt"),
    ] {
        let (_tmp, _root, done) = extract_entries(&[entry]);
        let err = done.unwrap_err();
        assert!(
            err.to_string().contains("names the target folder itself"),
            "{err}"
        );
    }
}

#[test]
fn folders_stay_private_until_their_content_is_written() {
    use std::os::unix::fs::MetadataExt as _;
    // A refused entry stops the extraction before the modes are set: every folder made so
    // far is still 0700, whatever the archive or the umask say.
    let (_tmp, root, done) = extract_entries(&[
        E::Dir("open", 0o777),
        E::File("open/implicit/f", b"f"),
        E::Hard("bad", "../x"),
    ]);
    done.unwrap_err();
    for dir in ["open", "open/implicit"] {
        assert_eq!(
            std::fs::metadata(root.join(dir)).unwrap().mode() & 0o777,
            0o700,
            "{dir}"
        );
    }
    // Once all is written, a folder gets its own mode; one made only for what lies below
    // it keeps 0700.
    let (_tmp, root, done) =
        extract_entries(&[E::Dir("open", 0o755), E::File("open/implicit/f", b"f")]);
    done.unwrap();
    assert_eq!(
        std::fs::metadata(root.join("open")).unwrap().mode() & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::metadata(root.join("open/implicit"))
            .unwrap()
            .mode()
            & 0o777,
        0o700
    );
}

#[test]
fn file_content_beyond_the_manifest_is_refused_before_it_is_written() {
    let bytes = tar_of(&[E::File("a", b"12345"), E::File("b", b"67890")]);
    let tmp = tempfile::tempdir().unwrap();
    let err = Extractor::into_dir(tmp.path())
        .with_byte_limit(Some(9))
        .run(&bytes[..])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(
        err.to_string().contains(
            "the archive is corrupt: its files hold more than the 9 bytes its manifest records"
        ),
        "{err}"
    );
    assert!(!tmp.path().join("b").exists());
    let tmp = tempfile::tempdir().unwrap();
    let stats = Extractor::into_dir(tmp.path())
        .with_byte_limit(Some(10))
        .run(&bytes[..])
        .unwrap();
    assert_eq!(stats.bytes, 10);
    let err = Extractor::check_only()
        .with_byte_limit(Some(0))
        .run(&bytes[..])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// A tar stream: `before`, then a header of `kind` announcing `size` bytes and that many
/// bytes of 'a' (made as they are read).
fn huge_extension(before: &[u8], kind: tar::EntryType, size: u64) -> impl Read {
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_cksum();
    io::Cursor::new([before, h.as_bytes()].concat()).chain(io::repeat(b'a').take(size))
}

#[test]
fn extension_entries_over_64_kib_are_refused_before_they_are_read() {
    let cases = [
        (tar::EntryType::GNULongName, "GNU long name entry"),
        (tar::EntryType::GNULongLink, "GNU long link name entry"),
        (tar::EntryType::XHeader, "PAX extended header"),
        (tar::EntryType::XGlobalHeader, "PAX global header"),
    ];
    for (kind, what) in cases {
        let size = 3 << 30;
        let mut input = Counting {
            inner: huge_extension(b"", kind, size),
            read: 0,
        };
        let err = Extractor::check_only().run(&mut input).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(
            err.to_string().contains(&format!(
                "the archive is corrupt: its tar stream holds a {what} of {size} bytes, over the limit of 65536 bytes"
            )),
            "{err}"
        );
        assert!(input.read < 1 << 20, "{} bytes read", input.read);
    }
}

#[test]
fn a_sparse_entry_with_endless_extension_blocks_is_refused_before_they_are_read() {
    // Each extension block lists 21 blocks of data and says another block follows: the tar
    // crate read and kept them all, gigabytes of block lists from a few MB of gzip.
    let mut h = tar::Header::new_gnu();
    h.set_path("sparse").unwrap();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_size(1 << 60);
    h.as_gnu_mut().unwrap().isextended[0] = 1;
    h.set_cksum();
    let mut ext = tar::GnuExtSparseHeader::new();
    for (i, block) in ext.sparse.iter_mut().enumerate() {
        block.offset = *b"000000001000";
        block.numbytes = *b"000000001000";
        block.offset[10] = b'0' + (i % 8) as u8;
    }
    ext.isextended[0] = 1;
    let endless = io::Cursor::new([&h.as_bytes()[..], &ext.as_bytes()[..]].concat())
        .chain(io::repeat(1).take(3 << 30));
    let mut input = Counting {
        inner: endless,
        read: 0,
    };
    let err = Extractor::check_only().run(&mut input).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(
        err.to_string()
            .contains("its entry \"sparse\" is a GNU sparse file, which a restore does not read"),
        "{err}"
    );
    assert!(input.read < 1 << 20, "{} bytes read", input.read);
}

#[test]
fn the_header_limit_follows_the_stream_as_tar_does() {
    // Entries with a long name, a PAX header whose `size` record makes the next entry
    // longer than its header says, and a base-256 size: then a long name over the limit,
    // which must be seen where it is.
    let mut b = tar::Builder::new(Vec::new());
    let long = format!("{0}/{0}/{0}/file", "d".repeat(100));
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
    b.append_pax_extensions([("size", &b"700"[..])]).unwrap();
    let data = vec![7u8; 700];
    let mut h = raw_header(tar::EntryType::Regular, "paxsized", "", 0, 0o644);
    h.set_cksum();
    b.append(&h, &data[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().size = [0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x00];
    h.set_mode(0o644);
    h.set_path("base256").unwrap();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, &[1u8; 512][..]).unwrap();
    let good = b.into_inner().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let stats = Extractor::into_dir(tmp.path())
        .run(&good[..good.len() - 1024])
        .unwrap();
    assert_eq!(stats.bytes, 3 + 700 + 512);
    assert_eq!(std::fs::read(tmp.path().join("paxsized")).unwrap(), data);
    assert_eq!(std::fs::read(tmp.path().join(&long)).unwrap(), b"abc");
    let bad = huge_extension(
        &good[..good.len() - 1024],
        tar::EntryType::GNULongName,
        70_000,
    );
    let err = Extractor::check_only().run(bad).unwrap_err();
    assert!(
        err.to_string()
            .contains("GNU long name entry of 70000 bytes"),
        "{err}"
    );
}

/// The entries of the property test: a folder `d` with a file, and symlinks at distinct
/// paths (in any order), each to a random chain of `.`, `..` and names, most of which are
/// links: weighted so that chains through links (`s -> .`, then through `s` and up) are
/// frequent.
fn chains() -> impl Strategy<Value = Vec<E>> {
    let part = prop_oneof![
        2 => Just("."),
        3 => Just(".."),
        2 => Just("s"),
        2 => Just("t"),
        1 => Just("u"),
        1 => Just("d"),
        1 => Just("f"),
    ];
    let target = prop::collection::vec(part, 1..7).prop_map(|parts| parts.join("/"));
    let paths = prop::sample::subsequence(vec!["s", "t", "u", "d/s", "d/t", "d/u"], 1..=6);
    (paths, prop::collection::vec(target, 6))
        .prop_map(|(paths, targets)| {
            let mut entries = vec![E::Dir("d", 0o755), E::File("d/f", b"f")];
            entries.extend(
                paths
                    .into_iter()
                    .zip(targets)
                    .map(|(at, to)| E::Link(at.to_string(), to)),
            );
            entries
        })
        .prop_shuffle()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the chain, no symlink restored (or left after a refusal) resolves outside
    /// the root, and nothing is made beside it.
    #[test]
    fn no_restored_symlink_resolves_outside_the_root(entries in chains()) {
        let (tmp, root, done) = extract_entries(&entries);
        prop_assert_eq!(names(tmp.path()), ["root"]);
        // After a refusal too: the links made are removed again.
        let _ = done;
        {
            let real_root = std::fs::canonicalize(&root).unwrap();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                for e in std::fs::read_dir(&dir).unwrap() {
                    let path = e.unwrap().path();
                    let meta = std::fs::symlink_metadata(&path).unwrap();
                    if meta.file_type().is_symlink() {
                        if let Ok(to) = std::fs::canonicalize(&path) {
                            prop_assert!(
                                to.starts_with(&real_root),
                                "{} resolves to {} for {:?}", path.display(), to.display(), entries
                            );
                        }
                    } else if meta.is_dir() {
                        stack.push(path);
                    }
                }
            }
        }
    }
}

/// A tar of folder entries: (path, mode).
fn folders(entries: &[(&str, u32)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(*mode);
        builder.append_data(&mut h, path, &[][..]).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn a_folder_entry_repeated_is_recorded_once_and_the_last_one_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = Dirs::default();
    for i in 0..10_000 {
        let mode = if i % 2 == 0 { 0o711 } else { 0o750 };
        dirs.record(Path::new("a/b/c"), mode, FileTime::zero(), "a/b/c")
            .unwrap();
    }
    // a, a/b, a/b/c: three records, whatever the repeats.
    assert_eq!(dirs.nodes.len(), 3);

    let mut entries = vec![("a/b/c", 0o711); 1000];
    entries.push(("a/b/c", 0o750));
    entries.push(("a", 0o755));
    Extractor::into_dir(tmp.path())
        .run(&folders(&entries)[..])
        .unwrap();
    let mode = |p: &str| {
        std::fs::metadata(tmp.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("a/b/c"), 0o750);
    assert_eq!(mode("a"), 0o755);
    // Made only because an entry lies below it.
    assert_eq!(mode("a/b"), 0o700);
}

#[test]
fn folders_past_the_limit_are_refused() {
    let mut dirs = Dirs::default();
    for _ in 0..MAX_DIRS {
        dirs.nodes.push(DirNode {
            parent: u32::MAX,
            name: std::ffi::OsStr::new("x").into(),
            meta: None,
        });
    }
    let err = dirs
        .record(Path::new("new"), 0o755, FileTime::zero(), "new")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsafeEntry, "{err}");
    assert!(
        err.to_string()
            .contains("folders, more than a restore keeps track of"),
        "{err}"
    );
}

#[test]
fn a_sparse_entry_is_refused_as_soon_as_its_header_is_read() {
    // No extension block: still a map the tar crate parses; refused before it does.
    let mut h = tar::Header::new_gnu();
    h.set_path("holes").unwrap();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_size(0);
    h.set_cksum();
    let bytes = [&h.as_bytes()[..], &[0u8; 1024][..]].concat();
    for root in [None, Some(tempfile::tempdir().unwrap())] {
        let extractor = match &root {
            Some(dir) => Extractor::into_dir(dir.path()),
            None => Extractor::check_only(),
        };
        let err = extractor.run(&bytes[..]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(
            err.to_string().contains(
                "the archive is corrupt: its entry \"holes\" is a GNU sparse file, which a restore does not read"
            ),
            "{err}"
        );
    }
}

#[test]
fn links_down_a_deep_folder_look_each_folder_up_once() {
    // deep_links: a folder 1,000 levels deep and 300 links at the root walking down it.
    // Each link looked up every folder on its way: 300,000 lookups by ever longer paths.
    const DEPTH: usize = 1000;
    const LINKS: usize = 300;
    let tmp = tempfile::tempdir().unwrap();
    let deep = "d/".repeat(DEPTH);
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    dir.set_mode(0o755);
    builder
        .append_data(&mut dir, format!("{deep}x"), &[][..])
        .unwrap();
    for i in 0..LINKS {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        builder
            .append_link(&mut h, format!("l{i}"), format!("{deep}x"))
            .unwrap();
    }
    let bytes = builder.into_inner().unwrap();
    links::LOOKUPS.with(|n| n.set(0));
    Extractor::into_dir(tmp.path()).run(&bytes[..]).unwrap();
    let lookups = links::LOOKUPS.with(std::cell::Cell::get);
    assert!(lookups <= (DEPTH + LINKS) as u64, "{lookups} lookups");
    assert_eq!(
        std::fs::read_link(tmp.path().join("l7")).unwrap(),
        PathBuf::from(format!("{deep}x"))
    );
}

#[test]
fn links_that_make_the_checks_walk_too_far_are_refused() {
    // Each link sits deep and looks up new names beside it: each lookup walks the whole
    // depth, and the total is bounded.
    let tmp = tempfile::tempdir().unwrap();
    let deep = "d/".repeat(1000);
    let mut builder = tar::Builder::new(Vec::new());
    // 450 names that exist nowhere, each looked up once: `n1c2/../n1c3/../...x`.
    const NAMES: u64 = 450;
    let links = links::MAX_WALKED / (NAMES * 1000) + 2;
    for i in 0..links {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        let wanders: String = (0..NAMES)
            .map(|j| format!("{:x}/../", i * 1000 + j))
            .collect();
        builder
            .append_link(&mut h, format!("{deep}l{i}"), format!("{wanders}x"))
            .unwrap();
    }
    let bytes = builder.into_inner().unwrap();
    let err = Extractor::into_dir(tmp.path()).run(&bytes[..]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsafeEntry, "{err}");
    assert!(
        err.to_string()
            .contains("symlinks lead through more folders than a restore checks"),
        "{err}"
    );
    // The links made were removed again.
    assert!(!tmp.path().join(&deep).join("l0").exists());
}

#[test]
fn folders_get_their_own_time_whatever_the_order_of_their_entries() {
    // A folder's entry after its children's, and content written into folders already
    // recorded: each keeps the time of its own entry (children are set before parents).
    let tmp = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, mtime) in [
        ("a/b/c", tar::EntryType::Directory, 300),
        ("a", tar::EntryType::Directory, 100),
        ("a/b/c/f", tar::EntryType::Regular, 400),
        ("a/b", tar::EntryType::Directory, 200),
        ("a/b/g", tar::EntryType::Regular, 500),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(0o755);
        h.set_mtime(mtime);
        b.append_data(&mut h, path, &[][..]).unwrap();
    }
    let bytes = b.into_inner().unwrap();
    Extractor::into_dir(tmp.path()).run(&bytes[..]).unwrap();
    for (path, mtime) in [("a", 100), ("a/b", 200), ("a/b/c", 300), ("a/b/c/f", 400)] {
        let meta = std::fs::metadata(tmp.path().join(path)).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::mtime(&meta),
            mtime,
            "{path}"
        );
    }
}
