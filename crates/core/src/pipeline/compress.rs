//! gzip on several threads: one standard gzip member whose deflate stream is cut into
//! blocks, each deflated on a small pool of threads and written in order by one more.
//!
//! Each block is deflated on its own, primed with the last 32 KiB of the block before it
//! as a preset dictionary (so the ratio is that of one stream, as pigz does), and ended by a
//! sync flush, so the blocks simply follow each other in one deflate stream; the CRC-32 and
//! length of the whole input are combined into the one trailer. Any gzip reader
//! (`gzip -d`, `tar xz`, a single-member decoder) reads the result.
//!
//! Data that does not compress (media, archives, encrypted files) is written as stored
//! deflate blocks instead of being run through the compressor for nothing: each 4 KiB
//! piece is judged by the entropy of its bytes, and a run of at least 8 KiB of pieces at
//! or above [`STORED_ENTROPY_BITS`] bits per byte is stored (deflate's Huffman coding could
//! win at most a percent or so there). That is what `gzip -6` ends up writing for such data
//! too, at a fraction of the CPU.
//!
//! Memory is bounded: at most `2 × threads + 2` blocks are between the writer and the
//! output (being filled, queued, deflated or waiting for their turn), each at most
//! [`BLOCK_SIZE`] in and a little more out.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

use crc32fast::Hasher as Crc;
use flate2::{Compress, Compression, FlushCompress};

/// Bytes of input deflated as one block by one thread.
pub const BLOCK_SIZE: usize = 1024 * 1024;

/// Bytes of a block judged compressible or not as one piece.
const PIECE_SIZE: usize = 4 * 1024;

/// The shortest run of incompressible pieces that is stored rather than deflated. Ending
/// and restarting the compressor costs about what deflating 4 KiB of noise does, so 8 KiB
/// is where storing starts to pay.
const MIN_STORED_PIECES: usize = 2;

/// A piece whose bytes carry at least this many bits of entropy each is incompressible.
pub const STORED_ENTROPY_BITS: f64 = 7.9;

/// The most bytes one stored deflate block holds.
const MAX_STORED_BLOCK: usize = 65_535;

/// The deflate window: the dictionary carried from one block to the next.
const WINDOW: usize = 32 * 1024;

/// Most compression threads used, whatever the machine offers.
const MAX_THREADS: usize = 4;

/// The gzip header: deflate, no flags, no mtime, no extra flags, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A final, empty deflate block (fixed Huffman codes, end of block): ends the stream.
const FINAL_EMPTY_BLOCK: [u8; 2] = [0x03, 0x00];

/// How many threads to compress on: the available cores, at least one, at most a few.
pub fn compression_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, MAX_THREADS)
}

/// A block of input to deflate.
struct Job {
    seq: u64,
    data: Vec<u8>,
    /// The last bytes of the input before this block (empty for the first).
    dictionary: Vec<u8>,
}

/// A deflated block.
struct Deflated {
    seq: u64,
    bytes: Vec<u8>,
    crc: Crc,
    len: u64,
}

/// A gzip writer that deflates on `threads` threads of a scope, plus one thread that writes
/// the deflated blocks, in order, to the inner writer.
///
/// `flush` does nothing (a flush would cut a short block and cost ratio); call
/// [`ParallelGzip::finish`] to end the stream and get the inner writer back. After an
/// error every later write fails, and `finish` reports the error of the inner writer.
pub struct ParallelGzip<'scope, W: Write + Send + 'scope> {
    block: Vec<u8>,
    dictionary: Vec<u8>,
    next_seq: u64,
    jobs: Option<SyncSender<Job>>,
    /// One token per block allowed between this writer and the output.
    tokens: Receiver<()>,
    workers: Vec<ScopedJoinHandle<'scope, ()>>,
    output: Option<ScopedJoinHandle<'scope, io::Result<W>>>,
    /// How many blocks the stream has, once `finish` knows; until then [`UNFINISHED`].
    block_count: Arc<AtomicU64>,
    failed: bool,
}

/// The block count of a stream that has not been finished (and must get no trailer).
const UNFINISHED: u64 = u64::MAX;

