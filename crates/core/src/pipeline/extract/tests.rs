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
/// what the restore accepts and refuse every link the restore refuses for where it lies.
/// (Verify does not see a symlink that lands on a file or folder made before it, which a
/// restore refuses.)
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

/// The target each symlink below `root` was made with, by path, sorted.
fn link_targets(root: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                found.push((rel, std::fs::read_link(&path).unwrap()));
            } else if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn symlinks_are_made_as_they_are_wherever_they_point() {
    // The links a data service leaves in its dump folder: absolute, absolute into the
    // folder itself, relative and leaving it, and through another link.
    let wanted = [
        ("wal", "/var/log"),
        ("cfg", "/srv/dump/real.conf"),
        ("up", "../../etc"),
        ("current", "releases/v2"),
        ("data", "current/db"),
        ("sub/back", "../../.."),
        ("dangling", "not/there"),
    ];
    let mut entries = vec![
        E::Dir("releases/v2/db", 0o755),
        E::File("releases/v2/db/f", b"x"),
        E::File("real.conf", b"x"),
    ];
    entries.extend(wanted.iter().map(|(at, to)| link(at, to)));
    let (tmp, root, done) = extract_entries(&entries);
    assert_eq!(done.unwrap().entries, 10);
    let mut want: Vec<(String, PathBuf)> = wanted
        .iter()
        .map(|(at, to)| ((*at).to_string(), PathBuf::from(to)))
        .collect();
    want.sort();
    assert_eq!(link_targets(&root), want);
    assert_eq!(std::fs::read(root.join("data/f")).unwrap(), b"x");
    assert_eq!(names(tmp.path()), ["root"], "nothing beside the root");
    // Verify accepts them too.
    Extractor::check_only().run(&tar_of(&entries)[..]).unwrap();
}

#[test]
fn a_chain_of_symlinks_out_of_the_target_is_made_but_never_written_through() {
    // The archive of an old report: `s -> .`, then `up` through s eight times and up eight
    // times, which is the root's parent's parent... and `escape` through `up`. Made as
    // they are; a file through them is refused, whether before or after them.
    let chain = [
        link("s", "."),
        link("up", "s/s/s/s/s/s/s/s/../../../../../../../.."),
        link("escape", "up/etc/passwd"),
    ];
    let mut entries = vec![E::File("fine.txt", b"ok")];
    entries.extend(chain.iter().cloned());
    let (tmp, root, done) = extract_entries(&entries);
    done.unwrap();
    assert_eq!(
        link_targets(&root),
        [
            ("escape".to_string(), PathBuf::from("up/etc/passwd")),
            ("s".to_string(), PathBuf::from(".")),
            (
                "up".to_string(),
                PathBuf::from("s/s/s/s/s/s/s/s/../../../../../../../..")
            ),
        ]
    );
    assert_eq!(names(tmp.path()), ["root"]);
    for through in ["escape/owned", "up/owned", "s/s/owned"] {
        let mut entries = entries.clone();
        entries.push(E::File(through, b"written through a link"));
        let (tmp, root, done) = extract_entries(&entries);
        let err = done.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnsafeEntry, "{err}");
        assert!(
            err.to_string().contains("passes through the symlink"),
            "{err}"
        );
        assert_eq!(names(tmp.path()), ["root"], "nothing outside the root");
        assert_eq!(
            names(&root),
            ["fine.txt"],
            "no link is made after a refusal"
        );
    }
}

#[test]
fn a_link_made_later_cannot_put_an_entry_under_a_link() {
    // `sub/a -> d/../..` is kept as it is, whatever `sub/d` turns out to be.
    let (_tmp, root, done) = extract_entries(&[link("sub/a", "d/../.."), link("sub/d", ".")]);
    done.unwrap();
    assert_eq!(
        std::fs::read_link(root.join("sub/a")).unwrap(),
        Path::new("d/../..")
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
    // And so would a hard link through one.
    let (_tmp, _root, done) = extract_entries(&[
        E::File("f", b"f"),
        link("d/up", ".."),
        E::Hard("h", "d/up/f"),
    ]);
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

/// The entries of the property test: a folder `d` with a file, symlinks at distinct paths
/// (in any order), each to a random chain of `.`, `..` and names, most of which are links,
/// and a file whose path may pass through one of them.
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
    let file = prop::sample::select(vec!["x", "s/x", "t/x", "d/s/x", "d/u/x", "u/d/x"]);
    (paths, prop::collection::vec(target, 6), file)
        .prop_map(|(paths, targets, file)| {
            let mut entries = vec![
                E::Dir("d", 0o755),
                E::File("d/f", b"f"),
                E::File(file, b"x"),
            ];
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

    /// Whatever the chain, every symlink is made with its target as it is, nothing is
    /// written beside the root, and a file whose path passes through a link is refused
    /// (and then no link is left).
    #[test]
    fn symlinks_are_made_as_they_are_and_nothing_is_written_through_them(entries in chains()) {
        let (tmp, root, done) = extract_entries(&entries);
        prop_assert_eq!(names(tmp.path()), ["root"]);
        let mut links: Vec<(String, PathBuf)> = entries
            .iter()
            .filter_map(|e| match e {
                E::Link(at, to) => Some((at.clone(), PathBuf::from(to))),
                _ => None,
            })
            .collect();
        links.sort();
        let through = entries.iter().any(|e| matches!(e, E::File(path, _)
            if links.iter().any(|(at, _)| Path::new(path).starts_with(at))));
        if through {
            let err = done.unwrap_err();
            let why = err.to_string();
            prop_assert!(
                why.contains("passes through the symlink") || why.contains("would replace a file or folder"),
                "{}", why
            );
            prop_assert!(link_targets(&root).is_empty());
        } else {
            done.unwrap();
            prop_assert_eq!(link_targets(&root), links);
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

/// Names the agent keeps for its own work folders in a target (a staging folder, the
/// previous content of a half-replaced one) are never restored from an archive: a later
/// restore would take them for its own, refuse the target as half replaced or delete them.
#[test]
fn work_folder_names_at_the_top_are_refused() {
    for name in [
        ".service-backup-replaced-0123456789ab/f",
        ".service-backup-restore-0123456789ab",
    ] {
        let (_tmp, root, done) = extract_entries(&[E::File(name, b"x")]);
        let err = done.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnsafeEntry, "{err}");
        assert!(err.to_string().contains("work folders"), "{err}");
        assert!(names(&root).is_empty());
    }
    // Below the top, such a name is only a name.
    let (_tmp, root, done) = extract_entries(&[E::File("d/.service-backup-x", b"x")]);
    done.unwrap();
    assert!(root.join("d/.service-backup-x").is_file());
}
