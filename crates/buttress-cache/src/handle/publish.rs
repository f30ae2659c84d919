//! Publication of the cache's counts: a request never touches the
//! recorder; hits and stale reads count in per-thread cells, the rest in
//! plain atomics, and [`buttress_core::telemetry`] reads the totals here
//! (every second in the background, or on
//! [`flush`](buttress_core::telemetry::flush)). Only the load-time
//! histogram is recorded where it happens, once per load.

use buttress_core::telemetry::{Emit, Publish};

use super::Shared;
use crate::store::Store;
use crate::telemetry::{
    COALESCED, ENTRIES, ERRORS_SERVED, EVICTIONS, INVALIDATIONS, LOAD_FAILURES, LOAD_TIMEOUTS,
    LOADS, LOADS_IN_FLIGHT, OVERSIZED, REFRESHES, REFRESHES_DROPPED, REQUESTS, STALE_IF_ERROR,
    TAG_INDEX_PAIRS, WEIGHTED_SIZE,
};

impl<K, V, St> Publish for Shared<K, V, St>
where
    K: Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    St: Store<K, V>,
{
    fn publish(&self, out: &mut Emit<'_>) {
        let c = self.counters.snapshot(
            self.store.evictions(),
            self.tag_index_pairs(),
            // Not published (loads in flight says more): no lock taken.
            0,
        );
        for (outcome, n) in [
            ("hit", c.hits),
            ("stale", c.stale_served),
            ("miss", c.misses),
            ("bypass", c.bypassed),
        ] {
            out.counter_with(REQUESTS, &[("outcome", outcome)], n);
        }
        out.counter(ERRORS_SERVED, c.errors_served);
        out.gauge(ENTRIES, self.store.len() as f64);
        out.gauge(WEIGHTED_SIZE, self.store.weighted_size() as f64);
        out.gauge(TAG_INDEX_PAIRS, c.tag_index_pairs as f64);
        out.counter_with(EVICTIONS, &[("cause", "size")], c.evictions.size);
        out.counter_with(EVICTIONS, &[("cause", "expired")], c.evictions.expired);
        out.counter(LOADS, c.loads);
        out.counter(LOAD_FAILURES, c.load_failures);
        out.counter(LOAD_TIMEOUTS, c.timeouts);
        out.gauge(LOADS_IN_FLIGHT, c.loads_in_flight as f64);
        out.counter(COALESCED, c.coalesced_waiters);
        out.counter(REFRESHES, c.refreshes);
        out.counter(REFRESHES_DROPPED, c.refreshes_dropped);
        out.counter(STALE_IF_ERROR, c.stale_if_error);
        out.counter(OVERSIZED, c.oversized);
        out.counter(INVALIDATIONS, c.invalidations);
    }
}