impl<'scope, W: Write + Send + 'scope> ParallelGzip<'scope, W> {
    /// Starts the threads in `scope`; `level` is the gzip level, clamped to 1..=9.
    pub fn new<'env>(
        out: W,
        level: u32,
        threads: usize,
        scope: &'scope Scope<'scope, 'env>,
    ) -> io::Result<Self> {
        let threads = threads.max(1);
        let level = Compression::new(level.clamp(1, 9));
        let in_flight = 2 * threads + 1;
        let (jobs_tx, jobs_rx) = sync_channel::<Job>(threads);
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let (done_tx, done_rx) = channel::<io::Result<Deflated>>();
        let (tokens_tx, tokens) = sync_channel::<()>(in_flight);
        for _ in 0..in_flight {
            tokens_tx.send(()).expect("the receiver is here");
        }
        let workers = (0..threads)
            .map(|i| {
                let jobs = Arc::clone(&jobs_rx);
                let done = done_tx.clone();
                std::thread::Builder::new()
                    .name(format!("gzip-{i}"))
                    .spawn_scoped(scope, move || deflate_jobs(&jobs, &done, level))
            })
            .collect::<io::Result<Vec<_>>>()?;
        drop(done_tx);
        let block_count = Arc::new(AtomicU64::new(UNFINISHED));
        let count = Arc::clone(&block_count);
        let output = std::thread::Builder::new()
            .name("gzip-out".into())
            .spawn_scoped(scope, move || {
                write_in_order(out, &done_rx, &tokens_tx, &count)
            })?;
        Ok(Self {
            block: Vec::with_capacity(BLOCK_SIZE),
            dictionary: Vec::new(),
            next_seq: 0,
            jobs: Some(jobs_tx),
            tokens,
            workers,
            output: Some(output),
            block_count,
            failed: false,
        })
    }

    /// Deflates what is buffered, writes the trailer, waits for the threads and returns
    /// the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.failed {
            return Err(io::Error::other("the gzip stream failed earlier"));
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
            return Err(io::Error::other("a gzip thread panicked"));
        }
        Ok(out)
    }

    /// Hands the full (or last) block to the threads, waiting for room if they are behind.
    fn send_block(&mut self) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_SIZE));
        let keep = data.len().min(WINDOW);
        let next_dictionary = data[data.len() - keep..].to_vec();
        let dictionary = std::mem::replace(&mut self.dictionary, next_dictionary);
        let job = Job {
            seq: self.next_seq,
            data,
            dictionary,
        };
        self.next_seq += 1;
        let sent = self.tokens.recv().is_ok()
            && self
                .jobs
                .as_ref()
                .is_some_and(|jobs| jobs.send(job).is_ok());
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
        io::Error::other("the gzip threads stopped")
    }
}

impl<'scope, W: Write + Send + 'scope> Write for ParallelGzip<'scope, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("the gzip stream failed earlier"));
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

impl<'scope, W: Write + Send + 'scope> Drop for ParallelGzip<'scope, W> {
    fn drop(&mut self) {
        // Dropped without `finish` (an error elsewhere ended the archive early): closing
        // the job queue lets the threads end without a trailer; the scope waits for them.
        self.jobs = None;
    }
}

/// Waits for a thread and passes on its result, or its panic as an error.
fn join<T>(handle: ScopedJoinHandle<'_, io::Result<T>>) -> io::Result<T> {
    handle
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("a gzip thread panicked")))
}

/// Tells the output thread when a compression thread dies by a panic, so that it stops
/// instead of waiting for a block that never comes.
struct PanicAlarm<'a>(&'a Sender<io::Result<Deflated>>);

impl Drop for PanicAlarm<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.send(Err(io::Error::other("a gzip thread panicked")));
        }
    }
}

/// A compression thread: deflates jobs until the queue closes or the output is gone.
fn deflate_jobs(
    jobs: &Mutex<Receiver<Job>>,
    done: &Sender<io::Result<Deflated>>,
    level: Compression,
) {
    let _alarm = PanicAlarm(done);
    let mut deflate = Compress::new(level, false);
    loop {
        let job = match jobs.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let deflated = deflate_block(&job, &mut deflate);
        let failed = deflated.is_err();
        if done.send(deflated).is_err() || failed {
            return;
        }
    }
}

