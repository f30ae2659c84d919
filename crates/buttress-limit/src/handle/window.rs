//! The sampling window: per-stripe accumulators of the calls that complete
//! while a window is open, drained into one aggregate when it closes; and,
//! for algorithms that ask for a percentile
//! ([`Limit::rtt_percentile`](crate::algorithm::Limit::rtt_percentile)),
//! per-stripe RTT counts in [`buttress_core::histogram`]'s log-linear
//! buckets, whose midpoints are within 6.25 % of any RTT in them.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use buttress_core::histogram::{self as hist, BUCKETS};
use buttress_core::stripe::Padded;

/// The RTT samples a window of 1 s aims for: above twice this many calls
/// per window, only one call in 2^k has its RTT measured (two clock
/// reads), the least k that keeps about this many samples. The mean of a
/// uniform subsample is an unbiased estimate of the window's mean. A
/// shorter RTT-scaled window aims for its share of this (see
/// [`samples_for`]), so the clock reads per second stay about the same
/// however short the windows.
pub(super) const SAMPLES_PER_WINDOW: u64 = 1024;

/// The fewest RTT samples a window aims for, however short.
pub(super) const MIN_SAMPLES: u64 = 128;

/// The samples a window of `len` nanoseconds aims for: its share of
/// [`SAMPLES_PER_WINDOW`] per second, at least [`MIN_SAMPLES`].
pub(super) fn samples_for(len: u64) -> u64 {
    (SAMPLES_PER_WINDOW.saturating_mul(len) / 1_000_000_000).clamp(MIN_SAMPLES, SAMPLES_PER_WINDOW)
}

/// An RTT-scaled window lasts this many times the last window's RTT:
/// long enough that most of its calls were admitted under the limit the
/// last window set (Netflix concurrency-limits scales its window with the
/// RTT too, at 2×; Envoy samples every 100 ms).
pub(super) const WINDOW_RTTS: u64 = 4;

/// The shortest RTT-scaled window, in nanoseconds (10 ms): at most 100
/// window closes a second, however fast the calls.
pub(super) const MIN_WINDOW: u64 = 10_000_000;

/// The longest RTT-scaled window, in nanoseconds (1 s, Netflix
/// `WindowedLimit`'s): also the first window's, before any RTT, and how
/// long a window with too few calls stays open before it is discarded.
pub(super) const MAX_WINDOW: u64 = 1_000_000_000;

/// An RTT-scaled window's length for a last window RTT of `rtt`
/// nanoseconds (0 for none).
pub(super) fn rtt_scaled(rtt: u64) -> u64 {
    if rtt == 0 {
        MAX_WINDOW
    } else {
        rtt.saturating_mul(WINDOW_RTTS)
            .clamp(MIN_WINDOW, MAX_WINDOW)
    }
}

/// The start time of a permit whose call's RTT is not sampled.
pub(super) const UNSAMPLED: u64 = u64::MAX;

/// One thread stripe's counts: running totals since the limiter was built,
/// and its share of the open window.
#[derive(Default)]
pub(super) struct Stripe {
    /// Calls admitted by threads on this stripe.
    pub(super) admitted: AtomicU64,
    /// Admitted calls on this stripe whose outcome was a failure.
    pub(super) failures: AtomicU64,
    /// Sampled successes in the window, counting those too fast to feed an
    /// RTT.
    measured: AtomicU32,
    rtt_sum: AtomicU64,
    samples: AtomicU32,
    drops: AtomicU32,
    max_in_flight: AtomicU32,
    /// RTT histogram, only for algorithms that ask for a percentile.
    histogram: Option<Box<[AtomicU32]>>,
}

impl Stripe {
    /// A stripe with a histogram if `percentile`.
    pub(super) fn new(percentile: bool) -> Self {
        Self {
            histogram: percentile.then(|| (0..BUCKETS).map(|_| AtomicU32::new(0)).collect()),
            ..Self::default()
        }
    }

    /// Notes a completed call that had `in_flight` calls in flight (itself
    /// included) when it was admitted.
    #[inline]
    pub(super) fn in_flight(&self, in_flight: u32) {
        if in_flight > self.max_in_flight.load(Ordering::Relaxed) {
            self.max_in_flight.fetch_max(in_flight, Ordering::Relaxed);
        }
    }

