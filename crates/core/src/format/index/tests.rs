use super::*;
use crate::compression::Algorithm;

fn file(path: &str, tar_start: u64, size: u64) -> IndexEntry {
    IndexEntry {
        path: path.into(),
        kind: EntryKind::File,
        mode: 0o644,
        size,
        mtime: 1_764_000_000,
        link: None,
        tar_start,
        header_blocks: 1,
    }
}

/// A body of `entries`, for a tar stream ending 1024 bytes after the last, in blocks of
/// 4096 bytes that compressed to 100 bytes each.
fn body_of(entries: &[IndexEntry]) -> (Vec<u8>, u64) {
    let tar_len = entries.last().map_or(0, IndexEntry::tar_end) + 1024;
    let blocks = vec![100u32; usize::try_from(tar_len.div_ceil(4096).max(1)).unwrap()];
    let mut body = encode_head(4096, &blocks, tar_len, entries.len() as u64);
    let mut encoder = EntryEncoder::default();
    for e in entries {
        encoder.encode(e, &mut body);
    }
    (body, blocks.len() as u64 * 100)
}

fn decoded(body: Vec<u8>, compressed: u64) -> Result<Vec<IndexEntry>> {
    ArchiveIndex::decode(body, compressed)?.entries().collect()
}

fn sample() -> Vec<IndexEntry> {
    let mut dir = file("db", 0, 0);
    dir.kind = EntryKind::Dir;
    dir.mode = 0o755;
    let mut link = file("db/latest", 512 + 512 + 9728, 0);
    link.kind = EntryKind::Symlink;
    link.link = Some("dump.sql".into());
    link.mtime -= 3600;
    let mut long = file(&format!("db/{}", "x".repeat(200)), 512, 9000);
    long.header_blocks = 2;
    vec![dir, long, link, file("db/zeta", 512 * 3 + 9728, 1)]
}

#[test]
fn entries_round_trip_with_paths_front_coded() {
    let entries = sample();
    let (body, compressed) = body_of(&entries);
    let index = ArchiveIndex::decode(body, compressed).unwrap();
    assert_eq!(index.block_starts.first(), Some(&0));
    assert_eq!(index.block_starts.last(), Some(&compressed));
    let back: Vec<_> = index.entries().map(Result::unwrap).collect();
    assert_eq!(back, entries);
    assert_eq!(index.blocks_of(0, 4096), 0..1);
    assert_eq!(index.blocks_of(4000, 4097), 0..2);
}

#[test]
fn one_million_files_take_a_few_bytes_each() {
    // Paths as a dump folder holds them: a thousand folders of a thousand files.
    let n = 1_000_000u64;
    let mut body = Vec::new();
    let mut encoder = EntryEncoder::default();
    for i in 0..n {
        let mut e = file(
            &format!("data/base/{:05}/{:09}.dat", i / 1000, i),
            i * 2560,
            1000 + (i % 1000),
        );
        e.mtime += i64::try_from(i % 7).unwrap();
        encoder.encode(&e, &mut body);
    }
    let blocks = (n * 2560 + 1024).div_ceil(1 << 20);
    let head = encode_head(
        1 << 20,
        &vec![600_000u32; usize::try_from(blocks).unwrap()],
        n * 2560 + 1024,
        n,
    );
    let per_entry = body.len() as f64 / n as f64;
    let total = body.len() + head.len();
    println!(
        "1 M entries: {total} bytes, {per_entry:.1} bytes per entry, {} bytes of block table",
        head.len()
    );
    assert!(per_entry < 16.0, "{per_entry} bytes per entry");
}

