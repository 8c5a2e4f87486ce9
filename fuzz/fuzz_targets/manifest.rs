//! The manifest parser: any bytes give a manifest or an error, never a panic; a manifest
//! it accepts survives a write and a read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use service_backup_core::manifest::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::from_json(data) {
        let again = Manifest::from_json(&manifest.to_json()).expect("a written manifest reads");
        assert_eq!(manifest, again);
    }
});
