//! Progress lines on stderr, with the time elapsed since the operation began:
//! `[hop-lab hl207 up +0.412s] mariadb`. Stdout is left to the KEY=VALUE lines.
//!
//! Written with `eprintln!`, so inside a test they are captured with the test's output
//! and shown only if it fails.

use std::time::Instant;

/// The clock and label of one lab operation (`up`, `down`, ...).
#[derive(Debug)]
pub struct Progress {
    label: String,
    start: Instant,
}

impl Progress {
    /// Starts the clock for operation `what` of lab `prefix`.
    pub fn new(prefix: &str, what: &str) -> Self {
        Progress {
            label: format!("hop-lab {prefix} {what}"),
            start: Instant::now(),
        }
    }

    /// Prints one progress line.
    pub fn step(&self, message: &str) {
        let t = self.start.elapsed();
        eprintln!(
            "[{} +{}.{:03}s] {message}",
            self.label,
            t.as_secs(),
            t.subsec_millis()
        );
    }

    /// Seconds since the operation began.
    pub fn elapsed_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}
