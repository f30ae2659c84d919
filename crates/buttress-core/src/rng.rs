//! A small, seedable, lock-free random number generator for jitter.
//!
//! Jitter needs cheap, decent randomness shared across threads, and tests
//! need it exact. [`FastRng`] is SplitMix64 (Steele, Lea, Flood 2014) over an
//! atomic counter: each draw is one `fetch_add` and a few multiplies, any
//! thread may draw, and a seeded generator gives the same sequence every run
//! (when draws are not interleaved by several threads).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// A thread-safe SplitMix64 generator. Not cryptographic.
///
/// ```
/// use buttress_core::rng::FastRng;
///
/// let a = FastRng::seeded(7);
/// let b = FastRng::seeded(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// let x = a.next_f64();
/// assert!((0.0..1.0).contains(&x));
/// ```
#[derive(Debug)]
pub struct FastRng {
    state: AtomicU64,
}

impl FastRng {
    /// A generator that yields the same sequence for the same seed.
    #[must_use]
    pub const fn seeded(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// A generator seeded from the process's hash randomness and the
    /// address of a stack value (different in each process and each call).
    #[must_use]
    pub fn from_entropy() -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        let marker = 0u8;
        h.write_usize(std::ptr::addr_of!(marker) as usize);
        Self::seeded(h.finish())
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`.
    #[inline]
    pub fn next_f64(&self) -> f64 {
        // 53 random bits into the mantissa.
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform float in `(0, 1]`: safe to pass to `ln`.
    #[inline]
    pub fn next_f64_nonzero(&self) -> f64 {
        1.0 - self.next_f64()
    }
}

impl Default for FastRng {
    fn default() -> Self {
        Self::from_entropy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seeded_is_repeatable_and_seeds_differ() {
        let a = FastRng::seeded(1);
        let b = FastRng::seeded(1);
        let c = FastRng::seeded(2);
        let sa: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let sb: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let sc: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(sa, sb);
        assert_ne!(sa, sc);
    }

    #[test]
    fn floats_are_roughly_uniform() {
        let r = FastRng::seeded(42);
        let n = 100_000;
        let mean = (0..n).map(|_| r.next_f64()).sum::<f64>() / f64::from(n);
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    }

    proptest! {
        #[test]
        fn floats_stay_in_range(seed in any::<u64>()) {
            let r = FastRng::seeded(seed);
            for _ in 0..64 {
                let x = r.next_f64();
                prop_assert!((0.0..1.0).contains(&x));
                let y = r.next_f64_nonzero();
                prop_assert!(y > 0.0 && y <= 1.0);
            }
        }
    }
}
