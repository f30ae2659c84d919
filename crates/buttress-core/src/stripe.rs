//! Per-thread stripes: how buttress layers keep threads that share one
//! layer off each other's cache lines.
//!
//! A counter every call updates becomes a bottleneck the moment two threads
//! share it: each write pulls the cache line away from the other core. The
//! layers split such counters into [`stripes()`] copies, each on its own
//! [`Padded`] lines, and each thread writes the copy at
//! [`thread_stripe()`] (masked by the stripe count); readers sum the copies.

use std::cell::{Cell, RefCell};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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

thread_local! {
    /// This thread's stripe number (`usize::MAX` until assigned).
    static LOCAL: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn assign() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// This thread's stripe number, before masking: assigned round-robin the
/// first time a thread asks, then one thread-local read.
#[inline]
#[must_use]
pub fn thread_stripe() -> usize {
    LOCAL.with(|l| {
        let stripe = l.get();
        if stripe != usize::MAX {
            return stripe;
        }
        let stripe = assign();
        l.set(stripe);
        stripe
    })
}

/// A counter that each thread adds to with a plain load and store of a
/// cell of its own: no read-modify-write, so no locked instruction (which
/// waits for every earlier store to drain) and no cache line shared with
/// another thread, whatever the number of threads.
///
/// Each thread that counts gets a cell, registered once in the counter's
/// list and kept in a thread-local table keyed by the counter's id.
/// Readers sum the cells. A cell whose thread has exited (its table was
/// dropped) is folded into `retired`; a table entry whose counter was
/// dropped is pruned when that thread next registers a cell.
#[derive(Debug)]
pub struct PerThread {
    id: u64,
    cells: Mutex<Vec<Arc<AtomicU64>>>,
    /// The counts of cells whose thread has exited.
    retired: AtomicU64,
}

thread_local! {
    /// This thread's cells: (counter id, cell).
    static CELLS: RefCell<Vec<(u64, Arc<AtomicU64>)>> = const { RefCell::new(Vec::new()) };
}

impl Default for PerThread {
    fn default() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            cells: Mutex::new(Vec::new()),
            retired: AtomicU64::new(0),
        }
    }
}

impl PerThread {
    #[inline]
    /// Adds `n` to this thread's cell.
    pub fn add(&self, n: u64) {
        let counted = CELLS
            .try_with(|cells| {
                let Ok(cells) = cells.try_borrow() else {
                    return false;
                };
                for (id, cell) in cells.iter() {
                    if *id == self.id {
                        // Only this thread writes this cell.
                        cell.store(cell.load(Ordering::Relaxed) + n, Ordering::Relaxed);
                        return true;
                    }
                }
                false
            })
            .unwrap_or(false);
        if !counted {
            self.add_slow(n);
        }
    }

    #[cold]
    fn add_slow(&self, n: u64) {
        // Registers a cell for this thread; when the thread-local table is
        // gone (the thread is exiting) or busy, the count goes straight
        // to `retired`.
        let cell = Arc::new(AtomicU64::new(n));
        let registered = CELLS
            .try_with(|cells| {
                let Ok(mut cells) = cells.try_borrow_mut() else {
                    return false;
                };
                // Counters dropped since: only this table holds their cell.
                cells.retain(|(_, c)| Arc::strong_count(c) > 1);
                cells.push((self.id, Arc::clone(&cell)));
                true
            })
            .unwrap_or(false);
        if !registered {
            self.retired.fetch_add(n, Ordering::Relaxed);
            return;
        }
        let mut list = crate::sync::lock(&self.cells);
        self.fold_exited(&mut list);
        list.push(cell);
    }

    /// Moves the counts of exited threads' cells into `retired`.
    fn fold_exited(&self, list: &mut Vec<Arc<AtomicU64>>) {
        list.retain(|c| {
            if Arc::strong_count(c) > 1 {
                return true;
            }
            // The thread's table is gone: nobody writes this cell.
            self.retired
                .fetch_add(c.load(Ordering::Relaxed), Ordering::Relaxed);
            false
        });
    }

    /// The total over every thread, exited ones included.
    #[must_use]
    pub fn sum(&self) -> u64 {
        let mut list = crate::sync::lock(&self.cells);
        self.fold_exited(&mut list);
        self.retired.load(Ordering::Relaxed)
            + list.iter().map(|c| c.load(Ordering::Relaxed)).sum::<u64>()
    }
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

    #[test]
    fn per_thread_counts_survive_exited_threads_and_dropped_counters() {
        let a = Arc::new(PerThread::default());
        let b = PerThread::default();
        a.add(1);
        b.add(5);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let a = Arc::clone(&a);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        a.add(1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Four exited threads' cells are folded, none is lost.
        assert_eq!(a.sum(), 4001);
        assert_eq!(
            crate::sync::lock(&a.cells).len(),
            1,
            "only this thread's cell is left"
        );
        assert_eq!(b.sum(), 5);
        drop(b);
        // A new counter on this thread prunes the dropped one's cell.
        let c = PerThread::default();
        c.add(2);
        assert_eq!(CELLS.with(|cells| cells.borrow().len()), 2);
        assert_eq!((a.sum(), c.sum()), (4001, 2));
    }
}
