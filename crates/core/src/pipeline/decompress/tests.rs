//! The parallel decompression's tests: the boundary finder on gzip and zstd streams at and
//! around block boundaries, old and foreign streams, damage reported as the single-thread
//! restore reports it, and the pool's order, memory bound, errors and panics.

use std::io::{self, Read, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::inflate::{Inflate, Inflater};
use super::split::{BlockSource, Codec, Job, Part, Splitter, splittable};
use super::*;
use crate::pipeline::compress::ParallelCompressor;

/// Text that compresses, then bytes that do not, in turns of `turn` bytes.
fn mixed(len: usize, turn: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut n = 0u64;
    while out.len() < len {
        let end = (out.len() + turn).min(len);
        while out.len() < end {
            out.extend_from_slice(format!("INSERT INTO t VALUES ({n}, 'row {n}');\n").as_bytes());
            n += 1;
        }
        let end = (out.len() + turn).min(len);
        while out.len() < end {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

/// `data` compressed as a backup compresses it.
fn compressed(algorithm: Algorithm, data: &[u8]) -> Vec<u8> {
    std::thread::scope(|scope| {
        let level = algorithm.default_level();
        let mut c = ParallelCompressor::new(Vec::new(), algorithm, level, 2, scope).unwrap();
        c.write_all(data).unwrap();
        c.finish().unwrap()
    })
}

/// Every job the boundary finder cuts `stream` into.
fn jobs(algorithm: Algorithm, stream: &[u8]) -> Vec<Job> {
    let mut splitter = Splitter::new(stream, algorithm);
    let mut jobs = Vec::new();
    loop {
        let mut job = Job::new(Vec::new());
        if !splitter.next_job(&mut job).unwrap() {
            return jobs;
        }
        jobs.push(job);
    }
}

/// What `stream` decompresses to on `threads` threads, or the bytes before its error and
/// the error.
fn decompressed(algorithm: Algorithm, stream: &[u8], threads: usize) -> (Vec<u8>, Option<String>) {
    std::thread::scope(|scope| {
        let first = stream[..stream.len().min(FIRST_LEN)].to_vec();
        let rest = &stream[first.len()..];
        let mut reader = decompress(scope, algorithm, first, rest, threads).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0; 10_000];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    })
}

#[test]
fn blocks_are_found_at_and_around_the_block_size_in_gzip_and_zstd() {
    let block = crate::pipeline::compress::BLOCK_SIZE;
    for algorithm in Algorithm::ALL {
        for len in [1, 511, block - 1, block, block + 1, 3 * block + 7] {
            // Text only, and text and noise in turns that cut blocks into several members.
            for turn in [usize::MAX / 2, 20_000] {
                let data = mixed(len, turn);
                let stream = compressed(algorithm, &data);
                assert!(splittable(algorithm, &stream), "{algorithm} {len}");
                let jobs = jobs(algorithm, &stream);
                let codec = if algorithm == Algorithm::Gzip {
                    Codec::Gzip
                } else {
                    Codec::Zstd
                };
                assert!(
                    jobs.iter().all(|j| j.codec == codec),
                    "{algorithm} {len}: a job in sequence"
                );
                let parts: Vec<Part> = jobs.iter().flat_map(|j| j.parts.clone()).collect();
                assert_eq!(
                    parts.iter().map(|p| p.len).sum::<usize>(),
                    stream.len(),
                    "{algorithm} {len}"
                );
                assert_eq!(
                    parts.iter().map(|p| p.plain).sum::<usize>(),
                    len,
                    "{algorithm} {len}"
                );
                // No block is cut inside a part, and none holds much more than a block.
                for job in &jobs {
                    assert_eq!(
                        job.parts.iter().map(|p| p.len).sum::<usize>(),
                        job.data.len()
                    );
                    assert!(job.plain_len() <= 2 * block, "{}", job.plain_len());
                }
                for threads in [1, 2, 3] {
                    let (out, error) = decompressed(algorithm, &stream, threads);
                    assert_eq!(error, None, "{algorithm} {len} on {threads}");
                    assert!(out == data, "{algorithm} {len} on {threads} threads");
                }
            }
        }
    }
}

#[test]
fn zstd_frames_of_other_writers_are_walked_when_they_say_their_size() {
    let data = mixed(300_000, 5_000);
    // zstd's own one-shot frames name their content size: walked.
    let one = zstd::bulk::compress(&data, 3).unwrap();
    let two = [one.clone(), one.clone()].concat();
    assert!(splittable(Algorithm::Zstd, &two));
    assert_eq!(
        jobs(Algorithm::Zstd, &two)
            .iter()
            .map(|j| j.parts.len())
            .sum::<usize>(),
        2
    );
    assert!(decompressed(Algorithm::Zstd, &two, 2).0 == [&data[..], &data[..]].concat());
    // A streamed frame does not: decompressed in sequence, the same bytes.
    let streamed = zstd::encode_all(&data[..], 3).unwrap();
    assert!(!splittable(Algorithm::Zstd, &streamed));
    assert!(decompressed(Algorithm::Zstd, &streamed, 2).0 == data);
}

#[test]
fn gzip_streams_from_before_the_length_field_decompress_in_sequence() {
    // One member of flate2's, as any gzip writer makes: no length field.
    let data = mixed(2_500_000, 100_000);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&data).unwrap();
    let old = gz.finish().unwrap();
    assert!(!splittable(Algorithm::Gzip, &old));
    assert!(decompressed(Algorithm::Gzip, &old, 2).0 == data);
    // The earlier writer's archive: one member of blocks joined by sync flushes.
    let v1 = include_bytes!("../../../tests/fixtures/one-member-v1.tar.gz");
    assert!(!splittable(Algorithm::Gzip, v1));
    let (out, error) = decompressed(Algorithm::Gzip, v1, 2);
    assert_eq!(error, None);
    assert_eq!(out, decompressed(Algorithm::Gzip, v1, 1).0);
    // Our members, then a foreign one: the rest switches to the decoder in sequence.
    let ours = mixed(1_500_000, 30_000);
    let stream = [compressed(Algorithm::Gzip, &ours), old].concat();
    let jobs = jobs(Algorithm::Gzip, &stream);
    assert_eq!(jobs[0].codec, Codec::Gzip);
    assert_eq!(jobs.last().unwrap().codec, Codec::Plain);
    assert!(decompressed(Algorithm::Gzip, &stream, 2).0 == [ours, data].concat());
}

/// Where each part of a gzip `stream` starts.
fn member_starts(stream: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut starts = Vec::new();
    for job in jobs(Algorithm::Gzip, stream) {
        for part in job.parts {
            starts.push(at);
            at += part.len;
        }
    }
    starts
}

#[test]
fn damage_in_the_middle_reads_as_it_does_on_one_thread() {
    let data = mixed(6 * crate::pipeline::compress::BLOCK_SIZE, 300_000);
    for algorithm in Algorithm::ALL {
        let stream = compressed(algorithm, &data);
        let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
        // A flipped byte in the middle of the stream, and a few bytes after a part's header.
        for at in [stream.len() / 2, stream.len() / 3 + 7] {
            let mut bad = stream.clone();
            bad[at] ^= 0x55;
            cases.push((format!("flipped at {at}"), bad));
        }
        // Cut in the middle of a part, and right after one.
        cases.push(("cut".into(), stream[..stream.len() * 2 / 3].to_vec()));
        if algorithm == Algorithm::Gzip {
            let starts = member_starts(&stream);
            cases.push(("cut between".into(), stream[..starts[3]].to_vec()));
            // A trailer's CRC-32 changed: the member inflates, and is refused.
            let mut bad = stream.clone();
            bad[starts[2] - 6] ^= 1;
            cases.push(("crc".into(), bad));
        }
        for (what, bad) in cases {
            let (one, one_error) = decompressed(algorithm, &bad, 1);
            let (many, many_error) = decompressed(algorithm, &bad, 3);
            assert_eq!(many_error, one_error, "{algorithm} {what}");
            if algorithm == Algorithm::Gzip {
                assert_eq!(
                    many.len(),
                    one.len(),
                    "{algorithm} {what}: bytes before the error"
                );
                assert!(many == one, "{algorithm} {what}");
            } else {
                // How much of a damaged frame zstd hands out before its error depends on
                // the sizes of the reads that asked for it: the same bytes, cut elsewhere.
                let common = many.len().min(one.len());
                assert!(many[..common] == one[..common], "{algorithm} {what}");
                assert!(
                    many.len().abs_diff(one.len()) < 256 * 1024,
                    "{algorithm} {what}"
                );
            }
        }
    }
}

#[test]
fn a_length_field_that_lies_is_refused() {
    let data = mixed(3 * crate::pipeline::compress::BLOCK_SIZE, 200_000);
    let stream = compressed(Algorithm::Gzip, &data);
    let starts = member_starts(&stream);
    let field = |s: &mut Vec<u8>, member: usize, len: usize| {
        let at = starts[member] + crate::pipeline::compress::MEMBER_LENGTH_AT;
        s[at..at + 4].copy_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
    };
    // The first member's field covers the second too: its trailer is the second's.
    let mut bad = stream.clone();
    field(&mut bad, 0, starts[2]);
    let (_, error) = decompressed(Algorithm::Gzip, &bad, 2);
    let error = error.expect("a field covering two members was believed");
    assert!(error.contains("recorded length does not match"), "{error}");
    // A field a byte short or long: refused, or (when what stands at its end cannot be a
    // trailer) the stream is read in sequence, which ignores the field. Never other bytes.
    for len in [starts[1] - 1, starts[1] + 1, starts[1] + 8] {
        let mut bad = stream.clone();
        field(&mut bad, 0, len);
        match decompressed(Algorithm::Gzip, &bad, 2) {
            (_, Some(_)) => {}
            (out, None) => assert!(out == data, "a field of {len} gave other bytes"),
        }
    }
}

/// Blocks of plain bytes, `count` of them of `size` bytes each, counting those it made.
struct Counting {
    count: usize,
    size: usize,
    made: Arc<AtomicUsize>,
}

impl BlockSource for Counting {
    fn next_job(&mut self, job: &mut Job) -> io::Result<bool> {
        let n = self.made.load(Ordering::SeqCst);
        if n == self.count {
            return Ok(false);
        }
        self.made.fetch_add(1, Ordering::SeqCst);
        // A "gzip" job, so that it goes through a worker; its bytes say its number.
        job.codec = Codec::Gzip;
        job.data.resize(self.size, u8::try_from(n % 251).unwrap());
        job.parts.push(Part {
            len: self.size,
            plain: self.size,
        });
        Ok(true)
    }
}

/// Copies each block, slowly for some, panicking or failing at the block named.
struct Copier {
    panic_at: Option<u8>,
    fail_at: Option<u8>,
}

impl Inflate for Copier {
    fn inflate(&mut self, job: &Job, out: &mut Vec<u8>) -> io::Result<()> {
        let n = job.data[0];
        // Even blocks take longer: the odd ones after them finish first.
        if n.is_multiple_of(2) {
            std::thread::sleep(Duration::from_millis(15));
        }
        assert_ne!(Some(n), self.panic_at, "a worker panics at block {n}");
        out.extend_from_slice(&job.data[..job.data.len() / 2]);
        if Some(n) == self.fail_at {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("block {n} is bad"),
            ));
        }
        out.extend_from_slice(&job.data[job.data.len() / 2..]);
        Ok(())
    }
}

