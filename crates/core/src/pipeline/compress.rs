//! gzip or zstd on several threads: the input is cut into blocks, each compressed on a small
//! pool of threads into gzip members or a zstd frame of its own, and these are written in
//! order by one more thread.
//!
//! A gzip file may hold several members one after the other (RFC 1952, section 2.2), and
//! every gzip reader (`gzip -d`, `tar xz`, flate2's `MultiGzDecoder`) reads them as one
//! stream. Each member carries its own CRC-32 and length, so the threads need nothing from
//! each other: a block is compressed with libdeflate, a whole buffer at a time, without the
//! previous block as a dictionary. That costs a little ratio at the start of each block
//! (see [`BLOCK_SIZE`]) and buys libdeflate, a third faster than zlib at the same level and
//! a few percent smaller.
//!
//! Data that does not compress (media, archives, encrypted files) is written as stored
//! deflate blocks instead of being run through the compressor for nothing: each 4 KiB
//! piece is judged by the entropy of its bytes, and a run of at least 8 KiB of pieces at
//! or above [`STORED_ENTROPY_BITS`] bits per byte is stored (deflate's Huffman coding could
//! win at most a percent or so there). Each run of a block, stored or compressed, is one
//! member. That is what `gzip -6` ends up writing for such data too, at a fraction of the
//! CPU.
//!
//! zstd works the same way: a zstd stream may hold several frames one after the other, and
//! each block is one frame with its own XXH64 checksum, compressed by a context of its
//! thread that is reused from block to block. zstd tells incompressible data on its own, so
//! no piece is judged there.
//!
//! Memory is bounded: at most `2 × threads + 2` blocks are between the writer and the
//! output (being filled, queued, compressed or waiting for their turn), each at most
//! [`BLOCK_SIZE`] in and a little more out, and their buffers are reused from block to
//! block rather than allocated anew.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{Scope, ScopedJoinHandle};

use libdeflater::{CompressionLvl, Compressor};

use crate::compression::{Algorithm, ZSTD_MAGIC};

/// Bytes of input compressed as one block by one thread.
///
/// Each block starts without a dictionary, which costs ratio: on the benchmark's dump-like
/// text, blocks of 256 KiB come out 1 % larger than one stream, of 1 MiB 0.25 %, of 2 MiB
/// 0.12 %, of 4 MiB 0.06 %; with up to `2 × threads + 2` blocks in flight, each MiB more per
/// block costs several MiB of memory, so 1 MiB it is.
pub const BLOCK_SIZE: usize = 1024 * 1024;

/// Bytes of a block judged compressible or not as one piece.
const PIECE_SIZE: usize = 4 * 1024;

/// The shortest run of incompressible pieces that is stored rather than compressed. A
/// member boundary costs about what compressing 4 KiB of noise does, so 8 KiB is where
/// storing starts to pay.
const MIN_STORED_PIECES: usize = 2;

/// A piece whose bytes carry at least this many bits of entropy each is incompressible.
pub const STORED_ENTROPY_BITS: f64 = 7.9;

/// Bytes at the start of a piece looked at first: below [`PROBE_ENTROPY_BITS`] there, the
/// piece is compressed without counting the rest.
const PROBE_SIZE: usize = 1024;

/// Entropy of a probe below which its piece is plainly compressible. Noise measures about
/// 7.8 bits per byte over 1 KiB (the estimate runs low on few bytes) and text 4 to 6, so
/// the probe settles text and leaves noise, and anything in between, to the whole piece.
/// A piece misjudged this way is only compressed for nothing; the output is the same
/// valid gzip either way.
const PROBE_ENTROPY_BITS: f64 = 7.0;

/// The most bytes one stored deflate block holds.
const MAX_STORED_BLOCK: usize = 65_535;

/// Most compression threads used, whatever the machine offers.
const MAX_THREADS: usize = 4;

/// The header of every member: deflate, no flags, no mtime, no extra flags, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// The member of an empty stream: its header, a final empty deflate block (fixed Huffman
/// codes, end of block), and a CRC-32 and length of zero.
const EMPTY_MEMBER: [u8; 20] = [
    0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// How many threads to compress on: the available cores, at least one, at most a few.
pub fn compression_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, MAX_THREADS)
}

/// A block of input to compress.
struct Job {
    seq: u64,
    data: Vec<u8>,
}

/// A compressed block: one or more whole gzip members, or one zstd frame.
struct Deflated {
    seq: u64,
    bytes: Vec<u8>,
}

