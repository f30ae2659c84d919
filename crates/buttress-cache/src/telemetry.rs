//! The cache's metrics: their names and the catalog ([`METRICS`]). The
//! handle publishes its counts under these names (`handle/publish.rs`).

use buttress_core::telemetry::{MetricInfo, MetricKind, Unit};

pub(crate) const REQUESTS: &str = "buttress_cache_requests_total";
pub(crate) const ERRORS_SERVED: &str = "buttress_cache_errors_served_total";
pub(crate) const ENTRIES: &str = "buttress_cache_entries";
pub(crate) const WEIGHTED_SIZE: &str = "buttress_cache_weighted_size";
pub(crate) const TAG_INDEX_PAIRS: &str = "buttress_cache_tag_index_pairs";
pub(crate) const EVICTIONS: &str = "buttress_cache_evictions_total";
pub(crate) const LOADS: &str = "buttress_cache_loads_total";
pub(crate) const LOAD_FAILURES: &str = "buttress_cache_load_failures_total";
pub(crate) const LOAD_TIMEOUTS: &str = "buttress_cache_load_timeouts_total";
pub(crate) const LOADS_IN_FLIGHT: &str = "buttress_cache_loads_in_flight";
pub(crate) const LOAD_SECONDS: &str = "buttress_cache_load_seconds";
pub(crate) const COALESCED: &str = "buttress_cache_coalesced_waiters_total";
pub(crate) const REFRESHES: &str = "buttress_cache_refreshes_total";
pub(crate) const REFRESHES_DROPPED: &str = "buttress_cache_refreshes_dropped_total";
pub(crate) const STALE_IF_ERROR: &str = "buttress_cache_stale_if_error_total";
pub(crate) const OVERSIZED: &str = "buttress_cache_oversized_total";
pub(crate) const INVALIDATIONS: &str = "buttress_cache_invalidations_total";

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
/// [name](crate::CacheBuilder::name).
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
