//! Per-thread stripes: threads sharing a limiter touch different cache
//! lines for their reference counts and window accumulators.

use std::sync::atomic::{AtomicUsize, Ordering};

pub(crate) use buttress_core::stripe::{Padded, stripes};

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
