//! Per-thread stripes: threads sharing a limiter touch different cache
//! lines for their reference counts and window accumulators.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// 128 bytes: two cache lines, since adjacent-line prefetch pairs them on x86.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

/// How many stripes each limiter has: a power of two, about twice the
/// machine's parallelism, at most 64.
pub(crate) fn stripes() -> usize {
    static STRIPES: OnceLock<usize> = OnceLock::new();
    *STRIPES.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        (cpus * 2).next_power_of_two().min(64)
    })
}

/// This thread's stripe number (before masking), assigned round-robin.
#[inline]
pub(crate) fn thread_stripe() -> usize {
    use std::cell::Cell;
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
