use crate::error::ErrorKind;
use crate::pipeline::read::Decryption;

use super::select::glob;

#[test]
fn globs_match_within_components_and_across_with_two_stars() {
    assert!(glob(b"etc/*.conf", b"etc/a.conf"));
    assert!(!glob(b"etc/*.conf", b"etc/sub/a.conf"));
    assert!(glob(b"etc/**/a.conf", b"etc/sub/deep/a.conf"));
    assert!(glob(b"etc/**/a.conf", b"etc/a.conf"));
    assert!(glob(b"file?.txt", b"file1.txt"));
    assert!(!glob(b"file?.txt", b"file/.txt"));
    assert!(glob(b"data", b"data"));
    assert!(!glob(b"data", b"data2"));
}

#[test]
fn listing_a_whole_archive_refuses_extension_entries_over_64_kib_before_reading_them() {
    // A plain archive without an index whose first entry is a long name or PAX header
    // announcing 1 GiB: `ls` read it whole (2.1 GB of memory for a 1 MB archive). Here 4 MiB
    // of it follow: read whole, the stream would end inside it; the listing stops at its
    // header, as a restore does.
    use std::io::Write as _;
    let cases = [
        (tar::EntryType::GNULongName, "GNU long name entry"),
        (tar::EntryType::GNULongLink, "GNU long link name entry"),
        (tar::EntryType::XHeader, "PAX extended header"),
    ];
    for (kind, what) in cases {
        let size: u64 = 1 << 30;
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_cksum();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(h.as_bytes()).unwrap();
        gz.write_all(&vec![b'a'; 4 << 20]).unwrap();
        let archive = gz.finish().unwrap();
        let mut listed = 0;
        let err =
            super::list_tar(&archive[..], &Decryption::default(), |_| listed += 1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(
            err.to_string().contains(&format!(
                "the archive is corrupt: its tar stream holds a {what} of {size} bytes, over the limit of 65536 bytes"
            )),
            "{err}"
        );
        assert_eq!(listed, 0);
    }
}

/// The backtracking matcher that `glob` replaced, as the reference for its meaning.
fn reference(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) if rest.first() == Some(&b'*') => {
            let rest = &rest[1..];
            let rest_noslash = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=name.len())
                .any(|i| reference(rest, &name[i..]) || reference(rest_noslash, &name[i..]))
        }
        Some((b'*', rest)) => {
            let mut i = 0;
            loop {
                if reference(rest, &name[i..]) {
                    return true;
                }
                if i == name.len() || name[i] == b'/' {
                    return false;
                }
                i += 1;
            }
        }
        Some((b'?', rest)) => {
            name.first().is_some_and(|&c| c != b'/') && reference(rest, &name[1..])
        }
        Some((&c, rest)) => name.first() == Some(&c) && reference(rest, &name[1..]),
    }
}

#[test]
fn globs_mean_what_the_backtracking_matcher_meant() {
    let patterns = [
        "",
        "*",
        "**",
        "***",
        "?",
        "a",
        "a/b",
        "*/b",
        "a/*",
        "**/b",
        "a/**",
        "a/**/b",
        "**/*.c",
        "a**b",
        "**b",
        "*a*",
        "a?/b",
        "**/a/**/b",
        "a/**/**/b",
        "?*?",
        "**/",
        "/**",
        "a/**/",
        "*/**/?",
        "**/b/**/*.c",
        "a/*/**",
    ];
    let names = [
        "",
        "a",
        "b",
        "ab",
        "a/b",
        "a/b/b",
        "b/a/b",
        "a/x/b",
        "a/x/y/b",
        "x.c",
        "a/x.c",
        "a/b/x.c",
        "b/b/b/f.c",
        "a/",
        "/a",
        "ba",
        "a//b",
        "axb",
        "a/bb",
        "aa/b",
        "b/b/1/f1",
    ];
    for p in patterns {
        for n in names {
            assert_eq!(
                glob(p.as_bytes(), n.as_bytes()),
                reference(p.as_bytes(), n.as_bytes()),
                "{p:?} against {n:?}"
            );
        }
    }
}