#[test]
fn hostile_counts_offsets_and_paths_are_refused() {
    let bad_body = |e: &[IndexEntry]| decoded(body_of(e).0, body_of(e).1).unwrap_err();
    // Path traversal and absolute paths, before any write.
    for path in [
        "../etc/passwd",
        "/etc/passwd",
        "a/../../b",
        "a//b",
        "./a",
        "a/.",
        "nul\0x",
    ] {
        let e = bad_body(&[file(path, 0, 1)]);
        assert_eq!(
            e.kind(),
            crate::error::ErrorKind::UnsafeEntry,
            "{path}: {e}"
        );
    }
    // An entry past the end of the tar stream: the tar length is cut short.
    let entries = [file("a", 0, 10_000)];
    let tar_len = entries[0].tar_end() + 1024;
    let mut body = encode_head(4096, &[100; 3], tar_len - 2048, 1);
    EntryEncoder::default().encode(&entries[0], &mut body);
    let e = decoded(body, 300).unwrap_err();
    assert!(
        e.to_string().contains("lies past the end") || e.to_string().contains("blocks"),
        "{e}"
    );
    // Blocks that do not add up to the compressed stream.
    let (body, compressed) = body_of(&sample());
    let e = ArchiveIndex::decode(body.clone(), compressed + 1).unwrap_err();
    assert!(e.to_string().contains("compressed stream"), "{e}");
    // Huge counts, refused before any allocation.
    let mut body = Vec::new();
    put_varint(&mut body, 4096);
    put_varint(&mut body, u64::MAX / 2);
    put_varint(&mut body, u64::MAX / 2);
    put_varint(&mut body, u64::MAX);
    let e = ArchiveIndex::decode(body, 100).unwrap_err();
    assert!(e.to_string().contains("blocks for a tar stream"), "{e}");
    let mut body = encode_head(4096, &[100], 2048, 1_000_000);
    body.extend_from_slice(&[0; 64]);
    let e = ArchiveIndex::decode(body, 100).unwrap_err();
    assert!(e.to_string().contains("1000000 entries"), "{e}");
    // A shared prefix longer than the path before: refused, not a panic.
    let mut body = encode_head(4096, &[100], 2048, 1);
    for v in [5, 1, u64::from(b'a'), 0, 0, 1, 0, 0] {
        put_varint(&mut body, v);
    }
    let e = decoded(body, 100).unwrap_err();
    assert!(e.to_string().contains("shares more"), "{e}");
    // Bytes after the last entry; a body cut short; a varint too long.
    let (mut body, compressed) = body_of(&sample());
    body.push(0);
    let e = decoded(body, compressed).unwrap_err();
    assert!(e.to_string().contains("after its last entry"), "{e}");
    let (body, compressed) = body_of(&sample());
    let e = decoded(body[..body.len() - 3].to_vec(), compressed).unwrap_err();
    assert!(e.to_string().contains("ends inside"), "{e}");
    let e = ArchiveIndex::decode(vec![0xff; 20], 100).unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
}

#[test]
fn overlapping_entries_cannot_be_written_and_a_header_count_of_zero_is_refused() {
    // Offsets are gaps after the entry before, so entries never overlap; a forged count of
    // zero header blocks would make one entry's data its own header: refused.
    let mut e = file("a", 0, 10);
    e.header_blocks = 0;
    let (body, compressed) = body_of(&[e]);
    let err = decoded(body, compressed).unwrap_err();
    assert!(err.to_string().contains("invalid layout"), "{err}");
    let mut e = file("a", 0, 10);
    e.kind = EntryKind::Dir;
    let (body, compressed) = body_of(&[e]);
    assert!(decoded(body, compressed).is_err(), "a folder with content");
}

#[test]
fn carriers_round_trip_and_are_skipped_by_every_decompressor() {
    use std::io::Read as _;
    let (body, _) = body_of(&sample());
    for algorithm in Algorithm::ALL {
        let mut payload = Vec::new();
        let mut carriers = Vec::new();
        let n = carrier::write_index(algorithm, &body[..], 1234, &mut carriers).unwrap();
        assert_eq!(n, carriers.len() as u64);
        // Behind a real stream of "hello", the carriers decompress to nothing.
        let stream = match algorithm {
            Algorithm::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut enc, b"hello").unwrap();
                enc.finish().unwrap()
            }
            Algorithm::Zstd => zstd::bulk::compress(b"hello", 1).unwrap(),
        };
        payload.extend_from_slice(&stream);
        payload.extend_from_slice(&carriers);
        let mut plain = Vec::new();
        crate::pipeline::decompress::serial_decoder(algorithm, &payload[..])
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, b"hello", "{algorithm:?}");
        let flen = carrier::footer_carrier_len(algorithm);
        let raw = carrier::footer_in(algorithm, &carriers).unwrap();
        let footer = Footer::decode(raw, 1234 + carriers.len() as u64, flen)
            .unwrap()
            .unwrap();
        assert_eq!(footer.index_start, 1234);
        let body_carriers = &carriers[..usize::try_from(footer.carriers_len).unwrap()];
        assert_eq!(
            carrier::body_of(algorithm, body_carriers, &footer).unwrap(),
            body
        );
        // A payload that does not end with a footer has no index.
        assert!(carrier::footer_in(algorithm, &stream).is_none());
        // A footer that does not fit the payload is refused.
        assert!(Footer::decode(raw, 99, flen).is_err());
        // A footer that asks for more carriers than its body needs is refused before any
        // of them is read (a plain archive's footer is not authenticated).
        let forged = Footer {
            carriers_len: footer.carriers_len + (1 << 30),
            ..footer
        };
        let e = Footer::decode(
            &forged.encode(),
            1234 + (1 << 30) + carriers.len() as u64,
            flen,
        )
        .unwrap_err();
        assert!(e.to_string().contains("bytes of carriers"), "{e}");
        // A flipped byte of a plain archive's body fails its CRC-32.
        let mut damaged = body_carriers.to_vec();
        let last = damaged.len() - 20;
        damaged[last] ^= 1;
        assert!(carrier::body_of(algorithm, &damaged, &footer).is_err());
    }
}

