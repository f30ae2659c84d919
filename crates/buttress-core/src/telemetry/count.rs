//! [`Count`]: a running total that threads sharing a layer add to without
//! sharing a cache line.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::stripe::{Padded, stripes, thread_stripe};

/// A running total kept in per-thread stripes: each thread adds to a
/// stripe of its own (one uncontended atomic add, no allocation, no lock),
/// [`get`](Self::get) sums them. What the hot paths count with; the sums
/// reach the recorder when the layer [publishes](super::Publish).
#[derive(Debug)]
pub struct Count {
    cells: Box<[Padded<AtomicU64>]>,
}

impl Default for Count {
    fn default() -> Self {
        Self::new()
    }
}

impl Count {
    /// A total at zero.
    #[must_use]
    pub fn new() -> Self {
        Self {
            cells: (0..stripes()).map(|_| Padded(AtomicU64::new(0))).collect(),
        }
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        let i = thread_stripe() & (self.cells.len() - 1);
        // `stripes()` is a power of two, so the mask keeps `i` in bounds.
        if let Some(cell) = self.cells.get(i) {
            cell.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Adds one.
    #[inline]
    pub fn incr(&self) {
        self.add(1);
    }

    /// The total.
    #[must_use]
    pub fn get(&self) -> u64 {
        self.cells
            .iter()
            .fold(0u64, |sum, c| sum.wrapping_add(c.0.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn threads_add_up() {
        let c = Arc::new(Count::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || (0..1000).for_each(|_| c.incr()))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        c.add(5);
        assert_eq!(c.get(), 4005);
    }
}
