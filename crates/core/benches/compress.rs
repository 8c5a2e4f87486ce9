//! Throughput of the backup's compression stage alone ([`ParallelCompressor`] on the
//! machine's cores, gzip level 6 and zstd level 3) on the benchmark's data set, and the
//! stored sizes against one single-threaded `gzip -6` stream of the same bytes.
//!
//! ```sh
//! python3 bench/make-data.py DIR --size 100MiB && tar -cf DATA.tar -C DIR .
//! SB_BENCH_TAR=DATA.tar cargo bench -p service-backup-core --bench compress
//! ```
//!
//! Without `SB_BENCH_TAR` it runs on 64 MiB made in memory in the same proportions
//! (half dump-like text, a quarter noise, a quarter small files of text and noise in turn).

use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use service_backup_core::compression::Algorithm;
use service_backup_core::pipeline::compress::{ParallelCompressor, compression_threads};

/// The bytes to compress: the tar named by `SB_BENCH_TAR`, or a made-up mix.
fn data() -> (String, Vec<u8>) {
    match std::env::var_os("SB_BENCH_TAR") {
        Some(path) => {
            let data = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("read SB_BENCH_TAR={}: {e}", path.display()));
            (format!("{}", path.display()), data)
        }
        None => ("64 MiB made in memory".into(), made_up(64 << 20)),
    }
}

/// Half dump-like text, a quarter noise, a quarter 25 KiB files of text and noise in turn.
fn made_up(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let words = [
        "alpha", "beta", "orders", "paid", "Berlin", "Lisbon", "pending",
    ];
    let mut out = Vec::with_capacity(len);
    let mut row = 0u64;
    while out.len() < len / 2 {
        row += 1;
        let r = next();
        out.extend_from_slice(
            format!(
                "INSERT INTO orders VALUES ({row}, '{}', '{}', {}.{:02}, '2026-{:02}-{:02}', '{:08x}');\n",
                words[(r % 7) as usize],
                words[((r >> 8) % 7) as usize],
                (r >> 16) % 100_000,
                (r >> 40) % 100,
                (r >> 48) % 12 + 1,
                (r >> 52) % 28 + 1,
                r >> 32,
            )
            .as_bytes(),
        );
    }
    while out.len() < len * 3 / 4 {
        out.extend_from_slice(&next().to_le_bytes());
    }
    let mut file = 0u64;
    while out.len() < len {
        let end = (out.len() + 25 * 1024).min(len);
        if file.is_multiple_of(2) {
            let line = format!("key={file} value={}\n", "x".repeat(40));
            while out.len() < end {
                out.extend_from_slice(line.as_bytes());
            }
        } else {
            while out.len() < end {
                out.extend_from_slice(&next().to_le_bytes());
            }
        }
        out.truncate(end);
        file += 1;
    }
    out
}

fn compress(data: &[u8], out: Vec<u8>, algorithm: Algorithm) -> Vec<u8> {
    let level = algorithm.default_level();
    std::thread::scope(|scope| {
        let mut gz = ParallelCompressor::new(out, algorithm, level, compression_threads(), scope)
            .expect("start");
        // In the 10 KiB writes that tar makes.
        for piece in data.chunks(10_240) {
            gz.write_all(piece).expect("compress");
        }
        gz.finish().expect("finish")
    })
}

fn bench_compress(c: &mut Criterion) {
    let (what, data) = data();
    let ours = compress(&data, Vec::new(), Algorithm::Gzip).len();
    let zstd = compress(&data, Vec::new(), Algorithm::Zstd).len();
    let mut six = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    six.write_all(&data).expect("gzip -6");
    let six = six.finish().expect("gzip -6").len();
    eprintln!(
        "{what}: {} bytes; parallel gzip level 6 on {} threads: {ours} bytes; \
         one gzip -6 stream: {six} bytes ({:+.2} %); parallel zstd level 3: {zstd} bytes \
         ({:+.2} %)",
        data.len(),
        compression_threads(),
        (ours as f64 / six as f64 - 1.0) * 100.0,
        (zstd as f64 / six as f64 - 1.0) * 100.0
    );

    let mut group = c.benchmark_group("compress");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    for (algorithm, size) in [(Algorithm::Gzip, ours), (Algorithm::Zstd, zstd)] {
        let name = format!("{algorithm} level {}", algorithm.default_level());
        group.bench_function(name, |b| {
            let mut out = Vec::with_capacity(size + size / 8);
            b.iter(|| {
                out.clear();
                out = compress(black_box(&data), std::mem::take(&mut out), algorithm);
                black_box(out.len())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_compress);
criterion_main!(benches);
