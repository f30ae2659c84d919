use std::time::Duration;

use buttress_core::rng::FastRng;

use super::{Limit, Sample};
use crate::error::{ConfigError, check_range};

/// Envoy's adaptive-concurrency gradient controller.
///
/// It measures the backend's min RTT directly, by pinning the limit at
/// [`min_concurrency`](EnvoyGradientBuilder::min_concurrency) until
/// [`min_rtt_request_count`](EnvoyGradientBuilder::min_rtt_request_count)
/// calls have completed, and re-measures every
/// [`min_rtt_interval`](EnvoyGradientBuilder::min_rtt_interval) plus a
/// random [`jitter`](EnvoyGradientBuilder::jitter) share of it. It starts by
/// measuring. While it measures, the limiter admits no call past the
/// pinned limit (partitions' guaranteed shares included: see
/// [`Limit::is_pinned`]) and feeds it every window that holds a completed
/// call. Between measurements, each window:
///
/// `g = clamp(min_rtt · (1 + buffer) / sample_rtt, 0.5, 2.0)`;
/// `L' = L · g + √(L · g)`, clamped to `[min_concurrency, max_limit]`.
///
/// The sample RTT is each window's p50, as in Envoy (from the limiter's
/// histogram, within 6.25 %). Differences from Envoy, all from the
/// limiter's windowing: the measured min RTT is the mean of the
/// measurement windows' p50s, weighted by their calls (Envoy takes one p50
/// over all of them); a measurement only counts windows whose calls were all
/// admitted while the limit was pinned (with most calls in flight at most
/// `min_concurrency`), so stragglers from before the pin do not skew it,
/// and one that has not collected its calls after
/// `min_rtt_request_count` windows ends with those it has (or keeps the
/// last min RTT if it has none), so the limit is never pinned for longer;
/// and the update interval is the limiter's window (Envoy's
/// default is 100 ms: set [`AdaptiveLimitBuilder::window`](crate::AdaptiveLimitBuilder::window) to
/// match). Envoy answers a shed request with a 503, as does this crate's
/// `http` helper.
#[derive(Debug)]
pub struct EnvoyGradient {
    limit: u32,
    max: u32,
    min_concurrency: u32,
    buffer: f64,
    request_count: u32,
    interval: Duration,
    jitter: f64,
    min_rtt: Option<Duration>,
    calc: Option<Calc>,
    next_calc_at: Duration,
    rng: FastRng,
}

#[derive(Debug, Clone, Copy)]
struct Calc {
    deferred: u32,
    /// Windows fed since the measurement began.
    windows: u32,
    count: u64,
    weighted_secs: f64,
}

impl Calc {
    fn new(deferred: u32) -> Self {
        Self {
            deferred,
            windows: 0,
            count: 0,
            weighted_secs: 0.0,
        }
    }
}

/// Builds an [`EnvoyGradient`]; every default is Envoy's.
#[derive(Clone, Debug)]
pub struct EnvoyGradientBuilder {
    max: u32,
    min_concurrency: u32,
    buffer: f64,
    request_count: u32,
    interval: Duration,
    jitter: f64,
    seed: Option<u64>,
}

impl EnvoyGradient {
    /// A builder with the reference defaults.
    #[must_use]
    pub fn builder() -> EnvoyGradientBuilder {
        EnvoyGradientBuilder {
            max: 1000,
            min_concurrency: 3,
            buffer: 0.25,
            request_count: 50,
            interval: Duration::from_secs(60),
            jitter: 0.15,
            seed: None,
        }
    }

    /// The last measured min RTT, if a measurement has completed.
    #[must_use]
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// Whether the limit is pinned for a min-RTT measurement.
    #[must_use]
    pub fn is_measuring(&self) -> bool {
        self.calc.is_some()
    }

    fn jittered_interval(&self) -> Duration {
        let extra = self.interval.as_secs_f64() * self.jitter * self.rng.next_f64();
        self.interval
            .saturating_add(Duration::try_from_secs_f64(extra).unwrap_or(Duration::MAX))
    }
}

impl EnvoyGradientBuilder {
    /// The highest limit. Default: 1000 (Envoy's `max_concurrency_limit`).
    #[must_use]
    pub fn max_limit(mut self, limit: u32) -> Self {
        self.max = limit;
        self
    }

    /// The limit while the min RTT is measured, also the lowest limit and
    /// the starting one. Default: 3 (Envoy's `min_concurrency`).
    #[must_use]
    pub fn min_concurrency(mut self, limit: u32) -> Self {
        self.min_concurrency = limit;
        self
    }

    /// The latency head-room over the min RTT, in `[0, 1]`. Default: 0.25
    /// (Envoy's `buffer`, 25 %).
    #[must_use]
    pub fn buffer(mut self, buffer: f64) -> Self {
        self.buffer = buffer;
        self
    }

    /// How many calls a min-RTT measurement takes. Default: 50 (Envoy's
    /// `request_count`).
    #[must_use]
    pub fn min_rtt_request_count(mut self, count: u32) -> Self {
        self.request_count = count;
        self
    }

