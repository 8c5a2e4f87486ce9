//! The archive index decoder (`spec/archive-format.md`, section 15): any bytes, taken as a
//! payload's tail, give a footer, carriers and a body, or an error, never a panic; every
//! entry of an accepted body has a safe relative path and lies inside the tar stream, after
//! the one before.
#![no_main]

use libfuzzer_sys::fuzz_target;
use service_backup_core::compression::Algorithm;
use service_backup_core::format::index::{ArchiveIndex, Footer, carrier, check_path};

fuzz_target!(|data: &[u8]| {
    // As a body, for a compressed stream of the length its first byte says.
    let compressed = u64::from(data.first().copied().unwrap_or(0)) * 100;
    if let Ok(index) = ArchiveIndex::decode(data.to_vec(), compressed) {
        let mut end = 0;
        for entry in index.entries() {
            let Ok(entry) = entry else { break };
            assert!(check_path(&entry.path).is_ok(), "{:?}", entry.path);
            assert!(entry.tar_start >= end && entry.tar_end() <= index.tar_len);
            end = entry.tar_end();
        }
    }
    // As the end of a payload: the footer, then the carriers before it.
    for algorithm in Algorithm::ALL {
        let flen = carrier::footer_carrier_len(algorithm);
        if let Some(raw) = carrier::footer_in(algorithm, data)
            && let Ok(Some(footer)) = Footer::decode(raw, data.len() as u64, flen)
        {
            let start = usize::try_from(footer.index_start).unwrap();
            let end = start + usize::try_from(footer.carriers_len).unwrap();
            if let Ok(body) = carrier::body_of(algorithm, &data[start..end], &footer) {
                assert_eq!(body.len() as u64, footer.body_len);
            }
        }
    }
});
