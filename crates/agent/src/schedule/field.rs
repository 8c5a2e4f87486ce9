//! One field of a robfig/cron expression: lists, ranges, steps, names, `*` and `?`.
//!
//! The grammar and the "star" rule are robfig/cron v3's: a field written `*` or `?` (or
//! `*/1`) is a star field, and when day of month or day of week is a star field a day must
//! match both; otherwise a day matches if either matches.

/// What one field may hold: its name in messages, its bounds and the names it accepts.
pub(super) struct Bounds {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

pub(super) const SECOND: Bounds = Bounds {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
pub(super) const MINUTE: Bounds = Bounds {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
pub(super) const HOUR: Bounds = Bounds {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
pub(super) const DAY_OF_MONTH: Bounds = Bounds {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
pub(super) const MONTH: Bounds = Bounds {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
pub(super) const DAY_OF_WEEK: Bounds = Bounds {
    name: "day-of-week",
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

/// A parsed field: the values it matches, and whether it is a star field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Field {
    bits: u64,
    star: bool,
}

impl Field {
    /// Parses `text` as a field within `bounds`; the error names the field.
    pub(super) fn parse(text: &str, bounds: &Bounds) -> Result<Self, String> {
        let mut field = Field {
            bits: 0,
            star: false,
        };
        for item in text.split(',').filter(|item| !item.is_empty()) {
            let (bits, star) = parse_item(item, bounds)
                .map_err(|why| format!("{} field \"{text}\": {why}", bounds.name))?;
            field.bits |= bits;
            field.star |= star;
        }
        if field.bits == 0 {
            return Err(format!("{} field \"{text}\" matches no value", bounds.name));
        }
        Ok(field)
    }

    /// Whether the field was written as `*`, `?` or `*/1`.
    pub(super) fn is_star(&self) -> bool {
        self.star
    }

    /// Whether `value` is matched.
    pub(super) fn contains(&self, value: u32) -> bool {
        value < 64 && self.bits & (1 << value) != 0
    }

    /// The field in the plain form croner reads: `*` for a star field, else the values.
    pub(super) fn to_croner(self, bounds: &Bounds) -> String {
        if self.star {
            return "*".to_string();
        }
        (bounds.min..=bounds.max)
            .filter(|v| self.contains(*v))
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One list item: `*`, `?`, `N`, `N-M`, each optionally followed by `/STEP`.
fn parse_item(item: &str, bounds: &Bounds) -> Result<(u64, bool), String> {
    let mut range_and_step = item.split('/');
    let range = range_and_step.next().unwrap_or_default();
    let step = range_and_step.next();
    if range_and_step.next().is_some() {
        return Err(format!("\"{item}\" has more than one '/'"));
    }

    let (mut start, end, mut star) = if range == "*" || range == "?" {
        (bounds.min, bounds.max, true)
    } else {
        let mut low_high = range.split('-');
        let low = low_high.next().unwrap_or_default();
        let high = low_high.next();
        if low_high.next().is_some() {
            return Err(format!("\"{item}\" has more than one '-'"));
        }
        let start = value(low, bounds)?;
        let end = match high {
            Some(high) => value(high, bounds)?,
            // "N/STEP" means "N-max/STEP", as robfig reads it.
            None if step.is_some() => bounds.max,
            None => start,
        };
        (start, end, false)
    };

    let step = match step {
        None => 1,
        Some(text) => match text.parse::<u32>() {
            Ok(0) | Err(_) => {
                return Err(format!("the step in \"{item}\" must be a positive number"));
            }
            Ok(n) => n,
        },
    };
    if step > 1 {
        star = false;
    }
    if start < bounds.min {
        return Err(format!("{start} is below the minimum {}", bounds.min));
    }
    if end > bounds.max {
        return Err(format!("{end} is above the maximum {}", bounds.max));
    }
    if start > end {
        return Err(format!("the range \"{item}\" starts after it ends"));
    }
    let mut bits = 0u64;
    while start <= end {
        bits |= 1 << start;
        start = match start.checked_add(step) {
            Some(next) => next,
            None => break,
        };
    }
    Ok((bits, star))
}

/// A number, or a name such as `MON` or `jan` (any case) where the field has names.
fn value(text: &str, bounds: &Bounds) -> Result<u32, String> {
    if let Some((_, v)) = bounds
        .names
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
    {
        return Ok(*v);
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(if bounds.names.is_empty() {
            format!("\"{text}\" is not a number")
        } else {
            format!(
                "\"{text}\" is not a number or a {} name such as {}",
                bounds.name,
                bounds.names[0].0.to_uppercase()
            )
        });
    }
    // Digits only: too many of them is simply out of range.
    Ok(text.parse::<u32>().unwrap_or(u32::MAX))
}
