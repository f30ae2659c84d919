//! What the limit and the throttle publish: [`METRICS`] and the metric
//! names, which the handles' `Publish` implementations write when
//! `buttress_core::telemetry` flushes.

use buttress_core::telemetry::{MetricInfo, MetricKind, Unit};

pub(crate) const CALLS: &str = "buttress_limit_calls_total";
pub(crate) const FAILURES: &str = "buttress_limit_failures_total";
pub(crate) const CHANGES: &str = "buttress_limit_changes_total";
pub(crate) const QUEUED: &str = "buttress_limit_queued_total";
pub(crate) const QUEUE_TIMEOUTS: &str = "buttress_limit_queue_timeouts_total";
pub(crate) const LIMIT: &str = "buttress_limit_limit";
pub(crate) const IN_FLIGHT: &str = "buttress_limit_in_flight";
pub(crate) const QUEUE_LENGTH: &str = "buttress_limit_queue_length";
pub(crate) const RTT: &str = "buttress_limit_rtt_seconds";
pub(crate) const MIN_RTT: &str = "buttress_limit_min_rtt_seconds";
pub(crate) const PARTITION_IN_FLIGHT: &str = "buttress_limit_partition_in_flight";
pub(crate) const PARTITION_REJECTED: &str = "buttress_limit_partition_rejected_total";
pub(crate) const THROTTLE_CALLS: &str = "buttress_throttle_calls_total";
pub(crate) const THROTTLE_PROBABILITY: &str = "buttress_throttle_reject_probability";

const fn metric(
    name: &'static str,
    kind: MetricKind,
    unit: Unit,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricInfo {
    MetricInfo {
        name,
        kind,
        unit,
        labels,
        help,
    }
}

/// Every metric this crate emits, each labelled `name` with the instance's
/// name ([`AdaptiveLimit::name`](crate::AdaptiveLimit::name),
/// [`AdaptiveThrottle::name`](crate::throttle::AdaptiveThrottle::name)).
///
/// A limiter emits the `buttress_limit_*` series (the queue's at zero
/// without a queue), and the two `partition` series once per configured
/// partition (a bounded label: at most [`MAX_PARTITIONS`](crate::MAX_PARTITIONS)
/// names, set in the builder). A throttle emits the `buttress_throttle_*`
/// series. Counts live in the layers' own memory (per-thread stripes on the
/// call path) and are published by `buttress_core::telemetry::flush` and its
/// background publisher, so a layer built before the recorder was
/// installed reports into it all the same. A probability has no unit; it
/// is listed with [`Unit::Count`].
pub static METRICS: &[MetricInfo] = &[
    metric(
        CALLS,
        MetricKind::Counter,
        Unit::Count,
        &["outcome"],
        "Calls that asked the limiter for a permit, by outcome: admitted (at once or from the queue), rejected (shed with Overloaded: at the limit without a queue, with the queue full, or after the queue's maximum wait); a queued call its caller dropped counts in neither.",
    ),
    metric(
        FAILURES,
        MetricKind::Counter,
        Unit::Count,
        &[],
        "Admitted calls whose result the classifier judged a failure: each is a drop for the algorithm.",
    ),
    metric(
        CHANGES,
        MetricKind::Counter,
        Unit::Count,
        &[],
        "Sampling windows that changed the limit.",
    ),
    metric(
        QUEUED,
        MetricKind::Counter,
        Unit::Count,
        &[],
        "Calls that waited in the queue at the limit (0 without a queue).",
    ),
    metric(
        QUEUE_TIMEOUTS,
        MetricKind::Counter,
        Unit::Count,
        &[],
        "Queued calls shed after waiting the queue's maximum wait (also counted as rejected).",
    ),
    metric(
        LIMIT,
        MetricKind::Gauge,
        Unit::Count,
        &[],
        "The current concurrency limit.",
    ),
    metric(
        IN_FLIGHT,
        MetricKind::Gauge,
        Unit::Count,
        &[],
        "Calls holding a permit now.",
    ),
    metric(
        QUEUE_LENGTH,
        MetricKind::Gauge,
        Unit::Count,
        &[],
        "Calls waiting in the queue now (0 without a queue).",
    ),
    metric(
        RTT,
        MetricKind::Gauge,
        Unit::Seconds,
        &[],
        "The round-trip time of the last sampling window fed to the algorithm (the mean of its calls, or the percentile the algorithm asks for); 0 before the first.",
    ),
    metric(
        MIN_RTT,
        MetricKind::Gauge,
        Unit::Seconds,
        &[],
        "The no-load round-trip time the algorithm compares each window's against (Vegas' no-load RTT, EnvoyGradient's measured min RTT, Gradient2's long-term average); 0 when the algorithm keeps none (Fixed, Aimd) or has none yet.",
    ),
    metric(
        PARTITION_IN_FLIGHT,
        MetricKind::Gauge,
        Unit::Count,
        &["partition"],
        "Limiters with partitions: calls in the partition holding a permit now.",
    ),
    metric(
        PARTITION_REJECTED,
        MetricKind::Counter,
        Unit::Count,
        &["partition"],
        "Limiters with partitions: calls in the partition shed (also counted in buttress_limit_calls_total as rejected).",
    ),
    metric(
        THROTTLE_CALLS,
        MetricKind::Counter,
        Unit::Count,
        &["outcome"],
        "Calls through the client-side throttle, by outcome: sent (to the backend), rejected (shed locally with Throttled).",
    ),
    metric(
        THROTTLE_PROBABILITY,
        MetricKind::Gauge,
        Unit::Count,
        &[],
        "The probability, from 0 to 1, that the throttle sheds the next call: max(0, (requests - K * accepts) / (requests + 1)) over its window.",
    ),
];