    /// A sampled success of `rtt` nanoseconds; fed to the window if at
    /// least `floor`.
    #[inline]
    pub(super) fn success(&self, rtt: u64, floor: u64) {
        self.measured.fetch_add(1, Ordering::Relaxed);
        if rtt >= floor {
            self.rtt_sum.fetch_add(rtt, Ordering::Relaxed);
            self.samples.fetch_add(1, Ordering::Relaxed);
            if let Some(h) = &self.histogram {
                h[hist::index(rtt)].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A failure: a drop in the window, and one more in the running total.
    #[inline]
    pub(super) fn failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

/// A closed window's aggregate, summed over the stripes.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Drained {
    /// Sampled successes, those under the sampling floor included.
    pub(super) measured: u64,
    /// The sum of the fed RTTs, in nanoseconds.
    pub(super) rtt_sum: u64,
    /// The fed RTTs.
    pub(super) samples: u32,
    pub(super) drops: u32,
    pub(super) max_in_flight: u32,
}

impl Drained {
    /// Every call the window holds: fed RTTs and drops.
    pub(super) fn count(&self) -> u32 {
        self.samples.saturating_add(self.drops)
    }

    /// The mean fed RTT, 0 without one.
    pub(super) fn mean(&self) -> u64 {
        if self.samples == 0 {
            0
        } else {
            self.rtt_sum / u64::from(self.samples)
        }
    }
}

/// The calls the open window holds so far (fed RTTs and drops) and their
/// mean RTT in nanoseconds (0 for none), leaving it open.
pub(super) fn so_far(stripes: &[Padded<Stripe>]) -> (u32, u64) {
    let (mut samples, mut drops, mut sum) = (0u32, 0u32, 0u64);
    for s in stripes {
        samples = samples.saturating_add(s.0.samples.load(Ordering::Relaxed));
        drops = drops.saturating_add(s.0.drops.load(Ordering::Relaxed));
        sum = sum.saturating_add(s.0.rtt_sum.load(Ordering::Relaxed));
    }
    let mean = if samples == 0 {
        0
    } else {
        sum / u64::from(samples)
    };
    (samples.saturating_add(drops), mean)
}

/// Empties the stripes' window accumulators (not their histograms).
pub(super) fn drain(stripes: &[Padded<Stripe>]) -> Drained {
    let mut d = Drained::default();
    for s in stripes {
        let s = &s.0;
        d.measured += u64::from(s.measured.swap(0, Ordering::Relaxed));
        d.rtt_sum = d
            .rtt_sum
            .saturating_add(s.rtt_sum.swap(0, Ordering::Relaxed));
        d.samples = d
            .samples
            .saturating_add(s.samples.swap(0, Ordering::Relaxed));
        d.drops = d.drops.saturating_add(s.drops.swap(0, Ordering::Relaxed));
        d.max_in_flight = d
            .max_in_flight
            .max(s.max_in_flight.swap(0, Ordering::Relaxed));
    }
    d
}

/// Empties the stripes' histograms and returns their `p` percentile
/// (`0 < p ≤ 1`), the midpoint of its bucket, in nanoseconds (`None` when
/// they held no RTT).
pub(super) fn take_percentile(stripes: &[Padded<Stripe>], p: f64) -> Option<u64> {
    let mut merged = [0u64; BUCKETS];
    for s in stripes {
        if let Some(h) = &s.0.histogram {
            for (m, b) in merged.iter_mut().zip(h.iter()) {
                *m += u64::from(b.swap(0, Ordering::Relaxed));
            }
        }
    }
    let (upper, _) = hist::percentile_of(|i| merged[i], p * 100.0)?;
    Some(hist::midpoint(hist::index(upper)))
}

/// The next window's sampling mask, from this window's sampled calls and
/// mask: every call at low rates, else the fewest (one in a power of two)
/// that keep about `target` samples.
pub(super) fn next_sample_mask(measured: u64, mask: u32, target: u64) -> u32 {
    let calls = measured * (u64::from(mask) + 1);
    if calls < 2 * target {
        0
    } else {
        let every = (calls / target).min(1 << 16);
        (1u32 << (63 - every.leading_zeros())) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_merged_stripes_and_empty_them() {
        let stripes: Vec<_> = (0..2).map(|_| Padded(Stripe::new(true))).collect();
        // 1..=100 ms, alternating stripes.
        for ms in 1..=100u64 {
            stripes[(ms % 2) as usize].0.success(ms * 1_000_000, 0);
        }
        let p50 = take_percentile(&stripes, 0.5).unwrap() as f64;
        assert!((p50 / 50e6 - 1.0).abs() <= 0.0625, "p50 {p50}");
        assert_eq!(take_percentile(&stripes, 0.5), None, "emptied");
        for ms in 1..=100u64 {
            stripes[0].0.success(ms * 1_000_000, 0);
        }
        let p99 = take_percentile(&stripes, 0.99).unwrap() as f64;
        assert!((p99 / 99e6 - 1.0).abs() <= 0.0625, "p99 {p99}");
        // Under the floor: measured, not fed.
        stripes[0].0.success(10, 100);
        assert_eq!(take_percentile(&stripes, 0.5), None);
        let d = drain(&stripes);
        assert_eq!((d.measured, d.samples), (201, 200));
    }

    #[test]
    fn the_sample_mask_keeps_about_a_thousand_rtts_per_window() {
        let n = SAMPLES_PER_WINDOW;
        assert_eq!(next_sample_mask(2 * n - 1, 0, n), 0);
        assert_eq!(next_sample_mask(3_000, 0, n), 1);
        // 1,500 sampled at one in two: 3,000 calls again.
        assert_eq!(next_sample_mask(1_500, 1, n), 1);
        assert_eq!(next_sample_mask(1_000_000, 0, n), 511);
        assert_eq!(next_sample_mask(u64::from(u32::MAX), 0, n), (1 << 16) - 1);
        // A 10 ms window aims for 128 samples, a 1 s one for 1,024.
        assert_eq!(samples_for(MIN_WINDOW), MIN_SAMPLES);
        assert_eq!(samples_for(MAX_WINDOW), n);
        assert_eq!(next_sample_mask(10_000, 0, samples_for(MIN_WINDOW)), 63);
    }
}
