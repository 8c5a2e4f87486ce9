//! Throughput of the archive format on 64 MiB in memory: `EncryptingWriter` and
//! `DecryptingReader` (header, STREAM-BE32 chunks of 64 KiB, buffering), against the raw
//! AES-256-GCM speed of this machine over the same 64 KiB chunks, the upper bound.
//!
//! `cargo bench -p service-backup-core --bench format`

use std::hint::black_box;
use std::io::{Read, Write};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use service_backup_core::format::{CHUNK_LEN, DecryptingReader, EncryptingWriter, Key, Keyring};

const SIZE: usize = 64 << 20;

/// 64 MiB that no compressor or cache trick makes special: a simple xorshift sequence.
fn payload() -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut data = Vec::with_capacity(SIZE);
    while data.len() < SIZE {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(SIZE);
    data
}

fn encrypt(plain: &[u8], key: &Key, out: Vec<u8>) -> Vec<u8> {
    let mut writer = EncryptingWriter::new(out, key).expect("header");
    // Written in 1 MiB blocks, as the backup pipeline hands them over.
    for block in plain.chunks(1 << 20) {
        writer.write_all(block).expect("encrypt");
    }
    writer.finish().expect("finish")
}

fn bench_format(c: &mut Criterion) {
    let plain = payload();
    let key = Key::from_bytes([7u8; 32]);
    let keyring = Keyring::new(key.clone());
    let archive = encrypt(&plain, &key, Vec::new());

    let mut group = c.benchmark_group("64MiB");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(10);

    group.bench_function("format encrypt (EncryptingWriter)", |b| {
        let mut out = Vec::with_capacity(archive.len());
        b.iter(|| {
            out.clear();
            out = encrypt(black_box(&plain), &key, std::mem::take(&mut out));
            black_box(out.len())
        });
    });

    group.bench_function("format decrypt (DecryptingReader)", |b| {
        let mut out = vec![0u8; 1 << 20];
        b.iter(|| {
            let mut reader =
                DecryptingReader::new(black_box(&archive[..]), &keyring).expect("header");
            let mut total = 0usize;
            loop {
                let n = reader.read(&mut out).expect("decrypt");
                if n == 0 {
                    break;
                }
                total += n;
            }
            assert_eq!(total, SIZE);
            black_box(total)
        });
    });

    let cipher = Aes256Gcm::new(&[7u8; 32].into());
    group.bench_function("raw AES-256-GCM encrypt (64 KiB chunks)", |b| {
        let mut buf = plain.clone();
        b.iter(|| {
            for (i, chunk) in buf.chunks_mut(CHUNK_LEN).enumerate() {
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&(i as u64).to_be_bytes());
                let tag = cipher
                    .encrypt_inout_detached(&nonce.into(), &[], chunk.into())
                    .expect("encrypt");
                black_box(tag);
            }
        });
    });

    group.finish();
}

criterion_group!(benches, bench_format);
criterion_main!(benches);