fn copiers(n: usize, panic_at: Option<u8>, fail_at: Option<u8>) -> Vec<Copier> {
    (0..n).map(|_| Copier { panic_at, fail_at }).collect()
}

#[test]
fn blocks_come_out_in_order_when_workers_finish_out_of_order() {
    let made = Arc::new(AtomicUsize::new(0));
    let source = Counting {
        count: 40,
        size: 1000,
        made: Arc::clone(&made),
    };
    let out = std::thread::scope(|scope| {
        let mut reader = pool::start(scope, source, copiers(3, None, None)).unwrap();
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        out
    });
    let want: Vec<u8> = (0..40u8).flat_map(|n| [n; 1000]).collect();
    assert!(out == want, "blocks out of order");
}

#[test]
fn at_most_twice_as_many_blocks_as_workers_are_in_flight() {
    let made = Arc::new(AtomicUsize::new(0));
    let source = Counting {
        count: 200,
        size: 4096,
        made: Arc::clone(&made),
    };
    std::thread::scope(|scope| {
        let workers = 3;
        let mut reader = pool::start(scope, source, copiers(workers, None, None)).unwrap();
        let mut block = vec![0; 4096];
        for read in 1..=20 {
            reader.read_exact(&mut block).unwrap();
            // Give the threads time to run ahead as far as they may.
            std::thread::sleep(Duration::from_millis(40));
            let ahead = made.load(Ordering::SeqCst) - read;
            // The block being read has given its token back only at the next read.
            assert!(
                ahead <= 2 * workers,
                "{ahead} blocks made past the {read} read"
            );
            assert!(
                ahead >= workers,
                "only {ahead} blocks ahead: the pool idles"
            );
        }
    });
}

