//! The parallel compressor's tests: round trips, members and frames, the entropy judgement,
//! failures and abandoned streams.

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use super::entropy::{
    MIN_STORED_PIECES, PIECE_SIZE, PROBE_ENTROPY_BITS, PROBE_SIZE, entropy_bits, incompressible,
    runs,
};
use super::parallel::Pool;
use super::*;

fn compress(data: &[u8], level: u32, threads: usize) -> Vec<u8> {
    compress_with(Algorithm::Gzip, data, level, threads)
}

fn compress_with(algorithm: Algorithm, data: &[u8], level: u32, threads: usize) -> Vec<u8> {
    std::thread::scope(|scope| {
        let mut compressor =
            ParallelCompressor::new(Vec::new(), algorithm, level, threads, scope).unwrap();
        // Odd-sized writes, as tar makes them.
        for piece in data.chunks(10_007) {
            compressor.write_all(piece).unwrap();
        }
        compressor.finish().unwrap()
    })
}

/// Every member, as restores read them.
fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// How many gzip members `gz` holds, each read and checked on its own; each must record
/// its own length in its header's extra field (but the member of an empty stream).
fn members(mut gz: &[u8]) -> usize {
    let mut count = 0;
    while !gz.is_empty() {
        let mut member = flate2::bufread::GzDecoder::new(gz);
        io::copy(&mut member, &mut io::sink()).unwrap();
        let Some(extra) = member.header().unwrap().extra().map(<[u8]>::to_vec) else {
            assert_eq!(gz, super::gzip::EMPTY_MEMBER, "a member without its length");
            return count + 1;
        };
        let rest = member.into_inner();
        let len = u32::try_from(gz.len() - rest.len()).unwrap();
        assert_eq!(
            extra[..4],
            [b'S', b'B', 4, 0],
            "member {count}'s extra field"
        );
        assert_eq!(
            extra[4..],
            len.to_le_bytes(),
            "member {count}'s recorded length"
        );
        gz = rest;
        count += 1;
    }
    count
}

