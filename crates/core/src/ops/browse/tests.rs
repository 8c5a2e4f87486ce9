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
