//! The cache's metrics: the catalog, and the publication of its counts.
//!
//! A request never touches the recorder: hits and stale reads count in
//! per-thread cells, the rest in plain atomics, and the totals reach the
//! recorder when [`buttress_core::telemetry`] publishes them (every second
//! in the background, or on [`flush`](buttress_core::telemetry::flush)).
//! Only the load-time histogram is recorded where it happens, once per
//! load.

use buttress_core::telemetry::{Emit, MetricInfo, MetricKind, Publish, Unit};

use crate::handle::Shared;
use crate::store::Store;

const REQUESTS: &str = "buttress_cache_requests_total";
const ERRORS_SERVED: &str = "buttress_cache_errors_served_total";
const ENTRIES: &str = "buttress_cache_entries";
const WEIGHTED_SIZE: &str = "buttress_cache_weighted_size";
const TAG_INDEX_PAIRS: &str = "buttress_cache_tag_index_pairs";
const EVICTIONS: &str = "buttress_cache_evictions_total";
const LOADS: &str = "buttress_cache_loads_total";
const LOAD_FAILURES: &str = "buttress_cache_load_failures_total";
const LOAD_TIMEOUTS: &str = "buttress_cache_load_timeouts_total";
const LOADS_IN_FLIGHT: &str = "buttress_cache_loads_in_flight";
pub(crate) const LOAD_SECONDS: &str = "buttress_cache_load_seconds";
const COALESCED: &str = "buttress_cache_coalesced_waiters_total";
const REFRESHES: &str = "buttress_cache_refreshes_total";
const REFRESHES_DROPPED: &str = "buttress_cache_refreshes_dropped_total";
const STALE_IF_ERROR: &str = "buttress_cache_stale_if_error_total";
const OVERSIZED: &str = "buttress_cache_oversized_total";
const INVALIDATIONS: &str = "buttress_cache_invalidations_total";

const fn counter(name: &'static str, help: &'static str) -> MetricInfo {
    MetricInfo {
        name,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help,
    }
}

/// Every metric a cache emits, each labelled `name` with the cache's
/// [name](crate::Builder::name).
pub static METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: REQUESTS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["outcome"],
        help: "Requests by outcome: hit (a fresh entry or a cached error), stale (served while a refresh runs), miss (waited for a load), bypass (no key).",
    },
    counter(
        ERRORS_SERVED,
        "Requests answered with a cached error (also counted as hits).",
    ),
    MetricInfo {
        name: ENTRIES,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        labels: &[],
        help: "Entries the cache's store holds.",
    },
    MetricInfo {
        name: WEIGHTED_SIZE,
        kind: MetricKind::Gauge,
        unit: Unit::Bytes,
        labels: &[],
        help: "Total weight of the entries the store holds, as the weigher estimates it.",
    },
    MetricInfo {
        name: TAG_INDEX_PAIRS,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        labels: &[],
        help: "(tag, key) pairs the tag index holds.",
    },
    MetricInfo {
        name: EVICTIONS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["cause"],
        help: "Entries the store evicted on its own, by cause: size (the weight bound) or expired (past their stale bound).",
    },
    counter(
        LOADS,
        "Backend calls made by loads and background refreshes.",
    ),
    counter(
        LOAD_FAILURES,
        "Loads that failed: an error or a response the classifier calls a failure, or a timeout.",
    ),
    counter(
        LOAD_TIMEOUTS,
        "Loads dropped at the load timeout, and callers that stopped waiting for another caller's load at theirs.",
    ),
    MetricInfo {
        name: LOADS_IN_FLIGHT,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        labels: &[],
        help: "Loads running now, in requests and in background refreshes.",
    },
    MetricInfo {
        name: LOAD_SECONDS,
        kind: MetricKind::Histogram,
        unit: Unit::Seconds,
        labels: &[],
        help: "How long each load took, backend call and store write (recorded once per load).",
    },
    counter(
        COALESCED,
        "Misses that waited for another caller's load instead of calling the backend.",
    ),
    counter(
        REFRESHES,
        "Background refreshes started (stale-while-revalidate and XFetch).",
    ),
    counter(
        REFRESHES_DROPPED,
        "Refresh results dropped because the entry changed or was invalidated while they ran.",
    ),
    counter(
        STALE_IF_ERROR,
        "Failed loads answered with a stale entry (stale-if-error).",
    ),
    counter(
        OVERSIZED,
        "Responses not cached because they weighed more than max_entry_bytes.",
    ),
    counter(
        INVALIDATIONS,
        "Invalidation calls (by key, tag or predicate).",
    ),
];

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
