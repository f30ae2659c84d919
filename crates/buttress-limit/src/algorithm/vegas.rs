use std::time::Duration;

use buttress_core::rng::FastRng;

use super::{Limit, Sample, log10_root};
use crate::error::{ConfigError, check_bounds, check_range};

/// TCP Vegas applied to concurrency, as Netflix concurrency-limits'
/// `VegasLimit`.
///
/// With `rtt_noload` the lowest window RTT seen, each window estimates the
/// queue `q = ⌈L · (1 − rtt_noload / rtt)⌉`; with `log = max(1, ⌊log10 L⌋)`,
/// α = 3·log, β = 6·log and threshold = log:
///
/// - a drop: `L − log`;
/// - in-flight · 2 < L (the limit is not what holds traffic back): no change;
/// - q ≤ threshold: `L + β`; q < α: `L + log`; q > β: `L − log`; otherwise
///   no change;
/// - then clamp to `[1, max_limit]` and smooth:
///   `L ← (1 − smoothing) · L + smoothing · L'`.
///
/// `rtt_noload` is re-probed (set to the current window's RTT) after about
/// `probe_multiplier · L` windows, jittered by a factor in `[0.5, 1)`, so a
/// backend that became permanently slower is not mistaken for a queue.
#[derive(Debug)]
pub struct Vegas {
    estimate: f64,
    max: u32,
    smoothing: f64,
    probe_multiplier: u32,
    probe_count: u64,
    probe_jitter: f64,
    rtt_noload: Duration,
    rng: FastRng,
}

/// Builds a [`Vegas`]; every default is Netflix concurrency-limits'.
#[derive(Clone, Debug)]
pub struct VegasBuilder {
    initial: u32,
    max: u32,
    smoothing: f64,
    probe_multiplier: u32,
    seed: Option<u64>,
}

impl Vegas {
    /// A builder with the reference defaults.
    #[must_use]
    pub fn builder() -> VegasBuilder {
        VegasBuilder {
            initial: 20,
            max: 1000,
            smoothing: 1.0,
            probe_multiplier: 30,
            seed: None,
        }
    }

    /// The current no-load RTT estimate (zero before the first window).
    #[must_use]
    pub fn rtt_noload(&self) -> Duration {
        self.rtt_noload
    }

    fn reset_probe_jitter(&mut self) {
        self.probe_jitter = 0.5 + 0.5 * self.rng.next_f64();
    }
}

impl VegasBuilder {
    /// The starting limit. Default: 20 (Netflix `VegasLimit`).
    #[must_use]
    pub fn initial_limit(mut self, limit: u32) -> Self {
        self.initial = limit;
        self
    }

    /// The highest limit. Default: 1000 (Netflix `VegasLimit`).
    #[must_use]
    pub fn max_limit(mut self, limit: u32) -> Self {
        self.max = limit;
        self
    }

    /// The weight of each new estimate, in `(0, 1]`. Default: 1.0 (no
    /// smoothing; Netflix `VegasLimit`).
    #[must_use]
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// Re-probe the no-load RTT every `multiplier · L` windows (jittered).
    /// Default: 30 (Netflix `VegasLimit`).
    #[must_use]
    pub fn probe_multiplier(mut self, multiplier: u32) -> Self {
        self.probe_multiplier = multiplier;
        self
    }

    /// Seeds the probe jitter, so runs repeat exactly (a limiter's
    /// [`seed`](crate::AdaptiveLimitBuilder::seed) overrides it). Default:
    /// seeded from the process's entropy, differently for each instance.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting: a zero maximum, an
    /// initial limit outside `1..=max_limit`, a smoothing outside `(0, 1]`,
    /// a zero probe multiplier.
    pub fn build(self) -> Result<Vegas, ConfigError> {
        check_bounds(1, self.initial, self.max)?;
        check_range("smoothing", self.smoothing, 0.0, 1.0, false)?;
        if self.probe_multiplier == 0 {
            return Err(crate::error::config_error(
                "probe_multiplier",
                "must be at least 1",
            ));
        }
        let mut v = Vegas {
            estimate: f64::from(self.initial),
            max: self.max,
            smoothing: self.smoothing,
            probe_multiplier: self.probe_multiplier,
            probe_count: 0,
            probe_jitter: 1.0,
            rtt_noload: Duration::ZERO,
            rng: self
                .seed
                .map_or_else(FastRng::from_entropy, FastRng::seeded),
        };
        v.reset_probe_jitter();
        Ok(v)
    }
}

impl Limit for Vegas {
    fn limit(&self) -> u32 {
        super::to_limit(self.estimate)
    }

