//! The workers and the ordered reader: one thread cuts the stream into blocks
//! ([`BlockSource`]), a fixed pool of workers decompresses them, and the reader hands their
//! bytes on in the order of the stream, whatever order the workers finish in.
//!
//! Memory is bounded: a block takes one of `2 × workers` tokens before it is filled and
//! gives it back once the reader has handed on its last byte, so at most that many blocks
//! exist at once, whatever the archive's size. A block holds its compressed bytes until a
//! worker has inflated it and its decompressed bytes from then on: with our archives about
//! 1 MiB of each, so under 8 MiB on two cores (5 MiB more peak RSS than one thread, in the
//! benchmark); a forged stream can make a block at most `GROUP_BYTES + MAX_PART_BYTES`
//! compressed and as much decompressed, about 6 MiB, before the rest of it is read in
//! sequence instead.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

use super::inflate::Inflate;
use super::split::{BlockSource, Codec, Job};
use crate::pipeline::compress::Pool;

/// What goes to the reader: a block's decompressed bytes (and the error after them), the
/// end of the stream, or a thread's panic.
enum Done {
    Block {
        seq: u64,
        plain: Vec<u8>,
        error: Option<io::Error>,
    },
    End {
        seq: u64,
    },
    Panicked,
}

/// A block on its way to a worker.
struct Work {
    seq: u64,
    job: Job,
}

/// Starts the block thread reading `source` and one worker per inflater, on `scope`;
/// returns the reader of the decompressed stream.
pub(crate) fn start<'scope, S, I>(
    scope: &'scope Scope<'scope, '_>,
    source: S,
    inflaters: Vec<I>,
) -> io::Result<OrderedReader<'scope>>
where
    S: BlockSource + 'scope,
    I: Inflate + 'scope,
{
    let workers = inflaters.len().max(1);
    let in_flight = 2 * workers;
    let (tokens_tx, tokens_rx) = sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        tokens_tx.send(()).expect("the receiver is here");
    }
    let (work_tx, work_rx) = sync_channel::<Work>(workers);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = channel::<Done>();
    let inputs = Pool::default();
    let outputs = Pool::default();
    let mut threads = Vec::with_capacity(workers + 1);
    for (i, inflater) in inflaters.into_iter().enumerate() {
        let (work, done) = (Arc::clone(&work_rx), done_tx.clone());
        let (inputs, outputs) = (inputs.clone(), outputs.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("decompress-{i}"))
                .spawn_scoped(scope, move || {
                    inflate_blocks(&work, &done, inflater, &inputs, &outputs);
                })?,
        );
    }
    drop(work_rx);
    let blocks = {
        let (done, inputs) = (done_tx.clone(), inputs.clone());
        std::thread::Builder::new()
            .name("decompress-split".into())
            .spawn_scoped(scope, move || {
                cut_blocks(source, &tokens_rx, &work_tx, &done, &inputs);
            })?
    };
    threads.push(blocks);
    drop(done_tx);
    Ok(OrderedReader {
        done: done_rx,
        waiting: BTreeMap::new(),
        next: 0,
        current: Vec::new(),
        pos: 0,
        holding: false,
        error: None,
        ended: false,
        tokens: Some(tokens_tx),
        outputs,
        threads,
    })
}

/// Tells the reader when a thread dies by a panic, so that it stops instead of waiting for
/// a block that never comes.
struct PanicAlarm<'a>(&'a Sender<Done>);

impl Drop for PanicAlarm<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.send(Done::Panicked);
        }
    }
}

/// The block thread: takes a token, fills a block from `source`, hands it to the workers
/// (plain bytes straight to the reader), until the end, an error, or the reader is gone.
fn cut_blocks<S: BlockSource>(
    mut source: S,
    tokens: &Receiver<()>,
    work: &SyncSender<Work>,
    done: &Sender<Done>,
    inputs: &Pool,
) {
    let _alarm = PanicAlarm(done);
    for seq in 0.. {
        if tokens.recv().is_err() {
            return; // the reader is gone
        }
        let mut job = Job::new(inputs.take(super::GROUP_CAPACITY));
        let sent = match source.next_job(&mut job) {
            Ok(false) => {
                let _ = done.send(Done::End { seq });
                return;
            }
            Ok(true) if job.codec == Codec::Plain => done
                .send(Done::Block {
                    seq,
                    plain: job.data,
                    error: None,
                })
                .is_ok(),
            Ok(true) => work.send(Work { seq, job }).is_ok(),
            Err(e) => {
                let _ = done.send(Done::Block {
                    seq,
                    plain: Vec::new(),
                    error: Some(e),
                });
                return;
            }
        };
        if !sent {
            return;
        }
    }
}

