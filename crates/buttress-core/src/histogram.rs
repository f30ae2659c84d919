//! A log-linear histogram of `u64` values (nanoseconds, in practice): the
//! one the hedge's percentile delay and the limit's RTT percentile share.
//!
//! Values below 16 have a bucket each; above, each power of two is split
//! into 8 buckets, so a bucket's upper bound is at most 12.5 % above any
//! value in it and its midpoint within 6.25 %. [`BUCKETS`] buckets cover
//! every `u64`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Values below this are their own bucket.
const EXACT: u64 = 16;
/// Sub-buckets per power of two: 3 bits.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;

/// Buckets for every `u64`.
pub const BUCKETS: usize = (EXACT + (63 - 4 + 1) * SUB) as usize;

/// The bucket `v` falls in, below [`BUCKETS`].
#[inline]
#[must_use]
pub const fn index(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let e = 63 - v.leading_zeros() as u64;
    let m = (v >> (e - SUB_BITS as u64)) & (SUB - 1);
    (EXACT + (e - 4) * SUB + m) as usize
}

/// The smallest value in bucket `i`.
#[must_use]
pub const fn lower(i: usize) -> u64 {
    let i = i as u64;
    if i < EXACT {
        return i;
    }
    let e = (i - EXACT) / SUB + 4;
    let m = (i - EXACT) % SUB;
    (SUB + m) << (e - SUB_BITS as u64)
}

/// The largest value in bucket `i`.
#[must_use]
pub const fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < EXACT {
        return i;
    }
    let e = (i - EXACT) / SUB + 4;
    let m = (i - EXACT) % SUB;
    let shift = e - SUB_BITS as u64;
    ((SUB + m) << shift).saturating_add((1u64 << shift) - 1)
}

/// The middle of bucket `i`: within 6.25 % of any value in it.
#[must_use]
pub const fn midpoint(i: usize) -> u64 {
    let (lo, hi) = (lower(i), upper(i));
    lo + (hi - lo) / 2
}

/// The upper bound of the bucket holding the `percentile` (0–100) of the
/// values counted in `counts` (one count per bucket, [`BUCKETS`] of them),
/// and how many values there are; `None` when there are none. Reads
/// `counts` twice and allocates nothing.
pub fn percentile_of(counts: impl Fn(usize) -> u64, percentile: f64) -> Option<(u64, u64)> {
    let total: u64 = (0..BUCKETS).map(&counts).sum();
    if total == 0 {
        return None;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((percentile / 100.0) * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for i in 0..BUCKETS {
        seen += counts(i);
        if seen >= rank {
            return Some((upper(i), total));
        }
    }
    // Counts grew between the two reads: the top bucket holds the rank.
    Some((u64::MAX, total))
}

/// A histogram many threads record into: one relaxed `fetch_add` per
/// value, no lock, no allocation after construction.
#[derive(Debug)]
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    #[must_use]
    pub fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts `v`.
    #[inline]
    pub fn record(&self, v: u64) {
        if let Some(b) = self.buckets.get(index(v)) {
            b.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The `percentile` (0–100) as the upper bound of its bucket, and the
    /// number of values; `None` when empty. Allocates nothing.
    #[must_use]
    pub fn percentile(&self, percentile: f64) -> Option<(u64, u64)> {
        percentile_of(
            |i| self.buckets.get(i).map_or(0, |b| b.load(Ordering::Relaxed)),
            percentile,
        )
    }

    /// Halves every count, so old values fade.
    pub fn decay(&self) {
        for b in &*self.buckets {
            let _ = b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| Some(c / 2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn percentiles() {
        let h = Histogram::new();
        for v in 1..=100u64 {
            h.record(v * 1_000_000);
        }
        let (p95, n) = h.percentile(95.0).unwrap();
        assert_eq!(n, 100);
        assert!((95_000_000..=95_000_000 * 9 / 8).contains(&p95), "{p95}");
        let (p50, _) = h.percentile(50.0).unwrap();
        assert!((50_000_000..=50_000_000 * 9 / 8).contains(&p50), "{p50}");
        h.decay();
        assert!(h.percentile(50.0).unwrap().1 <= 50, "halved");
        assert_eq!(Histogram::new().percentile(50.0), None);
    }

    proptest! {
        #[test]
        fn every_value_is_within_its_bucket(v in any::<u64>()) {
            let i = index(v);
            prop_assert!(i < BUCKETS);
            prop_assert!(lower(i) <= v && v <= upper(i));
            if i > 0 {
                prop_assert!(v > upper(i - 1));
            }
            let mid = midpoint(i);
            prop_assert!(lower(i) <= mid && mid <= upper(i));
            if v >= EXACT {
                prop_assert!(mid.abs_diff(v) as f64 <= v as f64 * 0.0625 + 1.0);
            }
        }
    }
}