    /// How often the min RTT is re-measured. Default: 60 s (Envoy's
    /// `min_rtt_calc_params.interval`).
    #[must_use]
    pub fn min_rtt_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Each re-measurement is delayed by a random share of the interval of
    /// up to this, in `[0, 1]`. Default: 0.15 (Envoy's `jitter`, 15 %).
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seeds the jitter, so runs repeat exactly (a limiter's
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
    /// A [`ConfigError`] naming the first bad setting: a zero min
    /// concurrency or request count, a maximum below the min concurrency,
    /// a buffer or jitter outside `[0, 1]`, a zero interval.
    pub fn build(self) -> Result<EnvoyGradient, ConfigError> {
        if self.min_concurrency == 0 {
            return Err(crate::error::config_error(
                "min_concurrency",
                "must be at least 1",
            ));
        }
        if self.max < self.min_concurrency {
            return Err(crate::error::config_error(
                "max_limit",
                format!(
                    "({}) must not be below min_concurrency ({})",
                    self.max, self.min_concurrency
                ),
            ));
        }
        check_range("buffer", self.buffer, 0.0, 1.0, true)?;
        check_range("jitter", self.jitter, 0.0, 1.0, true)?;
        if self.request_count == 0 {
            return Err(crate::error::config_error(
                "min_rtt_request_count",
                "must be at least 1",
            ));
        }
        if self.interval.is_zero() {
            return Err(crate::error::config_error(
                "min_rtt_interval",
                "must be greater than zero",
            ));
        }
        Ok(EnvoyGradient {
            limit: self.min_concurrency,
            max: self.max,
            min_concurrency: self.min_concurrency,
            buffer: self.buffer,
            request_count: self.request_count,
            interval: self.interval,
            jitter: self.jitter,
            min_rtt: None,
            calc: Some(Calc::new(self.min_concurrency)),
            next_calc_at: Duration::ZERO,
            rng: self
                .seed
                .map_or_else(FastRng::from_entropy, FastRng::seeded),
        })
    }
}

impl Limit for EnvoyGradient {
    fn limit(&self) -> u32 {
        if self.calc.is_some() {
            self.min_concurrency
        } else {
            self.limit
        }
    }

    fn update(&mut self, s: &Sample) -> u32 {
        if let Some(calc) = &mut self.calc {
            // Only windows whose calls were all admitted while pinned: calls
            // admitted before the pin complete during the first window of a
            // measurement with queueing delay that a mean (unlike Envoy's
            // p50) would take in.
            if !s.rtt().is_zero() && s.in_flight() <= self.min_concurrency {
                calc.count += u64::from(s.count());
                calc.weighted_secs += s.rtt().as_secs_f64() * f64::from(s.count());
            }
            calc.windows = calc.windows.saturating_add(1);
            // Every window fed while pinned holds a call, so a measurement
            // whose windows all count completes within `request_count` of
            // them; one that has not by then cannot be trusted to, and must
            // not hold the limit at its minimum: it ends with the calls it
            // has (or the last min RTT).
            if calc.count >= u64::from(self.request_count) || calc.windows >= self.request_count {
                if calc.count > 0 {
                    let mean = calc.weighted_secs / calc.count as f64;
                    self.min_rtt = Some(Duration::try_from_secs_f64(mean).unwrap_or(Duration::MAX));
                }
                self.limit = calc.deferred;
                self.calc = None;
                self.next_calc_at = s.at().saturating_add(self.jittered_interval());
            }
            return self.limit();
        }
        if s.at() >= self.next_calc_at {
            // Samples from before the measurement say nothing of the min RTT.
            self.calc = Some(Calc::new(self.limit));
            return self.limit();
        }
        let (Some(min_rtt), false) = (self.min_rtt, s.rtt().is_zero()) else {
            return self.limit();
        };
        let buffered = min_rtt.as_secs_f64() * (1.0 + self.buffer);
        let gradient = (buffered / s.rtt().as_secs_f64()).clamp(0.5, 2.0);
        let limit = f64::from(self.limit) * gradient;
        let new = (limit + limit.sqrt()) as u64;
        self.limit = new.clamp(u64::from(self.min_concurrency), u64::from(self.max)) as u32;
        self.limit
    }

    fn name(&self) -> &'static str {
        "envoy-gradient"
    }

    /// The p50 of each window, as Envoy's `sample_aggregate_percentile`
    /// default.
    fn rtt_percentile(&self) -> Option<f64> {
        Some(0.5)
    }

    /// While it measures the min RTT.
    fn is_pinned(&self) -> bool {
        self.calc.is_some()
    }

