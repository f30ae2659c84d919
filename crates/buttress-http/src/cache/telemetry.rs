//! The metrics of [`HttpCache`](crate::HttpCache): their names and the
//! catalog ([`HTTP_CACHE_METRICS`]).

use buttress_core::telemetry::{MetricInfo, MetricKind, Unit};

/// The layer kind names are registered under.
pub(crate) const KIND: &str = "http_cache";

pub(crate) const LOOKUPS: &str = "buttress_http_cache_lookups_total";
pub(crate) const REVALIDATIONS: &str = "buttress_http_cache_revalidations_total";
pub(crate) const STORES: &str = "buttress_http_cache_stores_total";
pub(crate) const INVALIDATIONS: &str = "buttress_http_cache_invalidations_total";

/// Every metric an [`HttpCache`](crate::HttpCache) emits, each labelled
/// `name` with its [name](crate::HttpCacheBuilder::name).
pub static HTTP_CACHE_METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: LOOKUPS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["outcome"],
        help: "Requests through the HTTP cache, by outcome: hit (served fresh), stale (served stale: max-stale, stale-while-revalidate or stale-if-error), miss (nothing stored matched; forwarded), revalidate (a stored response validated upstream), bypass (not a cacheable request: another method, no effective URI), unsatisfiable (only-if-cached with nothing usable: 504).",
    },
    MetricInfo {
        name: REVALIDATIONS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["result"],
        help: "Conditional requests the cache sent for a stale response, by result: not_modified (a 304 freshened the stored response), modified (a new response replaced it), error (an error or a 5xx came back).",
    },
    MetricInfo {
        name: STORES,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["outcome"],
        help: "Responses to cacheable requests, by what the cache did with them: stored, uncacheable (RFC 9111 forbids it or nothing makes it cacheable), too_large (over the body cap: streamed through, not stored).",
    },
    MetricInfo {
        name: INVALIDATIONS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Keys invalidated by non-error responses to unsafe requests (RFC 9111 §4.4).",
    },
];