#[test]
fn deep_paths_are_matched_in_linear_time() {
    use super::select::Selection;
    // Five paths 1990 folders deep, with every folder above them, as a data service can
    // make them: the backtracking matcher took minutes on these.
    let deep = "b/".repeat(1990);
    let mut paths: Vec<String> = (1..=1990).map(|i| "b/".repeat(i - 1) + "b").collect();
    for i in 1..=5 {
        paths.push(format!("{deep}{i}"));
        paths.push(format!("{deep}{i}/f{i}"));
    }
    paths.push("etc/main.conf".into());
    let mut took = Vec::new();
    for pattern in [
        "**/*.conf",
        "**/b/**/*.conf",
        "**/b/**/b/**/*.conf",
        "**/b/**/f?",
    ] {
        let started = std::time::Instant::now();
        let selection = Selection::new(&[pattern]);
        let shown: Vec<&String> = paths.iter().filter(|p| selection.shows(p)).collect();
        let hits = paths
            .iter()
            .filter(|p| selection.hits(p).next().is_some())
            .count();
        if pattern.ends_with("f?") {
            assert_eq!((shown.len(), hits), (5, 5), "{pattern}");
        } else if pattern == "**/*.conf" {
            assert_eq!(shown, ["etc/main.conf"], "{pattern}");
            assert_eq!(hits, 1);
        } else {
            assert!(shown.is_empty() && hits == 0, "{pattern}");
        }
        took.push(started.elapsed());
    }
    // The attacker's three patterns, and one that runs every step over every byte (its
    // literal is in every path): each took minutes before, on a loaded machine too.
    let attacker: std::time::Duration = took[..3].iter().sum();
    assert!(
        attacker < std::time::Duration::from_millis(500)
            && took[3] < std::time::Duration::from_secs(3),
        "the deep paths took {took:?}"
    );
}

#[test]
fn a_folder_shows_what_is_below_it() {
    use super::select::Selection;
    let s = Selection::new(&["./etc/conf.d/", "*.sql"]);
    assert!(s.shows("etc/conf.d"));
    assert!(s.shows("etc/conf.d/a/b.conf"));
    assert!(!s.shows("etc/conf.dx/a"));
    assert!(!s.shows("etc"));
    assert!(s.shows("dump.sql"));
    assert!(!s.shows("sub/dump.sql"));
    assert!(Selection::new::<&str>(&[]).shows("anything/at/all"));
    assert!(Selection::new(&["/"]).shows("anything"));
}

#[test]
fn each_tar_header_read_through_the_index_must_be_the_entry_it_lists() {
    use crate::format::index::{EntryKind, IndexEntry};
    let header = |size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(size);
        h
    };
    let long = format!("d/{}", "x".repeat(150));
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_data(&mut header(5), "etc/a.conf", &b"hello"[..])
        .unwrap();
    builder
        .append_data(&mut header(2), &long, &b"hi"[..])
        .unwrap();
    let tar = builder.into_inner().unwrap();
    let entry = |path: &str, kind, size, tar_start, header_blocks| IndexEntry {
        path: path.into(),
        kind,
        mode: 0o644,
        size,
        mtime: 0,
        link: None,
        tar_start,
        header_blocks,
    };
    super::check_headers(&tar[..512], &entry("etc/a.conf", EntryKind::File, 5, 0, 1)).unwrap();
    // A long name: its header, the name's block, then the entry's own header.
    let long_head = &tar[1024..1024 + 1536];
    super::check_headers(long_head, &entry(&long, EntryKind::File, 2, 1024, 3)).unwrap();

    let refused = |head: &[u8], e: IndexEntry, found: &str| {
        let err = super::check_headers(head, &e).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("the archive's index does not match its tar stream")
                && text.contains(found),
            "{text}"
        );
    };
    let a = &tar[..512];
    refused(
        a,
        entry("etc/b.conf", EntryKind::File, 5, 0, 1),
        "it lists file \"etc/b.conf\" at offset 0, but the tar header there names file \"etc/a.conf\" of 5 bytes",
    );
    refused(
        a,
        entry("etc/a.conf", EntryKind::Dir, 0, 0, 1),
        "names file \"etc/a.conf\" of 5 bytes",
    );
    refused(
        a,
        entry("etc/a.conf", EntryKind::File, 6, 0, 1),
        "names file \"etc/a.conf\" of 5 bytes",
    );
    // Offsets that are no header: inside a file's data, and a header cut short.
    refused(
        &tar[512..1024],
        entry("etc/a.conf", EntryKind::File, 5, 512, 1),
        "cannot be read",
    );
    refused(
        &tar[1024..1536],
        entry(&long, EntryKind::File, 2, 1024, 1),
        "cannot be read",
    );
    // More header blocks counted than the headers take.
    refused(
        &tar[1024..1024 + 2048],
        entry(&long, EntryKind::File, 2, 1024, 4),
        "takes 1536 bytes, not the 2048 the index counts",
    );
}