    /// The last measured min RTT.
    fn no_load_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    fn seed(&mut self, seed: u64) {
        self.rng = FastRng::seeded(seed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at_s: u64, rtt_ms: u64, count: u32) -> Sample {
        Sample::new(
            Duration::from_secs(at_s),
            Duration::from_millis(rtt_ms),
            3,
            false,
        )
        .with_count(count)
    }

    #[test]
    fn measures_min_rtt_pinned_then_follows_the_gradient() {
        let mut e = EnvoyGradient::builder().seed(7).build().unwrap();
        assert!(e.is_measuring());
        assert_eq!(e.limit(), 3);
        // 30 + 30 calls at 100 ms: measured, limit back to the deferred 3.
        assert_eq!(e.update(&s(1, 100, 30)), 3);
        assert_eq!(e.update(&s(2, 100, 30)), 3);
        assert_eq!(e.min_rtt(), Some(Duration::from_millis(100)));
        assert_eq!(Limit::no_load_rtt(&e), e.min_rtt(), "the gauge's source");
        assert!(!e.is_measuring());
        // No queueing: g = 1.25/1 clamped to ≤ 2 → 1.25: L' = ⌊3.75 + √3.75⌋ = 5.
        assert_eq!(e.update(&s(3, 100, 30)), 5);
        // Fast: g = 125/50 → clamp 2: ⌊10 + √10⌋ = 13.
        assert_eq!(e.update(&s(4, 50, 30)), 13);
        // Slow: g = 125/500 → clamp 0.5: ⌊6.5 + √6.5⌋ = 9.
        assert_eq!(e.update(&s(5, 500, 30)), 9);
    }

    #[test]
    fn remeasures_after_the_jittered_interval() {
        let mut e = EnvoyGradient::builder().seed(7).build().unwrap();
        e.update(&s(0, 100, 50));
        for t in 1..60 {
            e.update(&s(t, 100, 30));
        }
        let before = e.limit();
        assert!(before > 3 && !e.is_measuring());
        // Somewhere in [60 s, 69 s] it pins the limit again…
        let mut pinned_at = None;
        for t in 60..=70 {
            e.update(&s(t, 100, 30));
            if e.is_measuring() {
                pinned_at = Some(t);
                break;
            }
        }
        let t = pinned_at.expect("re-measured within interval + 15 %");
        assert!((60..=69).contains(&t));
        assert_eq!(e.limit(), 3);
        // …and restores the limit it had once the measurement completes.
        e.update(&s(t + 1, 80, 60));
        assert_eq!(e.min_rtt(), Some(Duration::from_millis(80)));
        assert_eq!(e.limit(), before);
    }

    #[test]
    fn measurement_skips_windows_with_calls_from_before_the_pin() {
        let mut e = EnvoyGradient::builder().seed(7).build().unwrap();
        let straggly = Sample::new(
            Duration::from_secs(1),
            Duration::from_millis(400),
            40,
            false,
        )
        .with_count(60);
        e.update(&straggly);
        assert!(
            e.is_measuring(),
            "a window with 40 in flight is not a pinned one"
        );
        e.update(&s(2, 100, 60));
        assert_eq!(e.min_rtt(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn a_measurement_that_cannot_complete_gives_up_after_request_count_windows() {
        let mut e = EnvoyGradient::builder().seed(7).build().unwrap();
        e.update(&s(0, 100, 50));
        for t in 1..60 {
            e.update(&s(t, 100, 30));
        }
        let before = e.limit();
        // Re-measuring, but every window has more calls in flight than the
        // pin allows (as when something admits past it): none counts.
        let crowded = |t: u64| {
            Sample::new(Duration::from_secs(t), Duration::from_millis(90), 4, false).with_count(30)
        };
        let mut t = 60;
        while !e.is_measuring() {
            e.update(&crowded(t));
            t += 1;
        }
        // One qualifying window of 10 calls, then crowded ones: 50 windows
        // in all end the measurement with the 10 calls it has.
        e.update(&s(t, 80, 10));
        for i in 1..49 {
            e.update(&crowded(t + i));
            assert!(e.is_measuring() && e.is_pinned(), "window {i}");
        }
        e.update(&crowded(t + 49));
        assert!(!e.is_measuring() && !e.is_pinned());
        assert_eq!(e.min_rtt(), Some(Duration::from_millis(80)));
        assert_eq!(e.limit(), before, "the limit it had is restored");
    }

    #[test]
    fn a_first_measurement_with_no_qualifying_window_unpins_without_a_min_rtt() {
        let mut e = EnvoyGradient::builder().seed(7).build().unwrap();
        let crowded =
            Sample::new(Duration::from_secs(1), Duration::from_millis(90), 5, false).with_count(30);
        for _ in 0..50 {
            assert!(e.is_pinned());
            e.update(&crowded);
        }
        assert!(!e.is_pinned());
        assert_eq!((e.min_rtt(), e.limit()), (None, 3));
    }

    #[test]
    fn rejects_bad_config() {
        let f = |b: EnvoyGradientBuilder| b.build().unwrap_err().field();
        assert_eq!(
            f(EnvoyGradient::builder().min_concurrency(0)),
            "min_concurrency"
        );
        assert_eq!(f(EnvoyGradient::builder().max_limit(2)), "max_limit");
        assert_eq!(f(EnvoyGradient::builder().buffer(-0.1)), "buffer");
        assert_eq!(f(EnvoyGradient::builder().jitter(2.0)), "jitter");
        assert_eq!(
            f(EnvoyGradient::builder().min_rtt_interval(Duration::ZERO)),
            "min_rtt_interval"
        );
        assert_eq!(
            f(EnvoyGradient::builder().min_rtt_request_count(0)),
            "min_rtt_request_count"
        );
    }
}