proptest::proptest! {
    /// What the `index` fuzz target checks, on mutations of a valid body and payload end.
    #[test]
    fn hostile_bytes_give_an_index_or_an_error_never_a_panic(
        flips in proptest::collection::vec((0usize..400, 0u8..=255), 0..6),
        cut in 0usize..400,
    ) {
        let (mut body, compressed) = body_of(&sample());
        for (at, mask) in &flips {
            let n = body.len();
            body[at % n] ^= mask;
        }
        body.truncate(body.len() - cut.min(body.len()) % 7);
        if let Ok(index) = ArchiveIndex::decode(body.clone(), compressed) {
            let mut end = 0;
            for entry in index.entries() {
                let Ok(entry) = entry else { break };
                proptest::prop_assert!(check_path(&entry.path).is_ok());
                proptest::prop_assert!(entry.tar_start >= end && entry.tar_end() <= index.tar_len);
                end = entry.tar_end();
            }
        }
        let mut payload = vec![0u8; 50];
        carrier::write_index(Algorithm::Gzip, &body[..], 50, &mut payload).unwrap();
        for (at, mask) in &flips {
            let n = payload.len();
            payload[at * 7 % n] ^= mask;
        }
        let flen = carrier::footer_carrier_len(Algorithm::Gzip);
        if let Some(raw) = carrier::footer_in(Algorithm::Gzip, &payload)
            && let Ok(Some(footer)) = Footer::decode(raw, payload.len() as u64, flen)
        {
            let start = usize::try_from(footer.index_start).unwrap();
            let end = start + usize::try_from(footer.carriers_len).unwrap();
            let _ = carrier::body_of(Algorithm::Gzip, &payload[start..end], &footer);
        }
    }
}

/// The seed of the `index` fuzz target is a valid body, the one of [`sample`].
#[test]
fn the_fuzz_seed_is_a_valid_body() {
    let (body, compressed) = body_of(&sample());
    assert!(decoded(body.clone(), compressed).is_ok());
    let seed =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/index/valid-body");
    assert!(
        std::fs::read(seed).unwrap() == body,
        "the seed is not sample()'s body"
    );
}

#[test]
fn a_block_larger_than_its_block_size_compresses_to_is_refused() {
    // The planted index of a report: one block whose compressed length is the whole
    // payload (300 MiB), which a restore with --include read into memory at once.
    let block_size = 1 << 20;
    let most = u32::try_from(max_compressed_block(block_size)).unwrap();
    for (tar_len, lens) in [
        (block_size, vec![300u32 << 20]),
        (3 * block_size, vec![1000, most + 1, 1000]),
    ] {
        let body = encode_head(block_size, &lens, tar_len, 0);
        let compressed = lens.iter().map(|l| u64::from(*l)).sum();
        let err = ArchiveIndex::decode(body, compressed).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Corrupt, "{err}");
        assert!(
            err.to_string()
                .contains("compressed bytes, more than a block of 1048576 bytes compresses to"),
            "{err}"
        );
    }
    let body = encode_head(block_size, &[most], block_size, 0);
    ArchiveIndex::decode(body, u64::from(most)).unwrap();
}

#[test]
fn the_writer_never_makes_a_block_larger_than_the_bound() {
    use std::io::Write as _;
    // Noise, and runs of noise and zeros that alternate every 8 KiB (a member each in
    // gzip): the most a block grows.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect()
    };
    let mut data = noise(3 << 20);
    for _ in 0..(2 << 20) / (16 << 10) {
        data.extend(noise(8 << 10));
        data.extend(std::iter::repeat_n(0u8, 8 << 10));
    }
    let block_size = crate::pipeline::compress::BLOCK_SIZE as u64;
    for algorithm in Algorithm::ALL {
        let (_, blocks) = std::thread::scope(|scope| {
            let mut c = crate::pipeline::compress::ParallelCompressor::new(
                Vec::new(),
                algorithm,
                6,
                2,
                scope,
            )
            .unwrap();
            c.write_all(&data).unwrap();
            c.finish_with_blocks().unwrap()
        });
        assert_eq!(blocks.len(), 5, "{algorithm:?}");
        for len in blocks {
            assert!(
                u64::from(len) <= max_compressed_block(block_size),
                "{algorithm:?}: {len}"
            );
        }
    }
}

/// A path length near `u64::MAX` is an error, not an overflow (found by the `index` fuzz
/// target: debug builds panicked adding it to the shared part's length).
#[test]
fn a_path_length_near_the_largest_number_is_refused() {
    let data = [
        0x80, 0x80, 0x28, 0x01, 0xff, 0xff, 0x20, 0x04, 0x80, 0x64, 0x00, 0x8b, 0x00, 0x05, 0x2f,
        0x05, 0x2f, 0x05, 0x7a, 0x08, 0x2d, 0x08, 0x08, 0x26, 0x40, 0x08, 0x08, 0x08, 0x80, 0x28,
        0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x33, 0x33, 0x6d,
    ];
    let index = ArchiveIndex::decode(data.to_vec(), u64::from(data[0]) * 100).unwrap();
    let errors: Vec<String> = index
        .entries()
        .filter_map(|e| e.err().map(|e| e.to_string()))
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("longer than 4096 bytes")),
        "{errors:?}"
    );
}
