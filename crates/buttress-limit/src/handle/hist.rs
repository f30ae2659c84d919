//! The window's RTT histogram, kept only for algorithms that ask for a
//! percentile ([`Limit::rtt_percentile`](crate::algorithm::Limit::rtt_percentile)):
//! log-linear, 8 buckets per power of two from 1 µs (2^10 ns) to about
//! 18 min (2^40 ns), so a bucket's midpoint is within 6.25 % of any RTT in
//! it. RTTs outside the range land in the end buckets.

const SUB: u32 = 8;
const MIN_EXP: u32 = 10;
const MAX_EXP: u32 = 40;
pub(super) const BUCKETS: usize = ((MAX_EXP - MIN_EXP) * SUB) as usize;

/// The bucket an RTT of `nanos` falls in.
#[inline]
pub(super) fn bucket(nanos: u64) -> usize {
    let nanos = nanos.clamp(1 << MIN_EXP, (1 << MAX_EXP) - 1);
    let exp = 63 - nanos.leading_zeros();
    let sub = ((nanos >> (exp - 3)) & u64::from(SUB - 1)) as u32;
    ((exp - MIN_EXP) * SUB + sub) as usize
}

/// The midpoint of bucket `i`, in nanoseconds.
pub(super) fn midpoint(i: usize) -> u64 {
    let i = i as u32;
    let exp = MIN_EXP + i / SUB;
    let sub = u64::from(i % SUB);
    let lo = (1u64 << exp) + (sub << (exp - 3));
    lo + (1u64 << (exp - 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_within_five_percent() {
        for nanos in [
            1_024u64,
            100_000,
            123_456,
            20_000_000,
            999_999_999,
            60_000_000_000,
        ] {
            let mid = midpoint(bucket(nanos)) as f64;
            let err = (mid - nanos as f64).abs() / nanos as f64;
            assert!(err <= 0.0625, "{nanos}: midpoint {mid}, error {err}");
        }
        let mut last = 0;
        for i in 0..BUCKETS {
            let m = midpoint(i);
            assert!(m > last);
            assert_eq!(bucket(m), i);
            last = m;
        }
    }
}
