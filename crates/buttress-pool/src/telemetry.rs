//! The pool's metrics: the catalog and the counts a pool keeps besides
//! bb8's own state (size and idle connections, read from bb8 when
//! published).

use buttress_core::telemetry::{Count, Emit, MetricInfo, MetricKind, Unit};

/// The layer kind pools register their names under.
pub(crate) const KIND: &str = "pool";

const CONNECTIONS: &str = "buttress_pool_connections";
const IDLE: &str = "buttress_pool_idle_connections";
const IN_USE: &str = "buttress_pool_in_use_connections";
const WAITERS: &str = "buttress_pool_waiters";
pub(crate) const CHECKOUT_WAIT: &str = "buttress_pool_checkout_wait_seconds";
const CHECKOUTS: &str = "buttress_pool_checkouts_total";
const TIMEOUTS: &str = "buttress_pool_checkout_timeouts_total";
const SHED: &str = "buttress_pool_shed_total";
const ERRORS: &str = "buttress_pool_connection_errors_total";
const CREATED: &str = "buttress_pool_connections_created_total";
const CLOSED: &str = "buttress_pool_connections_closed_total";

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

/// Every metric a pool will emit, each labelled `name` with the pool's
/// name (the pool handle that emits them comes in the next slice).
pub static METRICS: &[MetricInfo] = &[
    metric(
        CONNECTIONS,
        MetricKind::Gauge,
        Unit::Count,
        &[],
        "Connections the pool holds now, idle and in use (at most max_size).",
    ),
    metric(
        IDLE,
        MetricKind::Gauge,
        Unit::Count,
        &[],
        "Connections idle in the pool now.",
    ),
    metric(
        IN_USE,
        MetricKind::Gauge,
        Unit::Count,
        &[],
        "Connections checked out now.",
    ),
    metric(
        WAITERS,
        MetricKind::Gauge,
        Unit::Count,
        &[],
        "Checkouts in progress now: callers waiting for a connection (at most max_waiters).",
    ),
    metric(
        CHECKOUT_WAIT,
        MetricKind::Histogram,
        Unit::Seconds,
        &[],
        "Time from the start of a checkout to a connection, for checkouts that got one.",
    ),
    metric(
        CHECKOUTS,
        MetricKind::Counter,
        Unit::Count,
        &[],
        "Checkouts that got a connection.",
    ),
    metric(
        TIMEOUTS,
        MetricKind::Counter,
        Unit::Count,
        &[],
        "Checkouts that got no connection within checkout_timeout (rejected as Overloaded when the pool was full, else failed with ConnectFailed).",
    ),
    metric(
        SHED,
        MetricKind::Counter,
        Unit::Count,
        &[],
        "Checkouts refused at once because max_waiters callers were already waiting (rejected as Overloaded).",
    ),
    metric(
        ERRORS,
        MetricKind::Counter,
        Unit::Count,
        &[],
        "Failed attempts to open a connection, and failed health checks on checkout.",
    ),
    metric(
        CREATED,
        MetricKind::Counter,
        Unit::Count,
        &[],
        "Connections opened.",
    ),
    metric(
        CLOSED,
        MetricKind::Counter,
        Unit::Count,
        &["reason"],
        "Connections closed, by reason: broken (reported broken by the manager, failed a health check, or its call was cancelled or marked broken) or retired (idle timeout, max lifetime, pool dropped).",
    ),
];

/// A pool's running totals.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) checkouts: Count,
    pub(crate) timeouts: Count,
    pub(crate) shed: Count,
    pub(crate) errors: Count,
    pub(crate) created: Count,
    pub(crate) closed_broken: Count,
    pub(crate) closed_retired: Count,
}

/// Current values read when publishing.
pub(crate) struct Gauges {
    pub(crate) connections: u32,
    pub(crate) idle: u32,
    pub(crate) waiters: usize,
}

#[allow(clippy::cast_precision_loss)]
pub(crate) fn publish(out: &mut Emit<'_>, c: &Counts, g: &Gauges) {
    out.gauge(CONNECTIONS, f64::from(g.connections));
    out.gauge(IDLE, f64::from(g.idle));
    out.gauge(IN_USE, f64::from(g.connections.saturating_sub(g.idle)));
    out.gauge(WAITERS, g.waiters as f64);
    out.counter(CHECKOUTS, c.checkouts.get());
    out.counter(TIMEOUTS, c.timeouts.get());
    out.counter(SHED, c.shed.get());
    out.counter(ERRORS, c.errors.get());
    out.counter(CREATED, c.created.get());
    out.counter_with(CLOSED, &[("reason", "broken")], c.closed_broken.get());
    out.counter_with(CLOSED, &[("reason", "retired")], c.closed_retired.get());
}
