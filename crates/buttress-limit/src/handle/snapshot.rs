//! The limiter's counters, read all at once: [`AdaptiveLimitSnapshot`] and
//! [`PartitionSnapshot`].

use std::time::Duration;

/// A limiter's counters at one moment, from
/// [`AdaptiveLimit::snapshot`](crate::AdaptiveLimit::snapshot). Totals
/// count from when the limiter was built; the same figures are published
/// as the `buttress_limit_*` metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdaptiveLimitSnapshot {
    /// The current limit.
    pub limit: u32,
    /// Calls holding a permit now.
    pub in_flight: u32,
    /// Calls waiting in the queue now (0 without a queue).
    pub queued: u32,
    /// Calls admitted, at once or from the queue.
    pub admitted: u64,
    /// Calls shed with [`Overloaded`](crate::Overloaded): at the limit
    /// without a queue, with the queue full, or after the queue's maximum
    /// wait.
    pub rejected: u64,
    /// Admitted calls whose result the classifier judged a failure (each a
    /// drop for the algorithm).
    pub failures: u64,
    /// Sampling windows that changed the limit.
    pub limit_changes: u64,
    /// Calls that entered the queue (0 without a queue).
    pub queue_entered: u64,
    /// Queued calls shed after the queue's maximum wait (also in
    /// `rejected`).
    pub queue_timeouts: u64,
    /// The round-trip time of the last window fed to the algorithm (the
    /// mean of its calls, or the percentile the algorithm asks for);
    /// `None` before the first.
    pub rtt: Option<Duration>,
    /// The no-load round-trip time the algorithm compares each window's
    /// against ([`Limit::no_load_rtt`](crate::algorithm::Limit::no_load_rtt),
    /// published as `buttress_limit_min_rtt_seconds`); `None` for an
    /// algorithm that keeps none, or none yet.
    pub no_load_rtt: Option<Duration>,
}

impl AdaptiveLimitSnapshot {
    /// The share of calls shed: `rejected / (admitted + rejected)`, 0 before
    /// any call.
    #[must_use]
    pub fn rejected_ratio(&self) -> f64 {
        let asked = self.admitted.saturating_add(self.rejected);
        if asked == 0 {
            0.0
        } else {
            self.rejected as f64 / asked as f64
        }
    }
}

/// One partition's counters at one moment, from
/// [`AdaptiveLimit::partition_snapshot`](crate::AdaptiveLimit::partition_snapshot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionSnapshot {
    /// Calls in the partition holding a permit now.
    pub in_flight: u32,
    /// Calls in the partition shed since the limiter was built (also in
    /// [`AdaptiveLimitSnapshot::rejected`]).
    pub rejected: u64,
    /// The calls the partition is guaranteed at the current limit `L`
    /// while the whole limit is in use: `max(1, ⌈L · share⌉)`.
    pub guaranteed: u32,
}
