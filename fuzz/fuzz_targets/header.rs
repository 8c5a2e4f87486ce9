//! The archive header parser: any bytes give a header or an error, never a panic. The
//! reader holds a key, an X25519 identity and a backup password, so that symmetric,
//! recipient (type 3) and password (type 4) stanzas are all parsed and unwrapped. The
//! password derives with work factors up to 2^12 only (4 MiB, milliseconds): the format's
//! own bound of 2^20 (1 GiB) would exceed the fuzzer's memory limit, and a forged factor
//! above 2^20 must be refused by the parser before any scrypt, which this target checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use service_backup_core::format::{
    DecryptingReader, Identity, Key, Keyring, Passphrase, peek_header,
};
use service_backup_core::secret::Secret;

/// The key of spec/vectors, so that seeds from there open and mutations reach every check.
const KEY: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31,
];

/// The identity of spec/vectors' recipient vectors: bytes 0x60 to 0x7f.
fn identity() -> Identity {
    Identity::from_bytes(std::array::from_fn(|i| 0x60 + i as u8))
}

/// The password of spec/vectors' password vectors, whose work factor is 2^10.
const PASSWORD: &str = "correct horse battery staple";

fuzz_target!(|data: &[u8]| {
    let mut keyring = Keyring::new(Key::from_bytes(KEY));
    keyring.add_identity(identity());
    keyring.set_passphrase(Passphrase::new(Secret::new(PASSWORD)).with_max_work_factor(12));
    let _ = DecryptingReader::new(data, &keyring);
    // The unauthenticated reading of an agent that holds recipients only.
    let _ = peek_header(data);
});