#[test]
fn a_worker_error_ends_the_stream_after_the_blocks_before_it() {
    let made = Arc::new(AtomicUsize::new(0));
    let source = Counting {
        count: 50,
        size: 100,
        made,
    };
    std::thread::scope(|scope| {
        let mut reader = pool::start(scope, source, copiers(2, None, Some(7))).unwrap();
        let mut out = Vec::new();
        let err = reader.read_to_end(&mut out).unwrap_err();
        assert_eq!(err.to_string(), "block 7 is bad");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // Blocks 0 to 6, and the half of block 7 before its error.
        assert_eq!(out.len(), 7 * 100 + 50);
        assert_eq!(
            reader.read(&mut [0; 10]).unwrap(),
            0,
            "nothing after the error"
        );
    });
}

#[test]
fn a_worker_panic_stops_the_stream_without_hanging_or_panicking_the_restore() {
    let made = Arc::new(AtomicUsize::new(0));
    let source = Counting {
        count: 1000,
        size: 100,
        made: Arc::clone(&made),
    };
    std::thread::scope(|scope| {
        let mut reader = pool::start(scope, source, copiers(2, Some(5), None)).unwrap();
        let mut out = Vec::new();
        let err = reader.read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        assert!(
            out.len() <= 5 * 100,
            "bytes of the panicked block or after it came out"
        );
        drop(reader);
    });
    // The scope ended (the panicked thread was joined), and the source stopped early.
    assert!(made.load(Ordering::SeqCst) < 1000);
}