/// A worker: decompresses blocks until there are no more or the reader is gone.
fn inflate_blocks<I: Inflate>(
    work: &Mutex<Receiver<Work>>,
    done: &Sender<Done>,
    mut inflater: I,
    inputs: &Pool,
    outputs: &Pool,
) {
    let _alarm = PanicAlarm(done);
    loop {
        let next = match work.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(Work { seq, job }) = next else { return };
        let mut plain = outputs.take(job.plain_len());
        let error = inflater.inflate(&job, &mut plain).err();
        inputs.give(job.data);
        let failed = error.is_some();
        if done.send(Done::Block { seq, plain, error }).is_err() || failed {
            return;
        }
    }
}

/// The decompressed stream, in order: blocks are handed on by sequence number, those that
/// finish early wait for the ones before them.
pub(crate) struct OrderedReader<'scope> {
    done: Receiver<Done>,
    waiting: BTreeMap<u64, Done>,
    next: u64,
    current: Vec<u8>,
    pos: usize,
    /// Whether `current` is a block's, whose token goes back once it is read.
    holding: bool,
    /// The error that follows the bytes of `current`.
    error: Option<io::Error>,
    ended: bool,
    /// Gives a block's token back; `None` once the stream ended.
    tokens: Option<SyncSender<()>>,
    outputs: Pool,
    threads: Vec<ScopedJoinHandle<'scope, ()>>,
}

impl OrderedReader<'_> {
    /// The next block in order: its bytes and the error after them; `None` at the end.
    fn next_block(&mut self) -> io::Result<Option<(Vec<u8>, Option<io::Error>)>> {
        loop {
            match self.waiting.remove(&self.next) {
                Some(Done::Block { plain, error, .. }) => {
                    self.next += 1;
                    return Ok(Some((plain, error)));
                }
                Some(Done::End { .. }) => return Ok(None),
                Some(Done::Panicked) | None => {}
            }
            match self.done.recv() {
                Ok(Done::Panicked) => {
                    return Err(io::Error::other("a decompression thread panicked"));
                }
                Ok(block @ (Done::Block { seq, .. } | Done::End { seq })) => {
                    self.waiting.insert(seq, block);
                }
                Err(_) => {
                    return Err(io::Error::other("the decompression threads stopped early"));
                }
            }
        }
    }
}

impl Read for OrderedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pos == self.current.len() {
            if std::mem::take(&mut self.holding) {
                self.pos = 0;
                self.outputs.give(std::mem::take(&mut self.current));
                if let Some(tokens) = &self.tokens {
                    let _ = tokens.send(());
                }
            }
            if let Some(e) = self.error.take() {
                self.end();
                return Err(e);
            }
            if self.ended {
                return Ok(0);
            }
            match self.next_block() {
                Ok(Some((plain, error))) => {
                    (self.current, self.pos, self.error) = (plain, 0, error);
                    self.holding = true;
                }
                Ok(None) => {
                    self.end();
                    return Ok(0);
                }
                Err(e) => {
                    self.end();
                    return Err(e);
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl OrderedReader<'_> {
    /// Stops the threads (their next token or block finds the reader gone) and waits for
    /// them; a panic was reported already, or is of no more use.
    fn end(&mut self) {
        self.ended = true;
        self.tokens = None;
        // A receiver that stays would keep workers sending into it: replace it.
        let (_, gone) = channel();
        drop(std::mem::replace(&mut self.done, gone));
        self.waiting.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for OrderedReader<'_> {
    fn drop(&mut self) {
        self.end();
    }
}
