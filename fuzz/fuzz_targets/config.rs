//! The configuration parser: any text gives a config or a list of one-line problems, never
//! a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The agent is a binary crate: its config and schedule modules are compiled in here as
// they are (their own `crate::schedule` path resolves through the `use` below).
#[allow(dead_code, unused_imports, missing_docs)]
#[path = "../../crates/agent/src"]
mod agent {
    pub mod config;
    pub mod schedule;
}
use agent::schedule;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = agent::config::parse(text) {
        assert!(!err.problems().is_empty(), "an error without a problem");
        let shown = err.to_string();
        assert!(!shown.is_empty());
    }
});
