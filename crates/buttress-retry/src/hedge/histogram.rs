//! A lock-free log-linear latency histogram.

use std::sync::atomic::{AtomicU64, Ordering};

/// Values below this are their own bucket.
const EXACT: u64 = 16;
/// Sub-buckets per power of two (3 bits: at most 12.5 % relative error).
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Buckets for every `u64`.
pub(crate) const BUCKETS: usize = (EXACT + (63 - 4 + 1) * SUB) as usize;

/// Counts of nanosecond values in log-linear buckets. Recording is one
/// `fetch_add`; reading a percentile scans the buckets.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(crate) fn index(v: u64) -> usize {
        if v < EXACT {
            return v as usize;
        }
        let e = 63 - u64::from(v.leading_zeros());
        let m = (v >> (e - u64::from(SUB_BITS))) & (SUB - 1);
        (EXACT + (e - 4) * SUB + m) as usize
    }

    /// The largest value in bucket `i`.
    pub(crate) fn upper(i: usize) -> u64 {
        let i = i as u64;
        if i < EXACT {
            return i;
        }
        let e = (i - EXACT) / SUB + 4;
        let m = (i - EXACT) % SUB;
        let shift = e - u64::from(SUB_BITS);
        ((SUB + m) << shift).saturating_add((1u64 << shift) - 1)
    }

    #[inline]
    pub(crate) fn record(&self, nanos: u64) {
        self.buckets[Self::index(nanos)].fetch_add(1, Ordering::Relaxed);
    }

    /// The `percentile` (0–100) as the upper bound of its bucket, and the
    /// number of values; `None` when empty.
    pub(crate) fn percentile(&self, percentile: f64) -> Option<(u64, u64)> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
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
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some((Self::upper(i), total));
            }
        }
        Some((u64::MAX, total))
    }

    /// Halves every count, so old latencies fade.
    pub(crate) fn decay(&self) {
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
        // 95 ms, within the bucket's 12.5 %.
        assert!((95_000_000..=95_000_000 * 9 / 8).contains(&p95), "{p95}");
        let (p50, _) = h.percentile(50.0).unwrap();
        assert!((50_000_000..=50_000_000 * 9 / 8).contains(&p50), "{p50}");
        h.decay();
        assert!(h.percentile(50.0).unwrap().1 <= 50, "halved");
    }

    proptest! {
        #[test]
        fn every_value_is_within_its_bucket(v in any::<u64>()) {
            let i = Histogram::index(v);
            prop_assert!(i < BUCKETS);
            prop_assert!(v <= Histogram::upper(i));
            if i > 0 {
                prop_assert!(v > Histogram::upper(i - 1));
            }
        }
    }
}
