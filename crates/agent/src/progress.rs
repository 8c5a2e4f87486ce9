//! Progress for a person at a terminal: one bar with bytes, a rate smoothed over a window,
//! an ETA that says when it does not know, the elapsed time and a short note (a retry);
//! cleared when done. Bars are drawn only when the command prints for a person
//! ([`set_shown`]); every bar also counts its bytes, for the API's view of a running restore.

mod rate;
pub mod units;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use service_backup_core::progress::Progress;

pub use rate::RateWindow;

/// Whether bars are drawn: the command prints for a person on a terminal.
static SHOWN: AtomicBool = AtomicBool::new(false);

/// The bar on the screen, if any: log lines are printed above it and notes go onto it.
static ACTIVE: Mutex<Option<(u64, ProgressBar)>> = Mutex::new(None);

/// The number of the next bar, to tell whether the active one is a given bar.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// How often the bar is redrawn, so that the rate and ETA move while the bytes do not.
const TICK: Duration = Duration::from_millis(200);

/// Draws bars from now on (`true`: the command prints for a person) or never.
pub fn set_shown(shown: bool) {
    SHOWN.store(shown, Ordering::Relaxed);
}

/// Whether the command prints for a person (bars, human units, a closing summary).
pub fn for_a_person() -> bool {
    SHOWN.load(Ordering::Relaxed)
}

fn active() -> std::sync::MutexGuard<'static, Option<(u64, ProgressBar)>> {
    ACTIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Prints `line` to stderr above the bar (or plainly when there is none), leaving the bar
