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
//! # Count window
//!
//! The calls recorded since the last reset are numbered `1, 2, 3, …`: the
//! current number `I` is the sum of per-thread-stripe call counters. Each
//! failure (and each slow call) stores its number in a ring of the window's
//! size. The window holds the calls numbered `(max(I − size, base), I]`, so
//! with `n` calls in it, the failure rate reaches the threshold exactly when
//! the `k`-th most recent failure, `k = ⌈threshold · n⌉`, is inside the
//! window: one ring read. Concurrent pushes can make that read see a newer
//! entry than the `k`-th, so a positive answer is confirmed by counting the
//! ring before tripping (once per trip; counting never over-counts). Old calls leave the window as new ones arrive
//! (resilience4j's semantics; tower-resilience 0.13's never-evicting
//! counters need as many failures as there were successes).
//!
//! When calls are serialized the numbering is exact. When they complete
//! concurrently, calls finishing at the same moment may be numbered in
//! either order, which is the only order there is.
//!
//! # Time window
//!
//! `buckets` slices of `duration / buckets` each, per stripe. Slice `n`
//! (counted from the breaker's creation) lives in slot `n % buckets`; the
//! slot's word packs the slice's round `n / buckets` (40 bits, compared
//! modulo 2^40, so it never runs out) with a count (24 bits, saturating),
//! so a reused slot resets itself with one compare-and-swap.
//!
//! A writer bumps a call's slot in the calls words before its failure and
//! slow-call slots; a reader takes a slot's failure and slow-call words
//! before its calls word and counts them only with calls of the same
//! round, so every failure it counts comes with its call.
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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::config::{Config, WindowKind};

