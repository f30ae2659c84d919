//! A quota (a rate and a burst) and the GCRA decision over one stored
//! time per key.

use std::time::Duration;

use buttress_core::ConfigError;
use buttress_core::time::saturating_nanos;

fn config_error(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::new("rate limit", field, problem)
}

/// How many requests a key may make: `count` per `period`, in bursts of
/// at most [`burst`](Self::burst) back to back, under a quota class (the
/// `class` label of the metrics: a plan such as `"free"` or `"pro"`).
///
/// GCRA spaces requests one emission interval (`period / count`) apart on
/// average and tolerates `burst - 1` intervals of early arrival.
///
/// ```
/// use std::time::Duration;
/// use buttress_ratelimit::Quota;
///
/// let q = Quota::new(100, Duration::from_secs(60)).unwrap().with_burst(10).unwrap().class("free");
/// assert_eq!(q.interval(), Duration::from_millis(600));
/// assert_eq!((q.count(), q.burst(), q.class_name()), (100, 10, "free"));
/// assert_eq!(Quota::new(0, Duration::from_secs(1)).unwrap_err().field(), "count");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    count: u32,
    period: Duration,
    burst: u32,
    interval_ns: u64,
    class: &'static str,
}

impl Quota {
    /// `count` requests per `period`; the burst is `count` (a whole
    /// period's worth at once, as `governor` and tower's `RateLimit`
    /// allow) and the class `"default"`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `count` when it is zero, `period` when it
    /// is zero or shorter than `count` nanoseconds.
    pub fn new(count: u32, period: Duration) -> Result<Self, ConfigError> {
        if count == 0 {
            return Err(config_error("count", "must be at least 1"));
        }
        let interval_ns = saturating_nanos(period) / u64::from(count);
        if interval_ns == 0 {
            return Err(config_error(
                "period",
                format!("must be at least {count} ns (one per request), got {period:?}"),
            ));
        }
        Ok(Self {
            count,
            period,
            burst: count,
            interval_ns,
            class: "default",
        })
    }

    /// `count` requests per second.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn per_second(count: u32) -> Result<Self, ConfigError> {
        Self::new(count, Duration::from_secs(1))
    }

    /// At most `burst` requests back to back. Default: `count`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `burst` when it is zero.
    pub fn with_burst(mut self, burst: u32) -> Result<Self, ConfigError> {
        if burst == 0 {
            return Err(config_error("burst", "must be at least 1"));
        }
        self.burst = burst;
        Ok(self)
    }

    /// The quota class: the `class` label of the metrics. Keep the set of
    /// classes small (plans, not tenants). Default: `"default"`.
    #[must_use]
    pub const fn class(mut self, class: &'static str) -> Self {
        self.class = class;
        self
    }

    /// Requests per period.
    #[must_use]
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    #[must_use]
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// The burst.
    #[must_use]
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// The quota class.
    #[must_use]
    pub const fn class_name(&self) -> &'static str {
        self.class
    }

    /// The emission interval, `period / count`.
    #[must_use]
    pub const fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns)
    }

    pub(crate) const fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    /// The burst tolerance τ = interval × (burst − 1), in nanoseconds.
    pub(crate) const fn tau_ns(&self) -> u64 {
        self.interval_ns.saturating_mul(self.burst as u64 - 1)
    }

    /// One instance's share when `instances` share this quota: the rate
    /// and the burst divided (each at least 1).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn share(self, instances: u32) -> Self {
        let n = instances.max(1);
        let count = (self.count / n).max(1);
        Self {
            count,
            burst: (self.burst / n).max(1),
            interval_ns: self.interval_ns.saturating_mul(u64::from(n)),
            ..self
        }
    }
}

/// GCRA on one key: `tat` is the stored theoretical arrival time (0 when
/// the key has none), `now` the current time, both in nanoseconds of one
/// clock. `Ok(new_tat)` admits (store it); `Err(wait)` rejects, `wait`
/// being the time until the next request would be admitted.
#[inline]
pub(crate) fn gcra(tat: u64, now: u64, quota: &Quota) -> Result<u64, u64> {
    let tat = tat.max(now);
    let ahead = tat - now;
    let tau = quota.tau_ns();
    if ahead > tau {
        Err(ahead - tau)
    } else {
        Ok(tat.saturating_add(quota.interval_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_one_per_interval() {
        let q = Quota::new(2, Duration::from_secs(1))
            .unwrap()
            .with_burst(3)
            .unwrap();
        let ms = 1_000_000;
        let mut tat = 0;
        for _ in 0..3 {
            tat = gcra(tat, 0, &q).unwrap();
        }
        assert_eq!(
            gcra(tat, 0, &q),
            Err(500 * ms),
            "the fourth waits one interval"
        );
        assert_eq!(gcra(tat, 499 * ms, &q), Err(ms));
        assert!(gcra(tat, 500 * ms, &q).is_ok());
    }

    #[test]
    fn zero_rates_are_config_errors() {
        assert_eq!(Quota::per_second(0).unwrap_err().field(), "count");
        assert_eq!(
            Quota::new(10, Duration::ZERO).unwrap_err().field(),
            "period"
        );
        assert_eq!(
            Quota::per_second(1)
                .unwrap()
                .with_burst(0)
                .unwrap_err()
                .field(),
            "burst"
        );
    }

    #[test]
    fn a_share_divides_rate_and_burst() {
        let q = Quota::per_second(100).unwrap().share(4);
        assert_eq!((q.count(), q.burst()), (25, 25));
        assert_eq!(q.interval(), Duration::from_millis(40));
    }
}
