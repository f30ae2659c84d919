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
    calls: Box<[Padded<AtomicU64>]>,
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
            calls: (0..n).map(|_| Padded(AtomicU64::new(0))).collect(),
            mask: n - 1,
            base: AtomicU64::new(0),
            failures: Ring::new(size),
            slow: Ring::new(size),
        }
    }

    /// The number of the latest recorded call.
    fn position(&self) -> u64 {
        self.calls.iter().map(|c| c.0.load(Ordering::Acquire)).sum()
    }

    /// The window's lower bound (exclusive) when the latest call is `at`.
    fn lower(&self, at: u64) -> u64 {
        at.saturating_sub(self.size)
            .max(self.base.load(Ordering::Acquire))
    }

    #[inline]
    fn record(&self, failure: bool, slow: bool) -> Option<u64> {
        self.calls[thread_stripe() & self.mask]
            .0
            .fetch_add(1, Ordering::AcqRel);
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
    /// padded to a whole number of 128-byte blocks.
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
        let stride = (3 * buckets as usize).next_multiple_of(16);
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
    #[inline]
    fn bump(word: &AtomicU64, round: u64) {
        let round = round & ROUND_MASK;
        let mut w = word.load(Ordering::Relaxed);
        loop {
            let (r, c) = unpack(w);
            let next = if c == 0 || (r != round && rounds_after(r, round) > MAX_LAG_ROUNDS) {
                (round << COUNT_BITS) | 1
            } else if r == round {
                if c == COUNT_MAX {
                    return;
                }
                w + 1
            } else {
                return;
            };
            match word.compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
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
        // The call first: a reader that sees the failure then sees its call.
        Self::bump(&self.words[base + slot], round);
        if failure {
            Self::bump(&self.words[base + nb + slot], round);
        }
        if slow {
            Self::bump(&self.words[base + 2 * nb + slot], round);
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

    fn reset(&self) {
        self.judged.store(0, Ordering::Release);
        for w in &*self.words {
            w.store(0, Ordering::Release);
        }
    }
}
