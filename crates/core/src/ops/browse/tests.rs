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
