//! The read pipe's tests: archives recognised, every layer checked, old formats read.

use std::fmt::Write as _;
use std::io::Write as _;

use super::*;
use crate::format::{EncryptingWriter, Key};
use crate::pipeline::stage::tests::Trickle;
use crate::progress::NoProgress;

fn tar_gz() -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    b.append_data(&mut h, "a.txt", &b"hello"[..]).unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

/// A tar of one file with `after` zero bytes after its end marker, zstd-compressed.
fn tar_zst_with_tail(after: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    b.append_data(&mut h, "a.txt", &b"hello"[..]).unwrap();
    let mut tar = b.into_inner().unwrap();
    tar.resize(tar.len() + after, 0);
    zstd::encode_all(&tar[..], 1).unwrap()
}

/// The error of reading `archive` (plain, no key) only to check it.
fn check_only_error(archive: &[u8]) -> Error {
    read_archive(
        archive,
        &Decryption::default(),
        None,
        Extractor::check_only(),
        &NoProgress,
    )
    .unwrap_err()
}

#[test]
fn data_after_the_tar_end_marker_is_refused_past_a_megabyte() {
    // Record padding (GNU tar's 10 KiB records, or a megabyte at most) is read.
    for after in [0, 9 * 1024, MAX_AFTER_END as usize - 1024] {
        let stats = read_archive(
            &tar_zst_with_tail(after)[..],
            &Decryption::default(),
            None,
            Extractor::check_only(),
            &NoProgress,
        )
        .unwrap();
        assert_eq!(stats.extracted.entries, 1);
    }
    // The report's archive had 20 GiB of zeros there, all decompressed for nothing.
    let err = check_only_error(&tar_zst_with_tail(64 << 20)[..]);
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(
        err.to_string()
            .contains("more than 1 MiB of data follow its tar end-of-archive marker"),
        "{err}"
    );
}

#[test]
fn archives_are_recognised_from_one_byte_reads() {
    let key = Key::generate().unwrap();
    let mut w = EncryptingWriter::new(Vec::new(), &key).unwrap();
    w.write_all(&tar_gz()).unwrap();
    let sealed = w.finish().unwrap();
    let decryption = Decryption::new(Some(Keyring::new(key)));
    let stats = read_archive(
        Trickle(&sealed),
        &decryption,
        None,
        Extractor::check_only(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(stats.extracted.entries, 1);
    let plain = read_archive(
        Trickle(&tar_gz()),
        &Decryption::default(),
        None,
        Extractor::check_only(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(plain.extracted.bytes, 5);
}

#[test]
fn a_plain_archive_is_refused_when_keys_are_given_unless_allowed() {
    let mut decryption = Decryption::new(Some(Keyring::new(Key::generate().unwrap())));
    let err = read_archive(
        &tar_gz()[..],
        &decryption,
        None,
        Extractor::check_only(),
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("not encrypted although a key is configured"),
        "{err}"
    );
    decryption.allow_unencrypted = true;
    read_archive(
        &tar_gz()[..],
        &decryption,
        None,
        Extractor::check_only(),
        &NoProgress,
    )
    .unwrap();
}

/// A tar of `a.sql`, whose header and data fill exactly one gzip block, then `b.txt`;
/// gzipped as a backup does it, so that a gzip member ends where `b.txt`'s header starts.
fn two_member_tar_gz() -> (Vec<u8>, usize) {
    use crate::compression::Algorithm;
    use crate::pipeline::compress::{BLOCK_SIZE, ParallelCompressor};
    let mut b = tar::Builder::new(Vec::new());
    let mut text = "INSERT INTO t VALUES (1, 'one');\n".repeat(BLOCK_SIZE / 32);
    text.truncate(BLOCK_SIZE - 512);
    for (name, data) in [("a.sql", text.as_bytes()), ("b.txt", &b"bee"[..])] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let gz = std::thread::scope(|scope| {
        let mut gz = ParallelCompressor::new(Vec::new(), Algorithm::Gzip, 6, 2, scope).unwrap();
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    });
    let mut first = flate2::bufread::GzDecoder::new(&gz[..]);
    let first_len = io::copy(&mut first, &mut io::sink()).unwrap();
    assert_eq!(
        first_len, BLOCK_SIZE as u64,
        "the first member is the first block"
    );
    let cut = gz.len() - first.into_inner().len();
    (gz, cut)
}

#[test]
fn every_gzip_member_is_read() {
    let (gz, _) = two_member_tar_gz();
    let stats = read_archive(
        Trickle(&gz),
        &Decryption::default(),
        None,
        Extractor::check_only(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(stats.extracted.entries, 2);
    let block = crate::pipeline::compress::BLOCK_SIZE;
    assert_eq!(stats.extracted.bytes, (block - 512 + 3) as u64);
}

#[test]
fn an_archive_cut_between_gzip_members_is_refused() {
    // A valid gzip stream, and a tar stream that ends at an entry boundary: only the
    // missing end-of-archive marker shows that `b.txt` was lost.
    let (gz, cut) = two_member_tar_gz();
    let err = check_only_error(&gz[..cut]);
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(
        err.to_string()
            .contains("without its end-of-archive marker"),
        "{err}"
    );
}

#[test]
fn an_archive_of_the_earlier_one_member_format_still_restores() {
    // A plain backup made by the writer before members per block: one gzip member whose
    // 1 MiB blocks were primed with the end of the block before and joined by sync
    // flushes, with stored deflate blocks for the noise. Its source is made again here.
    let gz = include_bytes!("../../../tests/fixtures/one-member-v1.tar.gz");
    let mut text = String::new();
    let mut n = 0u64;
    while text.len() < 3 * 1024 * 1024 + 1000 {
        let _ = writeln!(text, "INSERT INTO t VALUES ({}, 'same row');", n % 97);
        n += 1;
    }
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut noise = Vec::new();
    while noise.len() < 20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.extend_from_slice(&x.to_le_bytes());
    }
    let dir = tempfile::tempdir().unwrap();
    let stats = read_archive(
        &gz[..],
        &Decryption::default(),
        None,
        Extractor::into_dir(dir.path()),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(stats.extracted.bytes, (text.len() + noise.len()) as u64);
    assert_eq!(
        std::fs::read(dir.path().join("db/dump.sql")).unwrap(),
        text.as_bytes()
    );
    assert_eq!(std::fs::read(dir.path().join("noise.bin")).unwrap(), noise);
}
