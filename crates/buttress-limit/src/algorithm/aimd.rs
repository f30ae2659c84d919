use std::time::Duration;

use super::{Limit, Sample};
use crate::error::{ConfigError, check_bounds};

/// Additive increase, multiplicative decrease, as Netflix
/// concurrency-limits' `AIMDLimit`:
///
/// - on a drop, or a window RTT over [`timeout`](AimdBuilder::timeout):
///   `L ← ⌊L · backoff_ratio⌋`;
/// - otherwise, if in-flight · 2 ≥ L: `L ← L + 1`;
/// - then clamp to `[min_limit, max_limit]`.
///
/// AIMD reads latency only through the timeout: with the reference 5 s it
/// reacts to drops alone. Against a backend whose failures do not show as
/// drops, set the timeout to a latency you consider overload (a small
/// multiple of the no-load latency).
#[derive(Clone, Debug)]
pub struct Aimd {
    limit: u32,
    min: u32,
    max: u32,
    backoff_ratio: f64,
    timeout: Duration,
}

/// Builds an [`Aimd`]; every default is Netflix concurrency-limits'.
#[derive(Clone, Debug)]
pub struct AimdBuilder {
    initial: u32,
    min: u32,
    max: u32,
    backoff_ratio: f64,
    timeout: Duration,
}

impl Aimd {
    /// A builder with the reference defaults.
    #[must_use]
    pub fn builder() -> AimdBuilder {
        AimdBuilder {
            initial: 20,
            min: 20,
            max: 200,
            backoff_ratio: 0.9,
            timeout: Duration::from_secs(5),
        }
    }
}

impl AimdBuilder {
    /// The starting limit. Default: 20 (Netflix `AIMDLimit`).
    #[must_use]
    pub fn initial_limit(mut self, limit: u32) -> Self {
        self.initial = limit;
        self
    }

    /// The lowest limit. Default: 20 (Netflix `AIMDLimit`).
    #[must_use]
    pub fn min_limit(mut self, limit: u32) -> Self {
        self.min = limit;
        self
    }

    /// The highest limit. Default: 200 (Netflix `AIMDLimit`).
    #[must_use]
    pub fn max_limit(mut self, limit: u32) -> Self {
        self.max = limit;
        self
    }

    /// The factor applied on a drop or timeout, in `[0.5, 1.0)`. Default:
    /// 0.9 (Netflix `AIMDLimit`).
    #[must_use]
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.backoff_ratio = ratio;
        self
    }

    /// A window RTT above this counts as a drop. Default: 5 s (Netflix
    /// `AIMDLimit`).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting: a zero or inverted
    /// bound, an initial limit outside the bounds, a backoff ratio outside
    /// `[0.5, 1.0)`, a zero timeout.
    pub fn build(self) -> Result<Aimd, ConfigError> {
        check_bounds(self.min, self.initial, self.max)?;
        if !(self.backoff_ratio.is_finite() && (0.5..1.0).contains(&self.backoff_ratio)) {
            return Err(crate::error::config_error(
                "backoff_ratio",
                format!("must be within [0.5, 1.0), got {}", self.backoff_ratio),
            ));
        }
        if self.timeout.is_zero() {
            return Err(crate::error::config_error(
                "timeout",
                "must be greater than zero",
            ));
        }
        Ok(Aimd {
            limit: self.initial,
            min: self.min,
            max: self.max,
            backoff_ratio: self.backoff_ratio,
            timeout: self.timeout,
        })
    }
}

impl Limit for Aimd {
    fn limit(&self) -> u32 {
        self.limit
    }

    fn update(&mut self, s: &Sample) -> u32 {
        let mut limit = self.limit;
        if s.dropped() || s.rtt() > self.timeout {
            limit = (f64::from(limit) * self.backoff_ratio) as u32;
        } else if u64::from(s.in_flight()) * 2 >= u64::from(limit) {
            limit = limit.saturating_add(1);
        }
        self.limit = limit.clamp(self.min, self.max);
        self.limit
    }

    fn name(&self) -> &'static str {
        "aimd"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(rtt_ms: u64, in_flight: u32, dropped: bool) -> Sample {
        Sample::new(
            Duration::ZERO,
            Duration::from_millis(rtt_ms),
            in_flight,
            dropped,
        )
    }

    #[test]
    fn additive_increase_multiplicative_decrease() {
        let mut a = Aimd::builder().min_limit(1).build().unwrap();
        assert_eq!(a.limit(), 20);
        // Idle (in flight < L/2): no growth.
        assert_eq!(a.update(&s(10, 9, false)), 20);
        // Busy: +1 per window.
        for expected in 21..=30 {
            assert_eq!(a.update(&s(10, 20, false)), expected);
        }
        // Drop: ⌊30 · 0.9⌋ = 27; timeout: ⌊27 · 0.9⌋ = 24.
        assert_eq!(a.update(&s(10, 30, true)), 27);
        assert_eq!(a.update(&s(6_000, 30, false)), 24);
    }

    #[test]
    fn stays_within_bounds() {
        let mut a = Aimd::builder().build().unwrap();
        assert_eq!(a.update(&s(10, 20, true)), 20, "min 20");
        for _ in 0..500 {
            a.update(&s(10, 1000, false));
        }
        assert_eq!(a.limit(), 200, "max 200");
    }

    #[test]
    fn rejects_bad_config() {
        let f = |b: AimdBuilder| b.build().unwrap_err().field();
        assert_eq!(f(Aimd::builder().backoff_ratio(1.0)), "backoff_ratio");
        assert_eq!(f(Aimd::builder().backoff_ratio(f64::NAN)), "backoff_ratio");
        assert_eq!(f(Aimd::builder().timeout(Duration::ZERO)), "timeout");
        assert_eq!(f(Aimd::builder().min_limit(0)), "min_limit");
        assert_eq!(f(Aimd::builder().initial_limit(500)), "initial_limit");
        assert_eq!(f(Aimd::builder().min_limit(300)), "min_limit");
    }
}
