//! A rate smoothed over a sliding window, and an ETA that says when it does not know.
//!
//! The average since the start lags behind a rate that changes (it showed 547 MiB/s falling
//! to 192 MiB/s while the real rate had long dropped), and an ETA from it is wrong for
//! seconds; a window of the last few seconds follows the real rate.

use std::collections::VecDeque;
use std::time::Duration;

/// How far back the rate looks.
pub const WINDOW: Duration = Duration::from_secs(5);
/// Below this span of samples there is no rate (and no ETA) yet.
pub const MIN_SPAN: Duration = Duration::from_secs(1);

/// Samples of a position over time; the rate is the slope over the last [`WINDOW`].
#[derive(Debug, Default)]
pub struct RateWindow {
    samples: VecDeque<(Duration, u64)>,
}

impl RateWindow {
    /// The position was `pos` at `at` (time since the start). A position that goes back (a
    /// restore starting over from another destination) starts a new window.
    pub fn record(&mut self, at: Duration, pos: u64) {
        if self.samples.back().is_some_and(|&(t, p)| pos < p || at < t) {
            self.samples.clear();
        }
        self.samples.push_back((at, pos));
        // Keep one sample at or before the window's start, so the span covers the window.
        while self.samples.len() > 2 && at.saturating_sub(self.samples[1].0) >= WINDOW {
            self.samples.pop_front();
        }
    }

    /// Bytes per second over the window; `None` until the samples span [`MIN_SPAN`].
    pub fn per_second(&self) -> Option<f64> {
        let (&(t0, p0), &(t1, p1)) = (self.samples.front()?, self.samples.back()?);
        let span = t1.saturating_sub(t0);
        if span < MIN_SPAN {
            return None;
        }
        #[allow(
            clippy::cast_precision_loss,
            reason = "a byte count's last bits do not matter to a shown rate"
        )]
        Some((p1 - p0) as f64 / span.as_secs_f64())
    }

    /// The time `remaining` bytes take at the current rate; `None` while the rate is not
    /// known or nothing moves (an upload that stalls has no honest ETA).
    pub fn eta(&self, remaining: u64) -> Option<Duration> {
        let rate = self.per_second()?;
        if rate < 1.0 {
            return None;
        }
        #[allow(
            clippy::cast_precision_loss,
            reason = "a byte count's last bits do not matter to a shown ETA"
        )]
        let secs = remaining as f64 / rate;
        Duration::try_from_secs_f64(secs).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn no_rate_and_no_eta_before_a_second_of_samples() {
        let mut w = RateWindow::default();
        assert_eq!(w.per_second(), None);
        w.record(ms(0), 0);
        w.record(ms(500), 100 * MIB);
        assert_eq!(w.per_second(), None);
        assert_eq!(w.eta(MIB), None);
        w.record(ms(1000), 200 * MIB);
        let rate = w.per_second().unwrap();
        assert!((rate - 200.0 * 1_048_576.0).abs() < 1.0, "{rate}");
    }

    #[test]
    fn the_rate_follows_a_slowdown_within_the_window() {
        // 500 MiB/s for 4 s, then 100 MiB/s for 6 s: the average since the start would
        // still say 260 MiB/s; the window says 100.
        let mut w = RateWindow::default();
        let mut pos = 0;
        for tenth in 0..=100u64 {
            w.record(ms(tenth * 100), pos);
            pos += if tenth < 40 { 50 * MIB } else { 10 * MIB };
        }
        let rate = w.per_second().unwrap() / 1_048_576.0;
        assert!((rate - 100.0).abs() < 5.0, "{rate} MiB/s");
        let eta = w.eta(500 * MIB).unwrap();
        assert!((eta.as_secs_f64() - 5.0).abs() < 0.3, "{eta:?}");
    }

    #[test]
    fn a_stall_makes_the_eta_unknown_and_not_one_second() {
        let mut w = RateWindow::default();
        w.record(ms(0), 0);
        w.record(ms(2000), 400 * MIB);
        // Nothing moves for longer than the window: the draws keep sampling.
        for tenth in 21..=80 {
            w.record(ms(tenth * 100), 400 * MIB);
        }
        assert_eq!(w.per_second(), Some(0.0));
        assert_eq!(w.eta(100 * MIB), None);
    }

    #[test]
    fn a_position_going_back_starts_a_new_window() {
        let mut w = RateWindow::default();
        w.record(ms(0), 0);
        w.record(ms(3000), 900 * MIB);
        w.record(ms(3100), 0);
        assert_eq!(w.per_second(), None);
        w.record(ms(4100), 10 * MIB);
        let rate = w.per_second().unwrap() / 1_048_576.0;
        assert!((rate - 10.0).abs() < 0.1, "{rate}");
    }

    #[test]
    fn the_window_keeps_few_samples() {
        let mut w = RateWindow::default();
        for tenth in 0..10_000u64 {
            w.record(ms(tenth * 100), tenth);
        }
        assert!(w.samples.len() <= 52, "{}", w.samples.len());
    }
}