/// Buffers handed back once used, so that blocks reuse a few allocations instead of
/// allocating (and fragmenting the heap with) a new megabyte each.
#[derive(Clone, Default)]
struct Pool(Arc<Mutex<Vec<Vec<u8>>>>);

impl Pool {
    /// A buffer from the pool, or a new one of `capacity`.
    fn take(&self, capacity: usize) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    /// Gives `buffer` back, emptied.
    fn give(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buffer);
    }
}

/// A gzip or zstd writer that compresses on `threads` threads of a scope, plus one thread
/// that writes the compressed blocks, in order, to the inner writer.
///
/// `flush` does nothing (a flush would cut a short block and cost ratio); call
/// [`ParallelCompressor::finish`] to end the stream and get the inner writer back. After
/// an error every later write fails, and `finish` reports the error of the inner writer. A
/// stream dropped without `finish` ends with the header of a member (or frame) that never
/// comes, so that no reader takes what was written for a complete stream.
pub struct ParallelCompressor<'scope, W: Write + Send + 'scope> {
    block: Vec<u8>,
    next_seq: u64,
    jobs: Option<SyncSender<Job>>,
    /// One token per block allowed between this writer and the output.
    tokens: Receiver<()>,
    /// Input buffers the threads are done with.
    inputs: Pool,
    workers: Vec<ScopedJoinHandle<'scope, ()>>,
    output: Option<ScopedJoinHandle<'scope, io::Result<W>>>,
    /// How many blocks the stream has, once `finish` knows; until then [`UNFINISHED`].
    block_count: Arc<AtomicU64>,
    failed: bool,
}

/// The block count of a stream that has not been finished (and must not look complete).
const UNFINISHED: u64 = u64::MAX;

impl<'scope, W: Write + Send + 'scope> ParallelCompressor<'scope, W> {
    /// Starts the threads in `scope`; `level` is clamped to the levels of `algorithm`.
    pub fn new<'env>(
        out: W,
        algorithm: Algorithm,
        level: u32,
        threads: usize,
        scope: &'scope Scope<'scope, 'env>,
    ) -> io::Result<Self> {
        let threads = threads.max(1);
        let levels = algorithm.levels();
        let level = level.clamp(*levels.start(), *levels.end());
        let level = i32::try_from(level).expect("a small level");
        let ends = Ends::of(algorithm, level)?;
        let in_flight = 2 * threads + 1;
        let (jobs_tx, jobs_rx) = sync_channel::<Job>(threads);
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let (done_tx, done_rx) = channel::<io::Result<Deflated>>();
        let (tokens_tx, tokens) = sync_channel::<()>(in_flight);
        for _ in 0..in_flight {
            tokens_tx.send(()).expect("the receiver is here");
        }
        let inputs = Pool::default();
        let outputs = Pool::default();
        let workers = (0..threads)
            .map(|i| {
                let jobs = Arc::clone(&jobs_rx);
                let done = done_tx.clone();
                let (inputs, outputs) = (inputs.clone(), outputs.clone());
                let codec = Codec::new(algorithm, level)?;
                std::thread::Builder::new()
                    .name(format!("compress-{i}"))
                    .spawn_scoped(scope, move || {
                        compress_jobs(&jobs, &done, codec, &inputs, &outputs);
                    })
            })
            .collect::<io::Result<Vec<_>>>()?;
        drop(done_tx);
        let block_count = Arc::new(AtomicU64::new(UNFINISHED));
        let count = Arc::clone(&block_count);
        let output = std::thread::Builder::new()
            .name("compress-out".into())
            .spawn_scoped(scope, move || {
                write_in_order(out, &done_rx, &tokens_tx, &count, &outputs, &ends)
            })?;
        Ok(Self {
            block: inputs.take(BLOCK_SIZE),
            next_seq: 0,
            jobs: Some(jobs_tx),
            tokens,
            inputs,
            workers,
            output: Some(output),
            block_count,
            failed: false,
        })
    }

    /// Compresses what is buffered, waits for the threads and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.failed {
            return Err(io::Error::other("the compressed stream failed earlier"));
        }
        if !self.block.is_empty() {
            self.send_block()?;
        }
        self.block_count.store(self.next_seq, Ordering::SeqCst);
        self.jobs = None;
        let mut panicked = false;
        for worker in std::mem::take(&mut self.workers) {
            panicked |= worker.join().is_err();
        }
        let output = self
            .output
            .take()
            .expect("the output thread runs until finish");
        let out = join(output)?;
        if panicked {
            return Err(io::Error::other("a compression thread panicked"));
        }
        Ok(out)
    }

    /// Hands the full (or last) block to the threads, waiting for room if they are behind.
    fn send_block(&mut self) -> io::Result<()> {
        let sent = self.tokens.recv().is_ok() && {
            let data = std::mem::replace(&mut self.block, self.inputs.take(BLOCK_SIZE));
            let job = Job {
                seq: self.next_seq,
                data,
            };
            self.next_seq += 1;
            self.jobs
                .as_ref()
                .is_some_and(|jobs| jobs.send(job).is_ok())
        };
        if sent {
            Ok(())
        } else {
            self.failed = true;
            Err(self.stopped_error())
        }
    }

    /// The error that stopped the threads: the output's, when it ended early.
    fn stopped_error(&mut self) -> io::Error {
        self.jobs = None;
        if let Some(output) = self.output.take()
            && let Err(e) = join(output)
        {
            return e;
        }
        io::Error::other("the compression threads stopped")
    }
}