/// Text that compresses, then bytes that do not: spans many blocks.
fn mixed(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut n = 0u64;
    while out.len() < len / 2 {
        out.extend_from_slice(
            format!("INSERT INTO t VALUES ({n}, 'row {n}', {});\n", n * 7).as_bytes(),
        );
        n += 1;
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn round_trip_at_levels_1_6_9() {
    let data = mixed(3 * BLOCK_SIZE + 12_345);
    for level in [1, 6, 9] {
        let gz = compress(&data, level, 2);
        assert_eq!(gunzip(&gz), data, "level {level}");
    }
}

#[test]
fn empty_input_is_a_valid_gzip_stream() {
    let gz = compress(b"", 6, 2);
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    assert!(gunzip(&gz).is_empty());
}

#[test]
fn many_blocks_on_one_or_several_threads() {
    let data = mixed(20 * BLOCK_SIZE + 1);
    for threads in [1, 3] {
        let gz = compress(&data, 6, threads);
        assert_eq!(gunzip(&gz), data, "{threads} threads");
    }
    // A member per block (or more), each with its own CRC and length.
    let gz = compress(&data, 6, 2);
    assert!(members(&gz) >= 21, "{} members", members(&gz));
}

#[test]
fn ratio_is_close_to_a_single_stream() {
    // Text alone; and small files of text and noise in turn, as a tar of a data dir.
    let text = mixed(8 * BLOCK_SIZE);
    let junk = noise(4 * BLOCK_SIZE);
    let mut files = Vec::new();
    for i in 0..400 {
        let from = if i % 2 == 0 { &text } else { &junk };
        files.extend_from_slice(&from[i * 10_240..(i + 1) * 10_240]);
    }
    for data in [text, files] {
        let par = compress(&data, 6, 2).len();
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap().len();
        assert!(
            par * 1000 <= single * 1005,
            "parallel {par} vs single {single}"
        );
    }
}

#[test]
fn system_gzip_accepts_the_output_of_several_members() {
    let data = mixed(5 * BLOCK_SIZE + 77);
    let several = compress(&data, 6, 2);
    assert!(members(&several) > 5, "{} members", members(&several));
    let empty = compress(b"", 6, 2);
    assert_eq!(members(&empty), 1);
    for gz in [several, empty] {
        // gzip is an essential package on Debian: its absence is a broken machine.
        let mut child = Command::new("gzip")
            .args(["-t", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run gzip -t");
        child.stdin.take().unwrap().write_all(&gz).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "gzip -t: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_failing_writer_fails_the_stream_without_panicking() {
    struct Failing;
    impl io::Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "gone"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let data = mixed(16 * BLOCK_SIZE);
    let failed = std::thread::scope(|scope| {
        let mut gz = ParallelCompressor::new(Failing, Algorithm::Gzip, 6, 2, scope).unwrap();
        let written = gz.write_all(&data);
        let second = gz.write_all(b"more");
        let finished = gz.finish();
        (written.is_err() || finished.is_err()) && (written.is_ok() || second.is_err())
    });
    assert!(failed);
}

/// Bytes that no compressor shrinks.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn incompressible_data_is_stored_with_little_overhead() {
    let data = noise(4 * BLOCK_SIZE + 5);
    let gz = compress(&data, 6, 2);
    assert_eq!(gunzip(&gz), data);
    // Stored blocks cost 5 bytes per 64 KiB, plus the flushes and the gzip frame.
    assert!(
        gz.len() < data.len() + data.len() / 1000 + 200,
        "{} for {}",
        gz.len(),
        data.len()
    );
    let mut six = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    six.write_all(&data).unwrap();
    assert!(gz.len() <= six.finish().unwrap().len() + 200);
}

#[test]
fn text_within_a_block_of_noise_is_still_compressed() {
    let mut data = noise(BLOCK_SIZE / 2);
    data.extend(mixed(BLOCK_SIZE).into_iter().take(BLOCK_SIZE / 2));
    data.extend(noise(BLOCK_SIZE));
    let gz = compress(&data, 6, 2);
    assert_eq!(gunzip(&gz), data);
    assert!(
        gz.len() < data.len() - BLOCK_SIZE / 4,
        "{} for {}",
        gz.len(),
        data.len()
    );
}

/// What a stream of `data` has written when it is dropped without `finish`.
fn abandoned(algorithm: Algorithm, data: &[u8]) -> Vec<u8> {
    let out = Mutex::new(Vec::new());
    struct Shared<'a>(&'a Mutex<Vec<u8>>);
    impl io::Write for Shared<'_> {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    std::thread::scope(|scope| {
        let level = algorithm.default_level();
        let mut stream = ParallelCompressor::new(Shared(&out), algorithm, level, 2, scope).unwrap();
        stream.write_all(data).unwrap();
        drop(stream);
    });
    out.into_inner().unwrap()
}

#[test]
fn an_abandoned_stream_never_reads_as_complete() {
    let data = mixed(3 * BLOCK_SIZE);
    let written = abandoned(Algorithm::Gzip, &data);
    let mut read = Vec::new();
    let result = flate2::read::MultiGzDecoder::new(&written[..]).read_to_end(&mut read);
    assert!(
        result.is_err(),
        "an abandoned stream must not read as complete"
    );
    // The blocks written before it was dropped are there, but no reader ends cleanly.
    assert!(read.len() >= BLOCK_SIZE, "{} bytes read", read.len());
    let mut child = Command::new("gzip")
        .args(["-t", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run gzip -t");
    child.stdin.take().unwrap().write_all(&written).unwrap();
    assert!(!child.wait().unwrap().success(), "gzip -t accepts it");
}

/// Every frame of a zstd stream, as restores read them.
fn unzstd(z: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    ::zstd::stream::read::Decoder::new(z)?.read_to_end(&mut out)?;
    Ok(out)
}

/// Runs `zstd -t` on `z`; whether it accepted it, and what it said.
fn zstd_test(z: &[u8]) -> (bool, String) {
    // tests/run.sh installs the zstd command: its absence is a broken set-up.
    let mut child = Command::new("zstd")
        .args(["-t", "-q", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run zstd -t");
    child.stdin.take().unwrap().write_all(z).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn zstd_streams_are_a_checksummed_frame_per_block_that_zstd_reads() {
    let data = mixed(5 * BLOCK_SIZE + 77);
    for (level, threads) in [(1, 1), (3, 2), (19, 3), (40, 2)] {
        let z = compress_with(Algorithm::Zstd, &data, level, threads);
        assert_eq!(unzstd(&z).unwrap(), data, "level {level}");
    }
    let z = compress_with(Algorithm::Zstd, &data, 3, 2);
    let mut frames = 0;
    let mut rest = &z[..];
    while !rest.is_empty() {
        assert_eq!(&rest[..4], &ZSTD_MAGIC);
        // The frame header descriptor's Content_Checksum_flag.
        assert_ne!(rest[4] & 0x04, 0, "frame {frames} has no checksum");
        let len = ::zstd::zstd_safe::find_frame_compressed_size(rest).unwrap();
        rest = &rest[len..];
        frames += 1;
    }
    assert_eq!(frames, 6);
    let empty = compress_with(Algorithm::Zstd, b"", 3, 2);
    assert!(empty.starts_with(&ZSTD_MAGIC));
    assert!(unzstd(&empty).unwrap().is_empty());
    for z in [z, empty] {
        let (ok, said) = zstd_test(&z);
        assert!(ok, "zstd -t: {said}");
    }
}

#[test]
fn zstd_compresses_text_as_well_as_gzip_6_and_stores_noise() {
    let text = mixed(8 * BLOCK_SIZE)[..4 * BLOCK_SIZE].to_vec();
    let z = compress_with(Algorithm::Zstd, &text, 3, 2).len();
    let gz = compress(&text, 6, 2).len();
    assert!(z <= gz, "zstd {z} vs gzip {gz}");
    let junk = noise(2 * BLOCK_SIZE);
    let z = compress_with(Algorithm::Zstd, &junk, 3, 2);
    assert_eq!(unzstd(&z).unwrap(), junk);
    assert!(
        z.len() < junk.len() + junk.len() / 1000 + 100,
        "{}",
        z.len()
    );
}

#[test]
fn damaged_or_abandoned_zstd_streams_never_read_as_complete() {
    let data = mixed(3 * BLOCK_SIZE);
    let z = compress_with(Algorithm::Zstd, &data, 3, 2);
    // A flipped byte in the last frame's data: its checksum (or its structure) tells.
    let mut flipped = z.clone();
    let at = flipped.len() - 100;
    flipped[at] ^= 0x20;
    assert!(unzstd(&flipped).is_err());
    assert!(!zstd_test(&flipped).0, "zstd -t accepts a flipped byte");

    let written = abandoned(Algorithm::Zstd, &data);
    assert!(written.ends_with(&ZSTD_MAGIC));
    let err = unzstd(&written).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    assert!(
        !zstd_test(&written).0,
        "zstd -t accepts an abandoned stream"
    );
}

#[test]
fn buffers_are_reused_from_block_to_block() {
    let pool = Pool::default();
    let first = pool.take(BLOCK_SIZE);
    let address = first.as_ptr();
    pool.give(first);
    let again = pool.take(BLOCK_SIZE);
    assert_eq!(again.as_ptr(), address);
    assert!(again.is_empty() && again.capacity() >= BLOCK_SIZE);
}

#[test]
fn entropy_matches_its_definition() {
    let direct = |piece: &[u8]| -> f64 {
        let mut counts = [0u32; 256];
        for &b in piece {
            counts[usize::from(b)] += 1;
        }
        let n = piece.len() as f64;
        counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| -(f64::from(c) / n) * (f64::from(c) / n).log2())
            .sum()
    };
    let text = mixed(3 * PIECE_SIZE);
    let junk = noise(3 * PIECE_SIZE);
    for piece in [
        &text[..PIECE_SIZE],
        &junk[..PIECE_SIZE],
        &junk[..PIECE_SIZE / 3],
        &text[5..6],
        &[7u8; PIECE_SIZE][..],
        &junk[..],
    ] {
        let (fast, slow) = (entropy_bits(piece), direct(piece));
        assert!((fast - slow).abs() < 1e-9, "{fast} vs {slow}");
    }
}

#[test]
fn entropy_tells_noise_from_text() {
    assert!(entropy_bits(&noise(PIECE_SIZE)) >= STORED_ENTROPY_BITS);
    assert!(entropy_bits(&mixed(2 * PIECE_SIZE)[..PIECE_SIZE]) < 6.0);
    assert!(entropy_bits(&[0u8; 100]) < 0.001);
    assert!(entropy_bits(&[]) < 0.001);
}

#[test]
fn the_probe_settles_text_and_leaves_noise_to_the_whole_piece() {
    let junk = noise(PIECE_SIZE);
    assert!(entropy_bits(&junk[..PROBE_SIZE]) >= PROBE_ENTROPY_BITS);
    assert!(incompressible(&junk));
    let text = mixed(PIECE_SIZE);
    assert!(entropy_bits(&text[..PROBE_SIZE]) < PROBE_ENTROPY_BITS);
    assert!(!incompressible(&text));
    // Text at the start and noise after: the probe says compress, and that is all.
    let mut half = text[..PROBE_SIZE].to_vec();
    half.extend_from_slice(&junk[PROBE_SIZE..]);
    assert!(!incompressible(&half));
}

#[test]
fn only_long_runs_of_noise_are_stored() {
    let text = mixed(8 * PIECE_SIZE);
    let mut data = noise(PIECE_SIZE);
    data.extend_from_slice(&text[..3 * PIECE_SIZE]);
    data.extend(noise(MIN_STORED_PIECES * PIECE_SIZE + 100));
    data.extend_from_slice(&text[..PIECE_SIZE / 2]);
    let runs = runs(&data);
    assert_eq!(
        runs.iter().map(|r| r.2).collect::<Vec<_>>(),
        [false, true, false],
        "{runs:?}"
    );
    assert_eq!(runs[0], (0, 4 * PIECE_SIZE, false));
    assert_eq!(runs[2].1, data.len());
}

#[test]
fn any_mix_of_runs_round_trips() {
    // Runs of text and noise of many lengths, in blocks, on several threads.
    let text = mixed(BLOCK_SIZE);
    let junk = noise(BLOCK_SIZE);
    let mut data = Vec::new();
    let mut x = 7u64;
    while data.len() < 6 * BLOCK_SIZE {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let len = usize::try_from(x >> 45).unwrap() % (300 * 1024) + 1;
        let from = if x & 1 == 0 { &text } else { &junk };
        data.extend_from_slice(&from[..len.min(from.len())]);
    }
    let gz = compress(&data, 6, 3);
    assert_eq!(gunzip(&gz), data);
}
