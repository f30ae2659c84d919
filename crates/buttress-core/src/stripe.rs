//! Per-thread stripes: how buttress layers keep threads that share one
//! layer off each other's cache lines.
//!
//! A counter every call updates becomes a bottleneck the moment two threads
//! share it: each write pulls the cache line away from the other core. The
//! layers split such counters into [`stripes()`] copies, each on its own
//! [`Padded`] lines, and each thread writes the copy at
//! [`thread_stripe()`] (masked by the stripe count); readers sum the copies.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A value on 128 bytes of its own: two cache lines, since adjacent-line
/// prefetch pairs them on x86.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

/// How many stripes a striped structure should have: a power of two, about
/// twice the machine's parallelism (so threads rarely share one), at most 64.
#[must_use]
pub fn stripes() -> usize {
    static STRIPES: OnceLock<usize> = OnceLock::new();
    *STRIPES.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        (cpus * 2).next_power_of_two().min(64)
    })
}

/// This thread's stripe number, before masking: assigned round-robin the
/// first time a thread asks, then one thread-local read.
#[inline]
#[must_use]
pub fn thread_stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT.fetch_add(1, Ordering::Relaxed);
        s.set(v);
        v
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_are_a_power_of_two_and_threads_differ() {
        let n = stripes();
        assert!(n.is_power_of_two() && n <= 64);
        let here = thread_stripe();
        assert_eq!(here, thread_stripe(), "stable within a thread");
        let there = std::thread::spawn(thread_stripe).join().unwrap();
        assert_ne!(here, there, "threads get their own stripe numbers");
        assert_eq!(std::mem::align_of::<Padded<u8>>(), 128);
    }
}