    fn update(&mut self, s: &Sample) -> u32 {
        let rtt = s.rtt();
        if rtt.is_zero() && !s.dropped() {
            return self.limit();
        }
        self.probe_count += 1;
        let should_probe = self.probe_jitter * f64::from(self.probe_multiplier) * self.estimate
            <= self.probe_count as f64;
        if should_probe && !rtt.is_zero() {
            self.reset_probe_jitter();
            self.probe_count = 0;
            self.rtt_noload = rtt;
            return self.limit();
        }
        if !rtt.is_zero() && (self.rtt_noload.is_zero() || rtt < self.rtt_noload) {
            self.rtt_noload = rtt;
            return self.limit();
        }
        let l = self.estimate;
        let log = log10_root(l.floor());
        let new = if s.dropped() {
            l - log
        } else if f64::from(s.in_flight()) * 2.0 < l {
            return self.limit();
        } else {
            let queue = (l * (1.0 - self.rtt_noload.as_secs_f64() / rtt.as_secs_f64())).ceil();
            let (alpha, beta, threshold) = (3.0 * log, 6.0 * log, log);
            if queue <= threshold {
                l + beta
            } else if queue < alpha {
                l + log
            } else if queue > beta {
                l - log
            } else {
                return self.limit();
            }
        };
        let new = new.clamp(1.0, f64::from(self.max));
        self.estimate = (1.0 - self.smoothing) * l + self.smoothing * new;
        self.limit()
    }

    fn name(&self) -> &'static str {
        "vegas"
    }

    fn no_load_rtt(&self) -> Option<Duration> {
        Some(self.rtt_noload).filter(|d| !d.is_zero())
    }

    fn seed(&mut self, seed: u64) {
        self.rng = FastRng::seeded(seed);
        self.reset_probe_jitter();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(rtt_ms: u64, in_flight: u32) -> Sample {
        Sample::new(
            Duration::ZERO,
            Duration::from_millis(rtt_ms),
            in_flight,
            false,
        )
    }

    fn vegas() -> Vegas {
        // A huge multiplier keeps probes out of the way.
        Vegas::builder()
            .probe_multiplier(1_000_000)
            .seed(1)
            .build()
            .unwrap()
    }

    #[test]
    fn follows_the_queue_estimate() {
        let mut v = vegas();
        assert_eq!(v.no_load_rtt(), None, "none before the first window");
        // The first window sets rtt_noload and changes nothing.
        assert_eq!(v.update(&s(100, 20)), 20);
        assert_eq!(v.rtt_noload(), Duration::from_millis(100));
        assert_eq!(v.no_load_rtt(), Some(Duration::from_millis(100)));
        // No queue (q = 0 ≤ threshold 1): L + β = 20 + 6.
        assert_eq!(v.update(&s(100, 20)), 26);
        // Idle: in flight · 2 < L: no change.
        assert_eq!(v.update(&s(100, 12)), 26);
        // q = ⌈26 · (1 − 100/110)⌉ = ⌈2.36⌉ = 3: not < α (3), not > β (6): no change.
        assert_eq!(v.update(&s(110, 26)), 26);
        // q = ⌈26 · (1 − 100/105)⌉ = 2 < α: L + log = 27.
        assert_eq!(v.update(&s(105, 26)), 27);
        // q = ⌈27 · (1 − 100/200)⌉ = 14 > β: L − log = 26.
        assert_eq!(v.update(&s(200, 27)), 26);
        // A drop: L − log.
        let drop = Sample::new(Duration::ZERO, Duration::from_millis(100), 26, true);
        assert_eq!(v.update(&drop), 25);
    }

    #[test]
    fn thresholds_scale_with_log10() {
        let mut v = Vegas::builder()
            .initial_limit(150)
            .probe_multiplier(1_000_000)
            .seed(1)
            .build()
            .unwrap();
        v.update(&s(100, 150));
        // log10 150 → 2: β = 12.
        assert_eq!(v.update(&s(100, 150)), 162);
    }

    #[test]
    fn probes_reset_the_noload_rtt() {
        let mut v = Vegas::builder()
            .probe_multiplier(1)
            .seed(3)
            .build()
            .unwrap();
        v.update(&s(100, 20));
        for _ in 0..40 {
            v.update(&s(300, 20));
        }
        assert_eq!(v.rtt_noload(), Duration::from_millis(300));
    }

    #[test]
    fn rejects_bad_config() {
        let f = |b: VegasBuilder| b.build().unwrap_err().field();
        assert_eq!(f(Vegas::builder().smoothing(0.0)), "smoothing");
        assert_eq!(f(Vegas::builder().max_limit(0)), "max_limit");
        assert_eq!(f(Vegas::builder().initial_limit(0)), "initial_limit");
        assert_eq!(f(Vegas::builder().probe_multiplier(0)), "probe_multiplier");
    }
}
