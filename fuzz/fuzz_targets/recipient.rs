//! Recipient strings and identity lines (Bech32m): any text gives a recipient or an
//! error, never a panic; an accepted one prints back to the same key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use service_backup_core::format::{Identity, Recipient};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(recipient) = Recipient::parse(text) {
        let again = Recipient::parse(&recipient.to_string()).expect("a printed recipient parses");
        assert_eq!(again, recipient);
    }
    if let Ok(identity) = Identity::parse(text) {
        let again = Identity::parse(&identity.to_text()).expect("a printed identity parses");
        assert_eq!(again.recipient(), identity.recipient());
    }
});
