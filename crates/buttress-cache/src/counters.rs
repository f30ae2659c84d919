//! The cache's counters (a cell per thread where the hit path counts,
//! plain atomics elsewhere; published by `telemetry.rs`) and their
//! public snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::Evictions;

use buttress_core::stripe::PerThread;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: PerThread,
    pub(crate) stale_served: PerThread,
    pub(crate) misses: AtomicU64,
    pub(crate) bypassed: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) refreshes_dropped: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) load_failures: AtomicU64,
    pub(crate) load_nanos: AtomicU64,
    pub(crate) stale_if_error: AtomicU64,
    pub(crate) oversized: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) errors_served: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    /// Loads running now (see [`CacheSnapshot::loads_in_flight`]).
    pub(crate) loads_running: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A snapshot of a cache's counters, from
/// [`Cache::snapshot`](crate::Cache::snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheSnapshot {
    /// Requests answered with a fresh entry, or with a cached error
    /// (those are also counted in [`errors_served`](Self::errors_served)).
    pub hits: u64,
    /// Requests answered with a stale entry while it is refreshed
    /// (stale-while-revalidate).
    pub stale_served: u64,
    /// Requests that found no servable fresh entry and waited for a load
    /// (their own or a coalesced one).
    pub misses: u64,
    /// Requests whose key extractor returned `None`: sent to the backend,
    /// not cached.
    pub bypassed: u64,
    /// Misses that waited for another caller's load instead of calling the
    /// backend.
    pub coalesced_waiters: u64,
    /// Background refreshes started (stale-while-revalidate and XFetch).
    pub refreshes: u64,
    /// Refresh results dropped because the entry changed (or was
    /// invalidated) while they ran.
    pub refreshes_dropped: u64,
    /// Backend calls made by loads and refreshes.
    pub loads: u64,
    /// Loads that failed: an error, or a response, that the layer's
    /// [classifier](crate::CacheLayer::classifier) calls a failure (by
    /// default every error and no response), and loads that timed out.
    pub load_failures: u64,
    /// Total time spent in loads.
    pub load_time: Duration,
    /// Failed loads answered with a stale entry (stale-if-error).
    pub stale_if_error: u64,
    /// Responses not cached because they weighed more than the bound.
    pub oversized: u64,
    /// Invalidation calls (by key, tag or predicate).
    pub invalidations: u64,
    /// Requests answered with a cached error (see
    /// [`CacheLayer::cache_errors`](crate::CacheLayer::cache_errors)).
    pub errors_served: u64,
    /// Loads dropped at the [`load_timeout`](crate::CacheBuilder::load_timeout),
    /// and callers that stopped waiting for another caller's load at
    /// theirs (each of them also counted in
    /// [`load_failures`](Self::load_failures) or answered with
    /// [`LoadTimedOut`](crate::LoadTimedOut), or with a stale value).
    pub timeouts: u64,
    /// Loads running now, in requests and in background refreshes: a
    /// load is counted from its first step (readying the backend) until
    /// it has finished, timed out, been cancelled or been dropped. Zero
    /// when the cache is idle.
    pub loads_in_flight: u64,
    /// Keys with a load in flight that a request would join (coalescing).
    /// Zero when the cache is idle; an invalidation detaches the loads of
    /// the keys it drops, so this can be lower than
    /// [`loads_in_flight`](Self::loads_in_flight), and a background
    /// refresh is counted here from when it is spawned, there only from
    /// its first step, so this can briefly be higher.
    pub keys_loading: u64,
    /// Evictions the store made on its own.
    pub evictions: Evictions,
    /// How many (tag, key) pairs the tag index holds (see
    /// [`Cache::invalidate_tag`](crate::Cache::invalidate_tag)). Evicted,
    /// replaced and expired entries are swept out of it as it grows.
    pub tag_index_pairs: u64,
}

impl CacheSnapshot {
    /// `(hits + stale served) / (hits + stale served + misses)`, 0 before
    /// any request. Bypassed requests count nowhere.
    #[must_use]
    pub fn hit_ratio(&self) -> f64 {
        let served = self.hits + self.stale_served;
        let total = served + self.misses;
        if total == 0 {
            0.0
        } else {
            served as f64 / total as f64
        }
    }
}

impl Counters {
    pub(crate) fn snapshot(
        &self,
        evictions: Evictions,
        tag_index_pairs: u64,
        keys_loading: u64,
    ) -> CacheSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheSnapshot {
            hits: self.hits.sum(),
            stale_served: self.stale_served.sum(),
            misses: get(&self.misses),
            bypassed: get(&self.bypassed),
            coalesced_waiters: get(&self.coalesced),
            refreshes: get(&self.refreshes),
            refreshes_dropped: get(&self.refreshes_dropped),
            loads: get(&self.loads),
            load_failures: get(&self.load_failures),
            load_time: Duration::from_nanos(get(&self.load_nanos)),
            stale_if_error: get(&self.stale_if_error),
            oversized: get(&self.oversized),
            invalidations: get(&self.invalidations),
            errors_served: get(&self.errors_served),
            timeouts: get(&self.timeouts),
            loads_in_flight: get(&self.loads_running),
            keys_loading,
            evictions,
            tag_index_pairs,
        }
    }
}
