//! The limiter's series, written to the `metrics` recorder when
//! `buttress_core::telemetry` publishes (never on a call's path).

use buttress_core::telemetry::{Emit, Publish};

use super::Inner;
use crate::telemetry::{
    CALLS, CHANGES, FAILURES, IN_FLIGHT, LIMIT, MIN_RTT, PARTITION_IN_FLIGHT, PARTITION_REJECTED,
    QUEUE_LENGTH, QUEUE_TIMEOUTS, QUEUED, RTT,
};

impl Publish for Inner {
    fn publish(&self, out: &mut Emit<'_>) {
        let s = self.snapshot();
        out.counter_with(CALLS, &[("outcome", "admitted")], s.admitted);
        out.counter_with(CALLS, &[("outcome", "rejected")], s.rejected);
        out.counter(FAILURES, s.failures);
        out.counter(CHANGES, s.limit_changes);
        out.counter(QUEUED, s.queue_entered);
        out.counter(QUEUE_TIMEOUTS, s.queue_timeouts);
        out.gauge(LIMIT, f64::from(s.limit));
        out.gauge(IN_FLIGHT, f64::from(s.in_flight));
        out.gauge(QUEUE_LENGTH, f64::from(s.queued));
        let secs = |d: Option<std::time::Duration>| d.map_or(0.0, |d| d.as_secs_f64());
        out.gauge(RTT, secs(s.rtt));
        out.gauge(MIN_RTT, secs(s.no_load_rtt));
        for p in self.partitions() {
            let label = [("partition", &*p.name)];
            out.gauge_with(PARTITION_IN_FLIGHT, &label, f64::from(p.in_flight()));
            out.counter_with(PARTITION_REJECTED, &label, p.rejected());
        }
    }
}