/// whole.
pub fn print_above(line: &str) {
    let bar = active().as_ref().map(|(_, b)| b.clone());
    match bar {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

/// Shows `text` as a short note on the bar (a retry, a destination given up). Without a
/// bar, a status line shows it until the next output; nothing when bars are not drawn.
pub fn note(text: &str) {
    if !for_a_person() {
        return;
    }
    let mut slot = active();
    let (_, bar) = slot.get_or_insert_with(|| {
        let bar = ProgressBar::hidden().with_style(
            ProgressStyle::with_template("{spinner} {msg}").expect("the template is valid"),
        );
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.enable_steady_tick(TICK);
        (0, bar)
    });
    bar.set_message(text.to_string());
}

/// Clears whatever bar or status line is on the screen (before a command's final output).
pub fn clear() {
    if let Some((_, bar)) = active().take() {
        bar.finish_and_clear();
    }
}

/// Bytes done and the total, readable from another task (the API's view of a restore).
#[derive(Debug, Default)]
pub struct Counters {
    done: AtomicU64,
    /// 0 while unknown.
    total: AtomicU64,
}

impl Counters {
    /// Bytes done, and the total when known.
    pub fn snapshot(&self) -> (u64, Option<u64>) {
        let total = self.total.load(Ordering::Relaxed);
        (
            self.done.load(Ordering::Relaxed),
            (total > 0).then_some(total),
        )
    }
}

/// A progress bar for one long operation; drawn only when the command prints for a person.
pub struct Bar {
    id: u64,
    drawn: ProgressBar,
    counters: Arc<Counters>,
    rate: Arc<Mutex<RateWindow>>,
}

impl Bar {
    /// A bar labelled `what` (`backup`, `restore`…).
    pub fn new(what: &str) -> Arc<Self> {
        if !for_a_person() {
            return Self::hidden();
        }
        // Styled before it is drawn: indicatif's default style would flash first.
        let bar = ProgressBar::hidden().with_prefix(what.to_string());
        let this = Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            drawn: bar,
            counters: Arc::default(),
            rate: Arc::default(),
        };
        this.drawn.set_style(this.style(false));
        this.drawn.set_draw_target(ProgressDrawTarget::stderr());
        this.drawn.enable_steady_tick(TICK);
        // A status line shown before (a retry while listing) gives way to the bar.
        if let Some((_, old)) = active().replace((this.id, this.drawn.clone())) {
            old.finish_and_clear();
        }
        Arc::new(this)
    }

    /// A bar that is never shown (the daemon's runs, the API's restores); it still counts.
    pub fn hidden() -> Arc<Self> {
        Arc::new(Self {
            id: 0,
            drawn: ProgressBar::hidden(),
            counters: Arc::default(),
            rate: Arc::default(),
        })
    }

    /// Whether anything is shown.
    pub fn visible(&self) -> bool {
        !self.drawn.is_hidden()
    }

    /// Sets the total in bytes, turning the spinner into a bar with an ETA.
    pub fn set_total_from(&self, bytes: u64) {
        Progress::set_total(self, bytes);
    }

    /// The bytes done and the total, shared.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// How long the bar has been running.
    pub fn elapsed(&self) -> Duration {
        self.drawn.elapsed()
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        let mut slot = active();
        if self.id != 0 && slot.as_ref().is_some_and(|(id, _)| *id == self.id) {
            *slot = None;
        }
        drop(slot);
        self.drawn.finish_and_clear();
    }

    /// `{prefix} [bar] done / total  pct  rate  ETA  elapsed  note` with a total, else
    /// `{prefix} spinner done  rate  elapsed  note`.
    fn style(&self, with_total: bool) -> ProgressStyle {
        let template = if with_total {
            "{prefix} [{bar:30}] {done} / {total}  {percent}%  {rate}  {eta}  {elapsed_h}  {msg}"
        } else {
            "{prefix} {spinner} {done}  {rate}  {elapsed_h}  {msg}"
        };
        let rate = self.rate.clone();
        let eta = self.rate.clone();
        ProgressStyle::with_template(template)
            .expect("the template is valid")
            .progress_chars("=> ")
            .with_key("done", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&units::bytes(s.pos()));
            })
            .with_key("total", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&units::bytes(s.len().unwrap_or(0)));
            })
            .with_key(
                "rate",
                move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let mut window = rate.lock().unwrap_or_else(PoisonError::into_inner);
                    window.record(s.elapsed(), s.pos());
                    let _ = match window.per_second() {
                        Some(r) => w.write_str(&units::rate(r)),
                        None => w.write_str("-- B/s"),
                    };
                },
            )
            .with_key(
                "eta",
                move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let mut window = eta.lock().unwrap_or_else(PoisonError::into_inner);
                    window.record(s.elapsed(), s.pos());
                    let left = s.len().unwrap_or(0).saturating_sub(s.pos());
                    let _ = match window.eta(left) {
                        _ if left == 0 => w.write_str("finishing"),
                        Some(d) => write!(w, "ETA {}", units::remaining(d)),
                        None => w.write_str("ETA unknown"),
                    };
                },
            )
            .with_key(
                "elapsed_h",
                |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "elapsed {}", units::duration(s.elapsed()));
                },
            )
    }
}

impl Progress for Bar {
    fn set_total(&self, bytes: u64) {
        self.counters.total.store(bytes, Ordering::Relaxed);
        self.counters.done.store(0, Ordering::Relaxed);
        self.drawn.set_length(bytes);
        self.drawn.set_position(0);
        if self.visible() {
            self.drawn.set_style(self.style(true));
        }
    }

    fn advance(&self, bytes: u64) {
        self.counters.done.fetch_add(bytes, Ordering::Relaxed);
        self.drawn.inc(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hidden_bar_still_counts_for_the_api() {
        let bar = Bar::hidden();
        assert_eq!(bar.counters().snapshot(), (0, None));
        bar.set_total_from(1000);
        bar.advance(250);
        bar.advance(250);
        assert_eq!(bar.counters().snapshot(), (500, Some(1000)));
        // A new attempt (the next destination) starts from zero again.
        bar.set_total_from(800);
        assert_eq!(bar.counters().snapshot(), (0, Some(800)));
        assert!(!bar.visible());
    }

    #[test]
    fn bars_are_hidden_unless_the_command_prints_for_a_person() {
        // The unit tests never turn bars on: a bar is hidden, a note is nothing.
        assert!(!Bar::new("backup").visible());
        note("retrying");
        assert!(active().is_none());
    }
}
