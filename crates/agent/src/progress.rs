//! Progress bars on a terminal: bytes, rate and ETA when the total is known; nothing when
//! standard error is not a terminal.

use std::io::IsTerminal as _;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use service_backup_core::progress::Progress;

/// A progress bar for one long operation, hidden when stderr is not a terminal.
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar labelled `what` (`backup`, `restore`…).
    pub fn new(what: &str) -> Arc<Self> {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(spinner_style());
        bar.set_prefix(what.to_string());
        Arc::new(Self { bar })
    }

    /// A bar that is never shown (the daemon's runs).
    pub fn hidden() -> Arc<Self> {
        Arc::new(Self {
            bar: ProgressBar::hidden(),
        })
    }

    /// Whether anything is shown.
    pub fn visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// Sets the total in bytes, turning the spinner into a bar with an ETA.
    pub fn set_total_from(&self, bytes: u64) {
        Progress::set_total(self, bytes);
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {spinner} {bytes} ({binary_bytes_per_sec})")
        .expect("the template is valid")
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix} [{bar:30}] {bytes}/{total_bytes} ({binary_bytes_per_sec}, {eta} left)",
    )
    .expect("the template is valid")
    .progress_chars("=> ")
}

impl Progress for Bar {
    fn set_total(&self, bytes: u64) {
        self.bar.set_length(bytes);
        self.bar.set_style(bar_style());
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
}
