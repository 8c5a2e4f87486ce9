//! The stream decryptor: reading any bytes to the end gives plaintext or an error, never a
//! panic, and nothing unauthenticated comes out of a modified archive.
#![no_main]

use std::io::Read as _;

use libfuzzer_sys::fuzz_target;
use service_backup_core::format::{DecryptingReader, Key, Keyring};

/// The key of spec/vectors, so that seeds from there open and mutations reach the chunks.
const KEY: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31,
];

fuzz_target!(|data: &[u8]| {
    let keyring = Keyring::new(Key::from_bytes(KEY));
    let Ok(mut reader) = DecryptingReader::new(data, &keyring) else {
        return;
    };
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n;
                // Plaintext is never larger than the ciphertext that carried it.
                assert!(total <= data.len(), "more plaintext than input");
            }
        }
    }
});
