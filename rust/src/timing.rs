//! The hand-run timing tests' clock (`#[ignore]`d tests, run with `--ignored --nocapture`;
//! never part of CI, whose machines are shared and noisy).

use std::time::{Duration, Instant};

/// The shortest wall time of `rounds` runs of `f`.
pub fn best_of(rounds: usize, mut f: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}
