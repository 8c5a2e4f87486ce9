//! The configuration parser: any text gives a config or a list of one-line problems, never
//! a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use service_backup::config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = config::parse(text) {
        assert!(!err.problems().is_empty(), "an error without a problem");
        let shown = err.to_string();
        assert!(!shown.is_empty());
    }
});