/// Deflates one block, primed with its dictionary, ended by a sync flush.
///
/// Runs of compressible pieces go through `deflate`; runs of incompressible ones are
/// written as stored blocks after a sync flush, and the compressor is then restarted,
/// primed with the input just before the next compressible run.
fn deflate_block(job: &Job, deflate: &mut Compress) -> io::Result<Deflated> {
    let data = &job.data;
    let mut crc = Crc::new();
    crc.update(data);
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 1024);
    let mut primed = false;
    let mut pending = false;
    let (mut stored_from, mut stored_until) = (0, 0);
    for (start, end, stored) in runs(data) {
        if stored {
            if pending {
                deflate_into(deflate, &[], &mut out, FlushCompress::Sync)?;
                pending = false;
            }
            write_stored(&data[start..end], &mut out);
            (stored_from, stored_until) = (start, end);
            primed = false;
        } else {
            if !primed {
                deflate.reset();
                // After a stored run of a whole window or more, the window is noise that no
                // match would come from: not worth priming with.
                let after_noise = stored_until == start && start - stored_from >= WINDOW;
                let dictionary = if after_noise {
                    Vec::new()
                } else {
                    window_before(&job.dictionary, data, start)
                };
                if !dictionary.is_empty() {
                    deflate
                        .set_dictionary(&dictionary)
                        .map_err(io::Error::other)?;
                }
                primed = true;
            }
            deflate_into(deflate, &data[start..end], &mut out, FlushCompress::None)?;
            pending = true;
        }
    }
    if pending {
        deflate_into(deflate, &[], &mut out, FlushCompress::Sync)?;
    }
    Ok(Deflated {
        seq: job.seq,
        bytes: out,
        crc,
        len: data.len() as u64,
    })
}

/// Cuts `data` into runs `(start, end, stored)`: stored runs are at least
/// [`MIN_STORED_PIECES`] incompressible pieces long; everything else is deflated.
fn runs(data: &[u8]) -> Vec<(usize, usize, bool)> {
    let incompressible: Vec<bool> = data
        .chunks(PIECE_SIZE)
        .map(|piece| entropy_bits(piece) >= STORED_ENTROPY_BITS)
        .collect();
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

/// The order-0 entropy of `piece`, in bits per byte.
fn entropy_bits(piece: &[u8]) -> f64 {
    if piece.is_empty() {
        return 0.0;
    }
    // Four tables, so that runs of one byte value do not wait on one counter.
    let mut counts = [[0u32; 256]; 4];
    let mut quads = piece.chunks_exact(4);
    for q in &mut quads {
        counts[0][usize::from(q[0])] += 1;
        counts[1][usize::from(q[1])] += 1;
        counts[2][usize::from(q[2])] += 1;
        counts[3][usize::from(q[3])] += 1;
    }
    for &b in quads.remainder() {
        counts[0][usize::from(b)] += 1;
    }
    let total = piece.len() as f64;
    (0..256)
        .map(|v| counts[0][v] + counts[1][v] + counts[2][v] + counts[3][v])
        .filter(|&c| c > 0)
        .map(|c| {
            let p = f64::from(c) / total;
            -p * p.log2()
        })
        .sum()
}

/// Writes `data` as stored (uncompressed) deflate blocks, none of them final; the output
/// must be at a byte boundary, as it is after a sync flush.
fn write_stored(data: &[u8], out: &mut Vec<u8>) {
    for chunk in data.chunks(MAX_STORED_BLOCK) {
        let len = u16::try_from(chunk.len()).expect("a stored block holds at most 65535 bytes");
        // BFINAL = 0, BTYPE = 00 (stored), padded to the byte; then LEN and its complement.
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
}

/// The last [`WINDOW`] bytes of input before `offset` in `data`, reaching back into
/// `before` (the end of the previous block) when `offset` is near the start.
fn window_before(before: &[u8], data: &[u8], offset: usize) -> Vec<u8> {
    if offset >= WINDOW {
        return data[offset - WINDOW..offset].to_vec();
    }
    let from_before = (WINDOW - offset).min(before.len());
    let mut window = Vec::with_capacity(from_before + offset);
    window.extend_from_slice(&before[before.len() - from_before..]);
    window.extend_from_slice(&data[..offset]);
    window
}

/// Runs `deflate` over all of `input` and, for a flush, until it has written everything.
fn deflate_into(
    deflate: &mut Compress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    flush: FlushCompress,
) -> io::Result<()> {
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(64 * 1024);
        }
        let before = deflate.total_in();
        let status = deflate
            .compress_vec(input, out, flush)
            .map_err(io::Error::other)?;
        let used = usize::try_from(deflate.total_in() - before).expect("at most the input");
        input = &input[used..];
        let room_left = out.len() < out.capacity();
        let finished = match flush {
            FlushCompress::Finish => status == flate2::Status::StreamEnd,
            _ => room_left,
        };
        if input.is_empty() && finished {
            return Ok(());
        }
    }
}

