//! Sliding windows, striped so that threads sharing a breaker do not share
//! a cache line on the success path.
//!
//! Both windows answer "should the breaker trip?" in O(1) per call for the
//! count window and O(stripes × buckets), a constant, for the time window,
//! and only when it can have changed: after a failure or a slow call, or
//! after a success that may have brought the window up to its minimum
//! number of calls (a success never raises a rate, but it can make a rate
//! judgeable). Once the window holds the minimum, a success reads one
//! shared flag and no other thread's counters.
//!
//! The count window is in `count`, the time window in `time`.
//!
//! # Totals
//!
//! Both windows also give the calls, failures and slow calls recorded since
//! the breaker was built ([`Window::totals`]), for the metrics, at no cost
//! to a call. The count window's call stripes and ring cursors only grow.
//! A time-window slot's count is folded into its stripe's running total
//! when the slot is reused (or reset), and an event a slot cannot hold (a
//! saturated count, a writer that lagged into a later round) goes straight
//! into the running total; the total is the running total plus the slots.
//! Writers remove a count from a slot before adding it to the running
//! total, and readers read the running total first, so a reader may miss a
//! count for a moment but never counts one twice.
//!
//! The same per-thread cells hold the breaker's [`Tally`]: what it counts
//! outside the window (ignored calls, probes, forced-closed calls, calls
//! that finish in a later state period, rejections), in room the padding
//! leaves, so it takes no memory or cache line of its own.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{Config, WindowKind};

mod count;
mod time;

use count::CountWindow;
use time::TimeWindow;

/// What the window holds right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

/// What a breaker counts outside its window, in the window's per-thread
/// cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tally {
    Success,
    Failure,
    Ignored,
    Slow,
    Rejected,
}

/// How many kinds of [`Tally`] there are.
const TALLIES: usize = 5;

/// Why a window says "trip".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trip {
    FailureRate,
    SlowCallRate,
}

// The count window's padding makes it large; it lives once per breaker,
// inside an `Arc`, and boxing it would add a pointer chase to every call.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    pub(crate) fn new(config: &Config) -> Self {
        let minimum = u64::from(config.minimum_calls);
        match config.window {
            WindowKind::Count { size } => Self::Count(CountWindow::new(u64::from(size), minimum)),
            WindowKind::Time { duration, buckets } => Self::Time(TimeWindow::new(
                buttress_core::time::saturating_nanos(duration),
                buckets,
            )),
        }
    }

    pub(crate) fn needs_clock(&self) -> bool {
        matches!(self, Self::Time(_))
    }

    /// Records one call. Returns a position to judge from when the verdict
    /// may have changed.
    #[inline]
    pub(crate) fn record(&self, failure: bool, slow: bool, now: u64) -> Option<u64> {
        match self {
            Self::Count(w) => w.record(failure, slow),
            Self::Time(w) => w.record(failure, slow, now),
        }
    }

    pub(crate) fn should_trip(&self, at: u64, config: &Config) -> Option<Trip> {
        match self {
            Self::Count(w) => w.should_trip(at, config),
            Self::Time(w) => w.should_trip(at, config),
        }
    }

    pub(crate) fn counts(&self, now: u64) -> Counts {
        match self {
            Self::Count(w) => w.counts(),
            Self::Time(w) => w.counts(now),
        }
    }

    /// Adds one to `tally` (this thread's cell).
    #[inline]
    pub(crate) fn tally(&self, tally: Tally) {
        let cell: &AtomicU64 = match self {
            Self::Count(w) => w.tally_cell(tally),
            Self::Time(w) => w.tally_cell(tally),
        };
        cell.fetch_add(1, Ordering::Relaxed);
    }

    /// The sum of `tally` over every thread's cell.
    pub(crate) fn tallied(&self, tally: Tally) -> u64 {
        match self {
            Self::Count(w) => w.tallied(tally),
            Self::Time(w) => w.tallied(tally),
        }
    }

    /// Everything recorded since creation (resets included). Calls are read
    /// before failures, so `calls - failures` never counts a failure as a
    /// success (it may miss a call recorded meanwhile).
    pub(crate) fn totals(&self) -> Counts {
        match self {
            Self::Count(w) => w.totals(),
            Self::Time(w) => w.totals(),
        }
    }

    pub(crate) fn reset(&self) {
        match self {
            Self::Count(w) => w.reset(),
            Self::Time(w) => w.reset(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::CircuitBreakerBuilder;

    fn window(b: CircuitBreakerBuilder) -> Window {
        Window::new(&Config::validate(b).unwrap())
    }

    fn counts(calls: u64, failures: u64, slow: u64) -> Counts {
        Counts {
            calls,
            failures,
            slow,
        }
    }

    #[test]
    fn count_window_totals_outlive_the_window_and_resets() {
        let w = window(CircuitBreakerBuilder::new().count_window(4));
        for i in 0..10 {
            w.record(i % 2 == 0, i == 3, 0);
        }
        assert_eq!(w.counts(0), counts(4, 2, 0));
        assert_eq!(w.totals(), counts(10, 5, 1));
        w.reset();
        w.record(true, false, 0);
        assert_eq!(w.counts(0), counts(1, 1, 0));
        assert_eq!(w.totals(), counts(11, 6, 1));
    }

    #[test]
    fn time_window_totals_keep_rotated_slots_and_resets() {
        // Two 1 s slots: a slot is reused two seconds later.
        let w = window(CircuitBreakerBuilder::new().time_window(Duration::from_secs(2), 2));
        let s = 1_000_000_000;
        for _ in 0..3 {
            w.record(true, true, 0);
        }
        w.record(false, false, s);
        assert_eq!(w.totals(), counts(4, 3, 3));
        // Slot 0 again, a round later: its three calls leave the window
        // and stay in the totals.
        w.record(false, false, 2 * s);
        assert_eq!(w.counts(2 * s), counts(2, 0, 0));
        assert_eq!(w.totals(), counts(5, 3, 3));
        w.reset();
        assert_eq!(w.counts(2 * s), counts(0, 0, 0));
        assert_eq!(w.totals(), counts(5, 3, 3));
        w.record(true, false, 3 * s);
        assert_eq!(w.totals(), counts(6, 4, 3));
    }

    #[test]
    fn tallies_are_per_counter_and_outside_the_window() {
        for w in [
            window(CircuitBreakerBuilder::new()),
            window(CircuitBreakerBuilder::new().time_window(Duration::from_secs(2), 2)),
        ] {
            w.tally(Tally::Ignored);
            w.tally(Tally::Ignored);
            w.tally(Tally::Rejected);
            assert_eq!(w.tallied(Tally::Ignored), 2);
            assert_eq!(w.tallied(Tally::Rejected), 1);
            assert_eq!(w.tallied(Tally::Success), 0);
            assert_eq!(w.totals(), Counts::default());
            w.reset();
            assert_eq!(w.tallied(Tally::Ignored), 2, "a reset keeps tallies");
        }
    }
}
