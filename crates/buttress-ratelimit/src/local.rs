//! The in-process store: one theoretical arrival time (a `u64`) per key in
//! a bounded `quick_cache` map.
//!
//! Bounded: at most `max_keys` keys are tracked; past that the map evicts
//! by its CLOCK-Pro policy, which keeps the keys in use and drops the one-off
//! ones, so a flood of distinct keys cannot grow memory. A key whose
//! arrival time has passed is the same as an absent key, so evicting an
//! idle key loses nothing; evicting a key still within its burst window
//! gives that key a fresh burst (the price of the bound).

use std::hash::Hash;

use buttress_core::time::Origin;
use quick_cache::sync::{Cache, EntryAction, EntryResult};

use crate::quota::{Quota, gcra};

pub(crate) struct Local<K> {
    map: Cache<K, u64>,
    origin: Origin,
}

impl<K: Eq + Hash + Clone> Local<K> {
    pub(crate) fn new(max_keys: usize, origin: Origin) -> Self {
        Self {
            map: Cache::new(max_keys),
            origin,
        }
    }

    pub(crate) fn now(&self) -> u64 {
        self.origin.elapsed_nanos()
    }

    /// One GCRA decision for `key` at `now` (the map's shard is locked for
    /// the few instructions of the decision, so concurrent requests for a
    /// key are judged one after the other).
    pub(crate) fn check(&self, key: &K, quota: &Quota, now: u64) -> Result<u64, u64> {
        let stored = self.map.entry(key, None, |_, tat| {
            let r = gcra(*tat, now, quota);
            if let Ok(next) = r {
                *tat = next;
            }
            EntryAction::Retain(r)
        });
        match stored {
            EntryResult::Retained(r) => r,
            EntryResult::Vacant(guard) => {
                let r = gcra(0, now, quota);
                if let Ok(next) = r {
                    let _ = guard.insert(next);
                }
                r
            }
            // Not asked for (the callback only retains; no timeout given):
            // judge the key as new rather than fail a request.
            EntryResult::Removed(..) | EntryResult::Replaced(..) | EntryResult::Timeout => {
                gcra(0, now, quota)
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.map.capacity()
    }
}
