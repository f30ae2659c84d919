//! The count window: the last `size` calls.
//!
//! The calls recorded since the last reset are numbered `1, 2, 3, …`: the
//! current number `I` is the sum of per-thread-stripe call counters. Each
//! failure (and each slow call) stores its number in a ring of the window's
//! size. The window holds the calls numbered `(max(I − size, base), I]`, so
//! with `n` calls in it, the failure rate reaches the threshold exactly when
//! the `k`-th most recent failure, `k = ⌈threshold · n⌉`, is inside the
//! window: one ring read. Concurrent pushes can make that read see a newer
//! entry than the `k`-th, so a positive answer is confirmed by counting the
//! ring before tripping (once per trip; counting never over-counts). Old
//! calls leave the window as new ones arrive (resilience4j's semantics).
//!
//! When calls are serialized the numbering is exact. When they complete
//! concurrently, calls finishing at the same moment may be numbered in
//! either order, which is the only order there is.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use buttress_core::stripe::{Padded, stripes, thread_stripe};

use super::{Counts, TALLIES, Tally, Trip};
use crate::config::Config;

/// The numbers of the most recent failures (or slow calls), newest last.
#[derive(Debug)]
struct Ring {
    cursor: Padded<AtomicU64>,
    slots: Box<[AtomicU64]>,
}

impl Ring {
    fn new(size: u64) -> Self {
        Self {
            cursor: Padded(AtomicU64::new(0)),
            slots: (0..size).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn len(&self) -> u64 {
        self.slots.len() as u64
    }

    #[inline]
    fn push(&self, number: u64) {
        let p = self.cursor.0.fetch_add(1, Ordering::AcqRel);
        self.slots[(p % self.len()) as usize].store(number, Ordering::Release);
    }

    /// How many entries were ever pushed.
    fn pushed(&self) -> u64 {
        self.cursor.0.load(Ordering::Acquire)
    }

    /// The number of the `k`-th most recent entry (`k >= 1`), 0 if none.
    #[inline]
    fn kth_recent(&self, k: u64) -> u64 {
        let c = self.cursor.0.load(Ordering::Acquire);
        if k == 0 || k > c || k > self.len() {
            return 0;
        }
        self.slots[((c - k) % self.len()) as usize].load(Ordering::Acquire)
    }

    /// Whether at least `k` entries have numbers in `(lower, upper]`.
    ///
    /// The O(1) test reads the `k`-th most recent entry. It is exact when
    /// pushes are serialized; when they are concurrent, a push in flight can
    /// overwrite that slot with a newer number, so a "yes" is confirmed by
    /// counting (once per trip). Counting never over-counts: every slot
    /// holds a distinct entry.
    #[inline]
    fn reaches(&self, k: u64, lower: u64, upper: u64) -> bool {
        self.kth_recent(k) > lower && self.count_in(lower, upper) >= k
    }

    /// How many entries have numbers in `(lower, upper]`.
    fn count_in(&self, lower: u64, upper: u64) -> u64 {
        self.slots
            .iter()
            .map(|s| s.load(Ordering::Acquire))
            .filter(|&n| n > lower && n <= upper)
            .count() as u64
    }
}

#[derive(Debug)]
pub(crate) struct CountWindow {
    size: u64,
    minimum: u64,
    /// Set once the window holds `minimum` calls (it only grows until a reset).
    judging: AtomicBool,
    /// Per stripe: the calls recorded, then the stripe's [`Tally`].
    calls: Box<[Padded<[AtomicU64; 1 + TALLIES]>]>,
    mask: usize,
    base: AtomicU64,
    failures: Ring,
    slow: Ring,
}

impl CountWindow {
    pub(super) fn new(size: u64, minimum: u64) -> Self {
        let n = stripes();
        Self {
            size,
            minimum,
            judging: AtomicBool::new(false),
            calls: (0..n)
                .map(|_| Padded(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
            mask: n - 1,
            base: AtomicU64::new(0),
            failures: Ring::new(size),
            slow: Ring::new(size),
        }
    }

    /// The number of the latest recorded call.
    fn position(&self) -> u64 {
        self.calls
            .iter()
            .map(|c| c.0[0].load(Ordering::Acquire))
            .sum()
    }

    /// The window's lower bound (exclusive) when the latest call is `at`.
    fn lower(&self, at: u64) -> u64 {
        at.saturating_sub(self.size)
            .max(self.base.load(Ordering::Acquire))
    }

    #[inline]
    pub(super) fn record(&self, failure: bool, slow: bool) -> Option<u64> {
        self.calls[thread_stripe() & self.mask].0[0].fetch_add(1, Ordering::AcqRel);
        if !(failure || slow) && self.judging.load(Ordering::Acquire) {
            return None;
        }
        let at = self.position();
        if failure {
            self.failures.push(at);
        }
        if slow {
            self.slow.push(at);
        }
        Some(at)
    }

    pub(super) fn should_trip(&self, at: u64, config: &Config) -> Option<Trip> {
        let lower = self.lower(at);
        let n = at.saturating_sub(lower);
        if n < self.minimum {
            return None;
        }
        if !self.judging.load(Ordering::Relaxed) {
            self.judging.store(true, Ordering::Release);
        }
        if self
            .failures
            .reaches(Config::needed(config.failure_ppm, n), lower, at)
        {
            return Some(Trip::FailureRate);
        }
        if config.slow_call_nanos.is_some()
            && self
                .slow
                .reaches(Config::needed(config.slow_ppm, n), lower, at)
        {
            return Some(Trip::SlowCallRate);
        }
        None
    }

    pub(super) fn counts(&self) -> Counts {
        let at = self.position();
        let lower = self.lower(at);
        Counts {
            calls: at - lower,
            failures: self.failures.count_in(lower, at),
            slow: self.slow.count_in(lower, at),
        }
    }

    pub(super) fn totals(&self) -> Counts {
        // Calls first: a failure is pushed after its call is numbered.
        let calls = self.position();
        Counts {
            calls,
            failures: self.failures.pushed(),
            slow: self.slow.pushed(),
        }
    }

    pub(super) fn reset(&self) {
        self.base.store(self.position(), Ordering::Release);
        self.judging.store(false, Ordering::Release);
    }

    /// This thread's cell for `tally`.
    #[inline]
    pub(super) fn tally_cell(&self, tally: Tally) -> &AtomicU64 {
        &self.calls[thread_stripe() & self.mask].0[1 + tally as usize]
    }

    /// The sum of `tally` over every thread's cell.
    pub(super) fn tallied(&self, tally: Tally) -> u64 {
        self.calls
            .iter()
            .map(|c| c.0[1 + tally as usize].load(Ordering::Relaxed))
            .sum()
    }
}
