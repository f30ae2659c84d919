//! The time window: the calls of the last `duration`, in `buckets` slices.
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

use std::sync::atomic::{AtomicU64, Ordering};

use buttress_core::stripe::{stripes, thread_stripe};

use super::{Counts, TALLIES, Tally, Trip};
use crate::config::Config;

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
    /// then the three running totals (see [Totals](super#totals)), then the
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
    pub(super) fn new(duration: u64, buckets: u32) -> Self {
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
    pub(super) fn record(&self, failure: bool, slow: bool, now: u64) -> Option<u64> {
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

    pub(super) fn counts(&self, now: u64) -> Counts {
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

    pub(super) fn should_trip(&self, now: u64, config: &Config) -> Option<Trip> {
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

    pub(super) fn totals(&self) -> Counts {
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

    pub(super) fn reset(&self) {
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

    /// This thread's cell for `tally`, after its stripe's running totals.
    #[inline]
    pub(super) fn tally_cell(&self, tally: Tally) -> &AtomicU64 {
        let base = (thread_stripe() & self.mask) * self.stride;
        &self.words[base + 3 * self.buckets as usize + 3 + tally as usize]
    }

    /// The sum of `tally` over every thread's cell.
    pub(super) fn tallied(&self, tally: Tally) -> u64 {
        let at = 3 * self.buckets as usize + 3 + tally as usize;
        self.words
            .chunks_exact(self.stride)
            .map(|stripe| stripe[at].load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{CircuitBreakerBuilder, Config};
    use crate::window::Window;

    #[test]
    fn time_window_totals_count_what_a_slot_cannot_hold() {
        let Window::Time(w) = Window::new(
            &Config::validate(CircuitBreakerBuilder::new().time_window(Duration::from_secs(2), 2))
                .unwrap(),
        ) else {
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
}
