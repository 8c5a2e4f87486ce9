//! Sizes, rates and durations in the units a person reads: `1.0 GiB`, `142 MiB/s`, `7.2 s`.

use std::time::Duration;

/// A size in binary units: `512 B`, `12.5 KiB`, `1.0 GiB`, `142 MiB` (one decimal under 100).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    #[allow(
        clippy::cast_precision_loss,
        reason = "a size shown with one decimal needs no more than f64's 52 bits"
    )]
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    // 1023.96 KiB would print as "1024.0 KiB": take the next unit instead.
    if value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 99.95 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A rate in bytes per second: `142 MiB/s`.
pub fn rate(bytes_per_second: f64) -> String {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a rate is positive and far below u64's range; its fraction of a byte is noise"
    )]
    let whole = bytes_per_second.max(0.0).round() as u64;
    format!("{}/s", bytes(whole))
}

/// A duration: `850 ms`, `7.2 s`, `2 min 05 s`, `1 h 02 min`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 1.0 {
        return format!("{} ms", d.as_millis());
    }
    if secs < 59.95 {
        return format!("{secs:.1} s");
    }
    whole_seconds(d.as_secs() + u64::from(d.subsec_millis() >= 500))
}

/// A time still to go, rounded up to whole seconds: `4 s`, `2 min 05 s`, `1 h 02 min`.
pub fn remaining(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    whole_seconds(secs.max(1))
}

fn whole_seconds(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {:02} s", secs / 60, secs % 60),
        _ => format!("{} h {:02} min", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(12_800), "12.5 KiB");
        assert_eq!(bytes(1 << 30), "1.0 GiB");
        assert_eq!(bytes(142 << 20), "142 MiB");
        assert_eq!(bytes((1 << 20) - 1), "1.0 MiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn rates_and_durations_read_as_a_person_says_them() {
        assert_eq!(rate(142.0 * 1024.0 * 1024.0), "142 MiB/s");
        assert_eq!(rate(-3.0), "0 B/s");
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_millis(7_240)), "7.2 s");
        assert_eq!(duration(Duration::from_secs(125)), "2 min 05 s");
        assert_eq!(duration(Duration::from_secs(3_725)), "1 h 02 min");
        assert_eq!(remaining(Duration::from_millis(3_100)), "4 s");
        assert_eq!(remaining(Duration::from_millis(10)), "1 s");
        assert_eq!(remaining(Duration::from_secs(61)), "1 min 01 s");
    }
}