#[test]
fn a_reader_dropped_half_way_stops_every_thread() {
    let made = Arc::new(AtomicUsize::new(0));
    let source = Counting {
        count: 100_000,
        size: 100,
        made: Arc::clone(&made),
    };
    std::thread::scope(|scope| {
        let mut reader = pool::start(scope, source, copiers(2, None, None)).unwrap();
        reader.read_exact(&mut [0; 250]).unwrap();
    });
    assert!(made.load(Ordering::SeqCst) < 100);
}

#[test]
fn the_inflater_refuses_a_member_whose_deflate_data_ends_early() {
    // A member whose field and trailer are right, with a deflate stream that ends two
    // bytes before its trailer: the two bytes between are refused, not skipped (gzip -d
    // takes them for the start of the trailer).
    let data = mixed(100_000, 100_000);
    let stream = compressed(Algorithm::Gzip, &data);
    let member = &stream[..member_starts(&stream)
        .get(1)
        .copied()
        .unwrap_or(stream.len())];
    let (head, rest) = member.split_at(20);
    let (body, trailer) = rest.split_at(rest.len() - 8);
    let mut padded = [head, body, &[0, 0], trailer].concat();
    let len = u32::try_from(padded.len()).unwrap();
    padded[16..20].copy_from_slice(&len.to_le_bytes());
    let plain = u32::from_le_bytes(trailer[4..].try_into().unwrap()) as usize;
    let job = Job {
        codec: Codec::Gzip,
        parts: vec![Part {
            len: padded.len(),
            plain,
        }],
        data: padded,
    };
    let mut out = Vec::new();
    assert!(Inflater::new().inflate(&job, &mut out).is_err());
}

/// Yields `data`, then fails as a chunk that does not authenticate would.
struct FailsAfter<'a>(&'a [u8]);

impl Read for FailsAfter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunk 9 is forged",
            ));
        }
        let n = buf.len().min(self.0.len()).min(70_000);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn an_input_error_comes_after_the_blocks_before_it() {
    let data = mixed(5 * crate::pipeline::compress::BLOCK_SIZE, 100_000);
    for algorithm in Algorithm::ALL {
        let stream = compressed(algorithm, &data);
        let cut = &stream[..stream.len() * 3 / 5];
        let read = |threads| {
            std::thread::scope(|scope| {
                let first = cut[..FIRST_LEN].to_vec();
                let input = FailsAfter(&cut[FIRST_LEN..]);
                let mut reader = decompress(scope, algorithm, first, input, threads).unwrap();
                let mut out = Vec::new();
                let err = reader.read_to_end(&mut out).unwrap_err();
                (out, err.to_string())
            })
        };
        let (one, one_error) = read(1);
        let (many, many_error) = read(2);
        assert_eq!(many_error, "chunk 9 is forged", "{algorithm}");
        assert_eq!(one_error, many_error, "{algorithm}");
        // Whole blocks before it: the single decoder also hands out part of the next one.
        assert!(
            many.len() > 2 * crate::pipeline::compress::BLOCK_SIZE,
            "{algorithm}"
        );
        assert!(one.starts_with(&many), "{algorithm}");
    }
}