/// The output thread: writes the header, the blocks in order, and the trailer.
fn write_in_order<W: Write>(
    mut out: W,
    done: &Receiver<io::Result<Deflated>>,
    tokens: &SyncSender<()>,
    block_count: &AtomicU64,
) -> io::Result<W> {
    out.write_all(&GZIP_HEADER)?;
    let mut waiting = BTreeMap::new();
    let mut next = 0u64;
    let mut crc = Crc::new();
    let mut len = 0u64;
    for block in done {
        let block = block?;
        waiting.insert(block.seq, block);
        while let Some(block) = waiting.remove(&next) {
            out.write_all(&block.bytes)?;
            crc.combine(&block.crc);
            len += block.len;
            next += 1;
            // The writer may already be gone (it failed or finished): nothing to release.
            let _ = tokens.send(());
        }
    }
    // Every sender is gone: either `finish` said how many blocks there are, or the
    // stream was abandoned and must not look complete.
    if block_count.load(Ordering::SeqCst) != next || !waiting.is_empty() {
        return Err(io::Error::other("the gzip stream ended early"));
    }
    out.write_all(&FINAL_EMPTY_BLOCK)?;
    out.write_all(&crc.finalize().to_le_bytes())?;
    // ISIZE is the length modulo 2^32, as gzip defines it.
    out.write_all(&(len as u32).to_le_bytes())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::process::{Command, Stdio};

    use super::*;

    fn compress(data: &[u8], level: u32, threads: usize) -> Vec<u8> {
        std::thread::scope(|scope| {
            let mut gz = ParallelGzip::new(Vec::new(), level, threads, scope).unwrap();
            // Odd-sized writes, as tar makes them.
            for piece in data.chunks(10_007) {
                gz.write_all(piece).unwrap();
            }
            gz.finish().unwrap()
        })
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut out)
            .unwrap();
        out
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
        // One member: a multi-member reader sees nothing more than the single-member one.
        let gz = compress(&data, 6, 2);
        let mut multi = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut multi)
            .unwrap();
        assert_eq!(multi, data);
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
    fn system_gzip_accepts_the_output() {
        let data = mixed(5 * BLOCK_SIZE + 77);
        for gz in [compress(&data, 6, 2), compress(b"", 6, 2)] {
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
            let mut gz = ParallelGzip::new(Failing, 6, 2, scope).unwrap();
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

    #[test]
    fn an_abandoned_stream_gets_no_trailer() {
        let data = mixed(3 * BLOCK_SIZE);
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
            let mut gz = ParallelGzip::new(Shared(&out), 6, 2, scope).unwrap();
            gz.write_all(&data).unwrap();
            drop(gz);
        });
        let written = out.into_inner().unwrap();
        let mut read = Vec::new();
        let result = flate2::read::GzDecoder::new(&written[..]).read_to_end(&mut read);
        assert!(
            result.is_err(),
            "an abandoned stream must not read as complete"
        );
    }

    #[test]
    fn entropy_tells_noise_from_text() {
        assert!(entropy_bits(&noise(PIECE_SIZE)) >= STORED_ENTROPY_BITS);
        assert!(entropy_bits(&mixed(2 * PIECE_SIZE)[..PIECE_SIZE]) < 6.0);
        assert!(entropy_bits(&[0u8; 100]) < 0.001);
        assert!(entropy_bits(&[]) < 0.001);
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
