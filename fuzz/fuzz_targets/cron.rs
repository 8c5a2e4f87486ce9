//! The cron parser: any text gives a schedule or a one-line reason, never a panic; a
//! schedule's fire times move forward.
#![no_main]

use chrono::{TimeZone as _, Utc};
use libfuzzer_sys::fuzz_target;
use service_backup::schedule::Schedule;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Schedule::parse(text) {
        Ok(schedule) => {
            let mut after = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap();
            for _ in 0..3 {
                match schedule.next_after(after) {
                    Some(next) => {
                        assert!(next > after, "{text:?}: {next} is not after {after}");
                        after = next;
                    }
                    None => break,
                }
            }
        }
        Err(reason) => assert!(
            !reason.contains('\n'),
            "a reason of several lines: {reason:?}"
        ),
    }
});
