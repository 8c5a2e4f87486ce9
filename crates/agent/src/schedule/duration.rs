//! Go's `time.ParseDuration` syntax, which `@every` takes: `1h30m`, `90s`, `1.5h`, `500ms`.

const NANOS_PER_UNIT: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// The longest duration Go can hold, in nanoseconds (about 292 years).
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration into signed nanoseconds; the error says what is wrong with it.
pub(super) fn parse_go_duration(text: &str) -> Result<i128, String> {
    let invalid = |why: &str| format!("\"{text}\" is not a duration such as 1h30m or 90s: {why}");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid("it is empty"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after_int) = rest.split_at(int_len);
        let (frac_digits, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(invalid("a number is expected before each unit"));
        }
        let unit_len = after_number
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(after_number.len(), |(i, _)| i);
        let (unit, after_unit) = after_number.split_at(unit_len);
        if unit.is_empty() {
            return Err(invalid("a unit (ns, us, ms, s, m or h) is missing"));
        }
        let Some(&(_, scale)) = NANOS_PER_UNIT.iter().find(|(name, _)| *name == unit) else {
            return Err(invalid(&format!(
                "unknown unit \"{unit}\" (use ns, us, ms, s, m or h)"
            )));
        };
        let too_long = || invalid("it is longer than 292 years");
        let whole: u128 = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse().map_err(|_| too_long())?
        };
        let mut part = whole.checked_mul(scale).ok_or_else(too_long)?;
        // The fraction, exactly, to nanosecond precision (digits past that are dropped, as Go does).
        let mut frac_scale = scale;
        for digit in frac_digits.bytes() {
            frac_scale /= 10;
            if frac_scale == 0 {
                break;
            }
            part += u128::from(digit - b'0') * frac_scale;
        }
        total = total.checked_add(part).ok_or_else(too_long)?;
        if total > MAX_NANOS {
            return Err(too_long());
        }
        rest = after_unit;
    }
    let total = i128::try_from(total).map_err(|_| invalid("it is longer than 292 years"))?;
    Ok(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_to_nanoseconds() {
        let s = 1_000_000_000i128;
        for (text, nanos) in [
            ("0", 0),
            ("1h30m", 5_400 * s),
            ("90s", 90 * s),
            ("1.5h", 5_400 * s),
            ("500ms", 500_000_000),
            ("1m0.5s", 60 * s + 500_000_000),
            ("2h45m10s", (2 * 3600 + 45 * 60 + 10) * s),
            (".5s", 500_000_000),
            ("1.s", s),
            ("10us", 10_000),
            ("10\u{b5}s", 10_000),
            ("3ns", 3),
            ("-1h", -3_600 * s),
            ("+5m", 300 * s),
        ] {
            assert_eq!(parse_go_duration(text), Ok(nanos), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_why() {
        for (text, why) in [
            ("", "it is empty"),
            ("1", "a unit (ns, us, ms, s, m or h) is missing"),
            ("5x", "unknown unit \"x\""),
            ("1d", "unknown unit \"d\""),
            ("h", "a number is expected"),
            (".h", "a number is expected"),
            ("1h 30m", "unknown unit \"h \""),
            ("99999999999999999999h", "longer than 292 years"),
            ("3000000h", "longer than 292 years"),
        ] {
            let err = parse_go_duration(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
            assert!(
                err.starts_with(&format!("\"{text}\" is not a duration")),
                "{err}"
            );
        }
    }
}