pub(crate) use buttress_core::stripe::{Padded, stripes, thread_stripe};

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
        let cell = match self {
            Self::Count(w) => &w.calls[thread_stripe() & w.mask].0[1 + tally as usize],
            Self::Time(w) => {
                let base = (thread_stripe() & w.mask) * w.stride;
                &w.words[base + 3 * w.buckets as usize + 3 + tally as usize]
            }
        };
        cell.fetch_add(1, Ordering::Relaxed);
    }

    /// The sum of `tally` over every thread's cell.
    pub(crate) fn tallied(&self, tally: Tally) -> u64 {
        match self {
            Self::Count(w) => w
                .calls
                .iter()
                .map(|c| c.0[1 + tally as usize].load(Ordering::Relaxed))
                .sum(),
            Self::Time(w) => {
                let at = 3 * w.buckets as usize + 3 + tally as usize;
                w.words
                    .chunks_exact(w.stride)
                    .map(|stripe| stripe[at].load(Ordering::Relaxed))
                    .sum()
            }
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
    fn new(size: u64, minimum: u64) -> Self {
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
    fn record(&self, failure: bool, slow: bool) -> Option<u64> {
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

    fn should_trip(&self, at: u64, config: &Config) -> Option<Trip> {
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

    fn counts(&self) -> Counts {
        let at = self.position();
        let lower = self.lower(at);
        Counts {
            calls: at - lower,
            failures: self.failures.count_in(lower, at),
            slow: self.slow.count_in(lower, at),
        }
    }

    fn totals(&self) -> Counts {
        // Calls first: a failure is pushed after its call is numbered.
        let calls = self.position();
        Counts {
            calls,
            failures: self.failures.pushed(),
            slow: self.slow.pushed(),
        }
    }

    fn reset(&self) {
        self.base.store(self.position(), Ordering::Release);
        self.judging.store(false, Ordering::Release);
    }
}

const COUNT_BITS: u32 = 24;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const ROUND_MASK: u64 = (1 << (64 - COUNT_BITS)) - 1;
/// How far ahead of a writer's round a word's round may be and still be
/// taken for a later one: 2^20 rounds, over 17 minutes even for the
/// shortest window (one 1 ms slice).
const MAX_LAG_ROUNDS: u64 = 1 << 20;

#[inline]
fn unpack(word: u64) -> (u64, u64) {
    (word >> COUNT_BITS, word & COUNT_MAX)
}

/// How many rounds `later` is after `earlier`, modulo 2^40.
#[inline]
fn rounds_after(later: u64, earlier: u64) -> u64 {
    later.wrapping_sub(earlier) & ROUND_MASK
}

#[derive(Debug)]
pub(crate) struct TimeWindow {
    bucket_nanos: u64,
    buckets: u64,
    /// Per stripe: `buckets` words of calls, then failures, then slow calls,
    /// then the three running totals (see [Totals](self#totals)), then the
    /// stripe's [`Tally`], padded to a whole number of 128-byte blocks.
    words: Box<[AtomicU64]>,
    stride: usize,
    mask: usize,
    /// The latest slice whose window was seen holding the minimum number
    /// of calls: within that slice the count can only grow, so successes
    /// need no judging.
    judged: AtomicU64,
}

impl TimeWindow {
    fn new(duration: u64, buckets: u32) -> Self {
        let n = stripes();
        let stride = (3 * buckets as usize + 3 + TALLIES).next_multiple_of(16);
        Self {
            bucket_nanos: duration / u64::from(buckets),
            buckets: u64::from(buckets),
            words: (0..n * stride).map(|_| AtomicU64::new(0)).collect(),
            stride,
            mask: n - 1,
            judged: AtomicU64::new(0),
        }
    }

    /// The slice number of `now`. Slices start at 1, so `judged`'s initial
    /// 0 is never a current slice.
    #[inline]
    fn slice(&self, now: u64) -> u64 {
        now / self.bucket_nanos + 1
    }

    /// Counts one event of slice `round · buckets + slot` into `word`.
    ///
    /// Rounds compare modulo 2^40. A word a little ahead of the writer's
    /// round (at most [`MAX_LAG_ROUNDS`]) belongs to a later time: the
    /// writer read the clock, then lagged behind other writers, so its event
    /// is outside every window that slot can still serve and is dropped
    /// rather than wiping the later counts. Any other round is an older
    /// one, however its 40 bits compare (a slot untouched for decades), and
    /// the writer claims the word. A zero count marks an empty word.
    ///
    /// A claimed word's old count, and an event the word cannot take, go
    /// into `total`, the stripe's running total of this kind of event.
    #[inline]
    fn bump(word: &AtomicU64, total: &AtomicU64, round: u64) {
        let round = round & ROUND_MASK;
        let mut w = word.load(Ordering::Relaxed);
        loop {
            let (r, c) = unpack(w);
            // The new word, and the old count it displaces.
            let (next, displaced) =
                if c == 0 || (r != round && rounds_after(r, round) > MAX_LAG_ROUNDS) {
                    ((round << COUNT_BITS) | 1, c)
                } else if r == round && c < COUNT_MAX {
                    (w + 1, 0)
                } else {
                    // A saturated slot (the window caps its count), or a
                    // later round's word (the event is outside every window
                    // this slot serves): the event still counts in the total.
                    total.fetch_add(1, Ordering::AcqRel);
                    return;
                };
            match word.compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    if displaced != 0 {
                        total.fetch_add(displaced, Ordering::AcqRel);
                    }
                    return;
                }
                Err(actual) => w = actual,
            }
        }
    }

    #[inline]
    fn record(&self, failure: bool, slow: bool, now: u64) -> Option<u64> {
        let slice = self.slice(now);
        let base = (thread_stripe() & self.mask) * self.stride;
        let slot = (slice % self.buckets) as usize;
        let round = slice / self.buckets;
        let nb = self.buckets as usize;
        let totals = base + 3 * nb;
        // The call first: a reader that sees the failure then sees its call.
        Self::bump(&self.words[base + slot], &self.words[totals], round);
        if failure {
            Self::bump(
                &self.words[base + nb + slot],
                &self.words[totals + 1],
                round,
            );
        }
        if slow {
            Self::bump(
                &self.words[base + 2 * nb + slot],
                &self.words[totals + 2],
                round,
            );
        }
        (failure || slow || self.judged.load(Ordering::Acquire) != slice).then_some(now)
    }

    fn counts(&self, now: u64) -> Counts {
        let current = self.slice(now);
        let (round, last) = (current / self.buckets, current % self.buckets);
        let nb = self.buckets as usize;
        let mut counts = Counts::default();
        for stripe in self.words.chunks_exact(self.stride) {
            for slot in 0..nb {
                // Slots up to the current one hold this round's slices, the
                // others the previous round's; slice 0 is never used.
                let expected = if slot as u64 <= last {
                    round
                } else if round > 0 {
                    round - 1
                } else {
                    continue;
                };
                let expected = expected & ROUND_MASK;
                // Failures and slow calls before calls: see the module docs.
                let failures = unpack(stripe[nb + slot].load(Ordering::Acquire));
                let slow = unpack(stripe[2 * nb + slot].load(Ordering::Acquire));
                let (r, calls) = unpack(stripe[slot].load(Ordering::Acquire));
                if calls == 0 || r != expected {
                    continue;
                }
                counts.calls += calls;
                if failures.0 == r {
                    counts.failures += failures.1;
                }
                if slow.0 == r {
                    counts.slow += slow.1;
                }
            }
        }
        counts
    }

    fn should_trip(&self, now: u64, config: &Config) -> Option<Trip> {
        let c = self.counts(now);
        if c.calls < u64::from(config.minimum_calls) {
            return None;
        }
        self.judged.fetch_max(self.slice(now), Ordering::AcqRel);
        if c.failures >= Config::needed(config.failure_ppm, c.calls) {
            return Some(Trip::FailureRate);
        }
        if config.slow_call_nanos.is_some() && c.slow >= Config::needed(config.slow_ppm, c.calls) {
            return Some(Trip::SlowCallRate);
        }
        None
    }

    fn totals(&self) -> Counts {
        let nb = self.buckets as usize;
        // Per kind: calls, failures, slow calls; calls first (see
        // `Window::totals`), and each kind's running total before its slots.
        let mut sums = [0u64; 3];
        for (kind, sum) in sums.iter_mut().enumerate() {
            for stripe in self.words.chunks_exact(self.stride) {
                *sum += stripe[3 * nb + kind].load(Ordering::Acquire);
                *sum += stripe[kind * nb..(kind + 1) * nb]
                    .iter()
                    .map(|w| unpack(w.load(Ordering::Acquire)).1)
                    .sum::<u64>();
            }
        }
        Counts {
            calls: sums[0],
            failures: sums[1],
            slow: sums[2],
        }
    }

    fn reset(&self) {
        self.judged.store(0, Ordering::Release);
        let nb = self.buckets as usize;
        for stripe in self.words.chunks_exact(self.stride) {
            for kind in 0..3 {
                for w in &stripe[kind * nb..(kind + 1) * nb] {
                    let (_, c) = unpack(w.swap(0, Ordering::AcqRel));
                    if c != 0 {
                        stripe[3 * nb + kind].fetch_add(c, Ordering::AcqRel);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Builder;

    fn window(b: Builder) -> Window {
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
        let w = window(Builder::new().count_window(4));
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
        let w = window(Builder::new().time_window(Duration::from_secs(2), 2));
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
    fn time_window_totals_count_what_a_slot_cannot_hold() {
        let Window::Time(w) = window(Builder::new().time_window(Duration::from_secs(2), 2)) else {
            unreachable!()
        };
        let s = 1_000_000_000;
        let slot_1 = (thread_stripe() & w.mask) * w.stride + 1;
        // A saturated slot (slice 3: slot 1, round 1): the window stops
        // counting, the total does not.
        w.words[slot_1].store((1 << COUNT_BITS) | COUNT_MAX, Ordering::Relaxed);
        w.record(false, false, 2 * s);
        w.record(false, false, 2 * s);
        assert_eq!(w.counts(2 * s).calls, COUNT_MAX);
        assert_eq!(w.totals().calls, COUNT_MAX + 2);
        // A writer that lagged behind a later round (slice 1: slot 1, round
        // 0): outside the window, inside the total.
        w.record(false, false, 0);
        assert_eq!(w.counts(2 * s).calls, COUNT_MAX);
        assert_eq!(w.totals().calls, COUNT_MAX + 3);
    }

    #[test]
    fn tallies_are_per_counter_and_outside_the_window() {
        for w in [
            window(Builder::new()),
            window(Builder::new().time_window(Duration::from_secs(2), 2)),
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
