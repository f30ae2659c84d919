//! The metrics of [`CacheHeaders`](crate::CacheHeaders): their names and
//! the catalog ([`METRICS`]).

use buttress_core::telemetry::{MetricInfo, MetricKind, Unit};

/// The layer kind names are registered under.
pub(crate) const KIND: &str = "cache_headers";

pub(crate) const CONDITIONAL: &str = "buttress_cache_headers_conditional_total";
pub(crate) const ETAGS: &str = "buttress_cache_headers_etags_total";

/// Every metric a [`CacheHeaders`](crate::CacheHeaders) emits, each
/// labelled `name` with its [name](crate::CacheHeadersBuilder::name).
pub static METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: CONDITIONAL,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["outcome"],
        help: "Conditional requests answered by the layer, by outcome: not_modified (304) or precondition_failed (412).",
    },
    MetricInfo {
        name: ETAGS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["outcome"],
        help: "Responses without their own ETag, by what the layer did: strong (hashed the buffered body), weak (derived from Last-Modified and Content-Length), skipped (too large or streamed).",
    },
];
