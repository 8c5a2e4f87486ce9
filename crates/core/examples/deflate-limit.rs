//! The machine's deflate limit for a backup with the default gzip: the blocks a backup
//! would compress (the tar stream cut into [`BLOCK_SIZE`] blocks, the parts judged
//! compressible), through libdeflate at level 6 on every core, nothing else: no tar, no
//! encryption, no hashing, no writing. The benchmark prints a backup's time as a fraction
//! of this one.
//!
//! ```text
//! cargo run --release -p service-backup-core --example deflate-limit -- DATA.tar [LEVEL]
//! ```
//!
//! It reads the whole file into memory first, then times the compression alone, and
//! prints one JSON line: `seconds`, `threads`, `deflated_bytes` (bytes judged
//! compressible), `deflated_to` (their compressed size), `stored_bytes`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use libdeflater::{CompressionLvl, Compressor};
use service_backup_core::pipeline::compress::{BLOCK_SIZE, deflated_ranges};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: deflate-limit DATA.tar [LEVEL]");
        std::process::exit(2);
    };
    let level: i32 = args
        .next()
        .map_or(6, |l| l.parse().expect("LEVEL is a number"));
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let blocks: Vec<&[u8]> = data.chunks(BLOCK_SIZE).collect();
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let next = AtomicUsize::new(0);
    let totals = Mutex::new((0u64, 0u64));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut compressor =
                    Compressor::new(CompressionLvl::new(level).expect("a gzip level, 0 to 12"));
                let mut out = Vec::new();
                let (mut deflated, mut deflated_to) = (0u64, 0u64);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(block) = blocks.get(i) else { break };
                    for range in deflated_ranges(block) {
                        let run = &block[range];
                        out.resize(compressor.deflate_compress_bound(run.len()), 0);
                        let n = compressor
                            .deflate_compress(run, &mut out)
                            .expect("the bound fits");
                        deflated += run.len() as u64;
                        deflated_to += n as u64;
                    }
                }
                let mut totals = totals.lock().expect("no thread panicked");
                totals.0 += deflated;
                totals.1 += deflated_to;
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let (deflated, deflated_to) = *totals.lock().expect("no thread panicked");
    println!(
        "{{\"seconds\":{seconds:.3},\"threads\":{threads},\"deflated_bytes\":{deflated},\"deflated_to\":{deflated_to},\"stored_bytes\":{}}}",
        data.len() as u64 - deflated
    );
}
