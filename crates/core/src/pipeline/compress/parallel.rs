//! The thread pool and the ordered writer: blocks are compressed on a few threads of a
//! scope and written, in order, by one more.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{Scope, ScopedJoinHandle};

use super::{BLOCK_SIZE, Codec, Ends};
use crate::compression::Algorithm;

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
    output: Option<ScopedJoinHandle<'scope, io::Result<Finished<W>>>>,
    /// How many blocks the stream has, once `finish` knows; until then [`UNFINISHED`].
    block_count: Arc<AtomicU64>,
    failed: bool,
}

/// What the output thread hands back: the inner writer and each block's compressed length.
type Finished<W> = (W, Vec<u32>);

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
        let (done_tx, done_rx) = channel::<io::Result<Compressed>>();
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
    pub fn finish(self) -> io::Result<W> {
        self.finish_with_blocks().map(|(out, _)| out)
    }

    /// Like [`Self::finish`], with the compressed length of every block, in order (each
    /// block is [`BLOCK_SIZE`] bytes of input but the last), for the archive's index.
    pub fn finish_with_blocks(mut self) -> io::Result<(W, Vec<u32>)> {
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
struct PanicAlarm<'a>(&'a Sender<io::Result<Compressed>>);

impl Drop for PanicAlarm<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self
                .0
                .send(Err(io::Error::other("a compression thread panicked")));
        }
    }
}

/// A block of input to compress.
struct Job {
    seq: u64,
    data: Vec<u8>,
}

/// A compressed block: one or more whole gzip members, or one zstd frame.
struct Compressed {
    seq: u64,
    bytes: Vec<u8>,
}

/// Buffers handed back once used, so that blocks reuse a few allocations instead of
/// allocating (and fragmenting the heap with) a new megabyte each.
#[derive(Clone, Default)]
pub(crate) struct Pool(Arc<Mutex<Vec<Vec<u8>>>>);

impl Pool {
    /// A buffer from the pool, or a new one of `capacity`.
    pub(crate) fn take(&self, capacity: usize) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    /// Gives `buffer` back, emptied.
    pub(crate) fn give(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buffer);
    }
}

/// A compression thread: compresses jobs until the queue closes or the output is gone.
fn compress_jobs(
    jobs: &Mutex<Receiver<Job>>,
    done: &Sender<io::Result<Compressed>>,
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
        let block = compressed.map(|()| Compressed {
            seq: job.seq,
            bytes,
        });
        if done.send(block).is_err() || failed {
            return;
        }
    }
}

/// The output thread: writes the members or frame of each block in order, then, for an
/// empty stream, an empty one; or, if the stream was abandoned, the header of a member or
/// frame that never comes.
fn write_in_order<W: Write>(
    mut out: W,
    done: &Receiver<io::Result<Compressed>>,
    tokens: &SyncSender<()>,
    block_count: &AtomicU64,
    outputs: &Pool,
    ends: &Ends,
) -> io::Result<(W, Vec<u32>)> {
    let mut waiting = BTreeMap::new();
    let mut next = 0u64;
    let mut lengths = Vec::new();
    for block in done {
        let block = match block {
            Ok(block) => block,
            Err(e) => return Err(unfinished(&mut out, ends, e)),
        };
        waiting.insert(block.seq, block);
        while let Some(block) = waiting.remove(&next) {
            out.write_all(&block.bytes)?;
            // A block of 1 MiB compresses far below 4 GiB.
            lengths.push(u32::try_from(block.bytes.len()).unwrap_or(u32::MAX));
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
    Ok((out, lengths))
}

/// Ends an abandoned stream with a member or frame header and nothing after it, which every
/// reader reports as a truncated stream; returns `error`.
fn unfinished<W: Write>(out: &mut W, ends: &Ends, error: io::Error) -> io::Error {
    // Best effort: when the writer itself failed there is nothing more to save.
    let _ = out.write_all(ends.unfinished);
    error
}