impl<'scope, W: Write + Send + 'scope> Write for ParallelCompressor<'scope, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("the compressed stream failed earlier"));
        }
        let n = data.len().min(BLOCK_SIZE - self.block.len());
        self.block.extend_from_slice(&data[..n]);
        if self.block.len() == BLOCK_SIZE {
            self.send_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'scope, W: Write + Send + 'scope> Drop for ParallelCompressor<'scope, W> {
    fn drop(&mut self) {
        // Dropped without `finish` (an error elsewhere ended the archive early): closing
        // the job queue lets the threads end, the output with an unfinished member; the
        // scope waits for them.
        self.jobs = None;
    }
}

/// Waits for a thread and passes on its result, or its panic as an error.
fn join<T>(handle: ScopedJoinHandle<'_, io::Result<T>>) -> io::Result<T> {
    handle
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("a compression thread panicked")))
}

/// Tells the output thread when a compression thread dies by a panic, so that it stops
/// instead of waiting for a block that never comes.
struct PanicAlarm<'a>(&'a Sender<io::Result<Deflated>>);

impl Drop for PanicAlarm<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self
                .0
                .send(Err(io::Error::other("a compression thread panicked")));
        }
    }
}

/// What a compression thread compresses with.
enum Codec {
    /// libdeflate at a gzip level.
    Gzip(Box<Compressor>),
    /// A zstd context, writing checksummed frames.
    Zstd(zstd::bulk::Compressor<'static>),
}

impl Codec {
    /// A compressor for `algorithm` at `level`, which is within its levels.
    fn new(algorithm: Algorithm, level: i32) -> io::Result<Self> {
        match algorithm {
            Algorithm::Gzip => {
                let level = CompressionLvl::new(level)
                    .map_err(|e| io::Error::other(format!("gzip level {level}: {e:?}")))?;
                Ok(Self::Gzip(Box::new(Compressor::new(level))))
            }
            Algorithm::Zstd => {
                let mut compressor = zstd::bulk::Compressor::new(level)?;
                compressor.include_checksum(true)?;
                Ok(Self::Zstd(compressor))
            }
        }
    }

    /// Writes the compression of one block of `data` into `out`, which is empty.
    fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Self::Gzip(compressor) => compress_block(data, compressor, out),
            Self::Zstd(compressor) => {
                // The frame is written from the start of `out`, within its capacity.
                out.clear();
                out.reserve(zstd::zstd_safe::compress_bound(data.len()));
                compressor.compress_to_buffer(data, out).map(drop)
            }
        }
    }
}

/// What the output thread writes at the ends of a stream: the whole of an empty one, and
/// what stands after an abandoned one.
struct Ends {
    /// A complete stream of no bytes.
    empty: Vec<u8>,
    /// The start of a member or frame that never comes, which every reader reports as a
    /// truncated stream.
    unfinished: &'static [u8],
}

impl Ends {
    /// The ends of a stream of `algorithm` at `level`.
    fn of(algorithm: Algorithm, level: i32) -> io::Result<Self> {
        Ok(match algorithm {
            Algorithm::Gzip => Self {
                empty: EMPTY_MEMBER.to_vec(),
                unfinished: &GZIP_HEADER,
            },
            Algorithm::Zstd => Self {
                empty: zstd::bulk::compress(&[], level)?,
                unfinished: &ZSTD_MAGIC,
            },
        })
    }
}

