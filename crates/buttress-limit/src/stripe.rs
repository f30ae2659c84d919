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

/// This thread's stripe number (before masking), assigned round-robin the
/// first time the thread takes a permit, and the thread's call count
/// (wrapping), which decides which calls have their RTT sampled.
#[inline]
pub(crate) fn stripe_and_tick() -> (usize, u32) {
    use std::cell::Cell;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static LOCAL: Cell<(usize, u32)> = const { Cell::new((usize::MAX, 0)) };
    }
    LOCAL.with(|l| {
        let (mut stripe, tick) = l.get();
        if stripe == usize::MAX {
            stripe = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        let tick = tick.wrapping_add(1);
        l.set((stripe, tick));
        (stripe, tick)
    })
}
