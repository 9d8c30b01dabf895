//! A progress bar for long runs: shown only on a terminal, and only once a run has taken more
//! than a second.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Reports progress of a long operation on stderr.
pub struct Progress {
    message: &'static str,
    started: Instant,
    bar: Option<ProgressBar>,
    enabled: bool,
}

impl Progress {
    /// A progress reporter for `message`.
    pub fn new(message: &'static str) -> Self {
        Progress {
            message,
            started: Instant::now(),
            bar: None,
            enabled: std::io::stderr().is_terminal(),
        }
    }

    /// Records that `done` of `total` steps are complete.
    pub fn update(&mut self, done: usize, total: usize) {
        if !self.enabled || self.started.elapsed() < Duration::from_secs(1) {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta} left)")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_message(self.message);
            bar
        });
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }

    /// Removes the bar.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
