//! The archive header parser: any bytes give a header or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use service_backup_core::format::{DecryptingReader, Key, Keyring};

/// The key of spec/vectors, so that seeds from there open and mutations reach every check.
const KEY: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31,
];

fuzz_target!(|data: &[u8]| {
    let keyring = Keyring::new(Key::from_bytes(KEY));
    let _ = DecryptingReader::new(data, &keyring);
});