/// A compression thread: compresses jobs until the queue closes or the output is gone.
fn compress_jobs(
    jobs: &Mutex<Receiver<Job>>,
    done: &Sender<io::Result<Deflated>>,
    mut codec: Codec,
    inputs: &Pool,
    outputs: &Pool,
) {
    let _alarm = PanicAlarm(done);
    loop {
        let job = match jobs.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let mut bytes = outputs.take(BLOCK_SIZE + BLOCK_SIZE / 64);
        let compressed = codec.compress(&job.data, &mut bytes);
        inputs.give(job.data);
        let failed = compressed.is_err();
        let deflated = compressed.map(|()| Deflated {
            seq: job.seq,
            bytes,
        });
        if done.send(deflated).is_err() || failed {
            return;
        }
    }
}

/// Writes `data` to `out` as gzip members, one per run: runs of compressible pieces
/// compressed by `compressor`, runs of incompressible ones as stored deflate blocks.
fn compress_block(data: &[u8], compressor: &mut Compressor, out: &mut Vec<u8>) -> io::Result<()> {
    for (start, end, stored) in runs(data) {
        let run = &data[start..end];
        out.extend_from_slice(&GZIP_HEADER);
        if stored {
            write_stored(run, out);
        } else {
            let at = out.len();
            out.resize(at + compressor.deflate_compress_bound(run.len()), 0);
            let n = compressor
                .deflate_compress(run, &mut out[at..])
                .map_err(io::Error::other)?;
            out.truncate(at + n);
        }
        out.extend_from_slice(&crc32fast::hash(run).to_le_bytes());
        // ISIZE is the length modulo 2^32, as gzip defines it; a run is at most a block.
        out.extend_from_slice(
            &u32::try_from(run.len())
                .expect("a block fits")
                .to_le_bytes(),
        );
    }
    Ok(())
}

/// Cuts `data` into runs `(start, end, stored)`: stored runs are at least
/// [`MIN_STORED_PIECES`] incompressible pieces long; everything else is compressed.
fn runs(data: &[u8]) -> Vec<(usize, usize, bool)> {
    let incompressible: Vec<bool> = data.chunks(PIECE_SIZE).map(incompressible).collect();
    let mut runs: Vec<(usize, usize, bool)> = Vec::new();
    let mut i = 0;
    while i < incompressible.len() {
        let mut j = i;
        while j < incompressible.len() && incompressible[j] == incompressible[i] {
            j += 1;
        }
        let stored = incompressible[i] && j - i >= MIN_STORED_PIECES;
        let (start, end) = (i * PIECE_SIZE, (j * PIECE_SIZE).min(data.len()));
        match runs.last_mut() {
            Some(last) if last.2 == stored => last.1 = end,
            _ => runs.push((start, end, stored)),
        }
        i = j;
    }
    runs
}

/// Whether `piece` is judged incompressible: its entropy is at least
/// [`STORED_ENTROPY_BITS`], unless its first [`PROBE_SIZE`] bytes already show it is not.
fn incompressible(piece: &[u8]) -> bool {
    let mut counts = [[0u32; 256]; 4];
    if piece.len() > 2 * PROBE_SIZE {
        let (probe, rest) = piece.split_at(PROBE_SIZE);
        count(probe, &mut counts);
        if entropy_of(&counts, probe.len()) < PROBE_ENTROPY_BITS {
            return false;
        }
        count(rest, &mut counts);
    } else {
        count(piece, &mut counts);
    }
    entropy_of(&counts, piece.len()) >= STORED_ENTROPY_BITS
}

/// The order-0 entropy of `piece`, in bits per byte.
#[cfg(test)]
fn entropy_bits(piece: &[u8]) -> f64 {
    let mut counts = [[0u32; 256]; 4];
    count(piece, &mut counts);
    entropy_of(&counts, piece.len())
}

/// Adds the byte values of `bytes` to `counts`: four tables, so that runs of one byte
/// value do not wait on one counter.
fn count(bytes: &[u8], counts: &mut [[u32; 256]; 4]) {
    let mut quads = bytes.chunks_exact(4);
    for q in &mut quads {
        counts[0][usize::from(q[0])] += 1;
        counts[1][usize::from(q[1])] += 1;
        counts[2][usize::from(q[2])] += 1;
        counts[3][usize::from(q[3])] += 1;
    }
    for &b in quads.remainder() {
        counts[0][usize::from(b)] += 1;
    }
}

/// The order-0 entropy, in bits per byte, of the `n` bytes counted in `counts`.
fn entropy_of(counts: &[[u32; 256]; 4], n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    // -Σ p·log2 p with p = c/n is log2 n - (Σ c·log2 c) / n; c·log2 c comes from a table
    // for the counts of a whole piece, and is computed for the rare larger ones.
    let table = c_log2_c();
    let sum: f64 = (0..256)
        .map(|v| counts[0][v] + counts[1][v] + counts[2][v] + counts[3][v])
        .map(|c| {
            table.get(c as usize).copied().unwrap_or_else(|| {
                let c = f64::from(c);
                c * c.log2()
            })
        })
        .sum();
    let n = n as f64;
    (n.log2() - sum / n).max(0.0)
}

/// `c · log2 c` for every count a piece can hold (0 for 0).
fn c_log2_c() -> &'static [f64; PIECE_SIZE + 1] {
    static TABLE: std::sync::OnceLock<Box<[f64; PIECE_SIZE + 1]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = Box::new([0.0; PIECE_SIZE + 1]);
        for (c, slot) in table.iter_mut().enumerate().skip(1) {
            let c = c as f64;
            *slot = c * c.log2();
        }
        table
    })
}

/// Writes non-empty `data` as a whole deflate stream of stored (uncompressed) blocks, the
/// last one final.
fn write_stored(data: &[u8], out: &mut Vec<u8>) {
    let count = data.len().div_ceil(MAX_STORED_BLOCK);
    for (i, chunk) in data.chunks(MAX_STORED_BLOCK).enumerate() {
        let len = u16::try_from(chunk.len()).expect("a stored block holds at most 65535 bytes");
        // BFINAL (set on the last block), BTYPE = 00 (stored), padded to the byte; then LEN
        // and its complement.
        out.push(u8::from(i + 1 == count));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
}

/// The output thread: writes the members or frame of each block in order, then, for an
/// empty stream, an empty one; or, if the stream was abandoned, the header of a member or
/// frame that never comes.
fn write_in_order<W: Write>(
    mut out: W,
    done: &Receiver<io::Result<Deflated>>,
    tokens: &SyncSender<()>,
    block_count: &AtomicU64,
    outputs: &Pool,
    ends: &Ends,
) -> io::Result<W> {
    let mut waiting = BTreeMap::new();
    let mut next = 0u64;
    for block in done {
        let block = match block {
            Ok(block) => block,
            Err(e) => return Err(unfinished(&mut out, ends, e)),
        };
        waiting.insert(block.seq, block);
        while let Some(block) = waiting.remove(&next) {
            out.write_all(&block.bytes)?;
            outputs.give(block.bytes);
            next += 1;
            // The writer may already be gone (it failed or finished): nothing to release.
            let _ = tokens.send(());
        }
    }
    // Every sender is gone: either `finish` said how many blocks there are, or the
    // stream was abandoned and must not look complete.
    if block_count.load(Ordering::SeqCst) != next || !waiting.is_empty() {
        let e = io::Error::other("the compressed stream ended early");
        return Err(unfinished(&mut out, ends, e));
    }
    if next == 0 {
        out.write_all(&ends.empty)?;
    }
    Ok(out)
}

/// Ends an abandoned stream with a member or frame header and nothing after it, which every
/// reader reports as a truncated stream; returns `error`.
fn unfinished<W: Write>(out: &mut W, ends: &Ends, error: io::Error) -> io::Error {
    // Best effort: when the writer itself failed there is nothing more to save.
    let _ = out.write_all(ends.unfinished);
    error
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::process::{Command, Stdio};

    use super::*;

    fn compress(data: &[u8], level: u32, threads: usize) -> Vec<u8> {
        compress_with(Algorithm::Gzip, data, level, threads)
    }

    fn compress_with(algorithm: Algorithm, data: &[u8], level: u32, threads: usize) -> Vec<u8> {
        std::thread::scope(|scope| {
            let mut gz =
                ParallelCompressor::new(Vec::new(), algorithm, level, threads, scope).unwrap();
            // Odd-sized writes, as tar makes them.
            for piece in data.chunks(10_007) {
                gz.write_all(piece).unwrap();
            }
            gz.finish().unwrap()
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

    /// How many gzip members `gz` holds, each read and checked on its own.
    fn members(mut gz: &[u8]) -> usize {
        let mut count = 0;
        while !gz.is_empty() {
            let mut member = flate2::bufread::GzDecoder::new(gz);
            io::copy(&mut member, &mut io::sink()).unwrap();
            gz = member.into_inner();
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
            let mut stream =
                ParallelCompressor::new(Shared(&out), algorithm, level, 2, scope).unwrap();
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
        zstd::stream::read::Decoder::new(z)?.read_to_end(&mut out)?;
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
            let len = zstd::zstd_safe::find_frame_compressed_size(rest).unwrap();
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
}
