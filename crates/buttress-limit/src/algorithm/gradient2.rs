use super::{Limit, Sample};
use crate::error::{ConfigError, check_bounds, check_range};

/// Netflix concurrency-limits' `Gradient2Limit`: compare the short-term RTT
/// (this window's) with a long-term exponential average and shrink the limit
/// when the short one grows.
///
/// Per window, with `short` the window RTT:
///
/// - `long ← EMA(long, short)` over [`long_window`](Gradient2Builder::long_window)
///   windows (a plain mean for the first 10); if `long / short > 2`, then
///   `long ← long · 0.95` (recover quickly after a long overload);
/// - in-flight < L / 2 (the limit is not what holds traffic back): no change;
/// - `g = clamp(tolerance · long / short, 0.5, 1.0)`;
///   `L' = L · g + queue_size`; `L ← (1 − smoothing) · L + smoothing · L'`,
///   clamped to `[min_limit, max_limit]`.
///
/// Drops are not a signal for Gradient2 (as in the reference): only latency
/// moves it.
///
/// With the default tolerance of 1.5, Gradient2 accepts latency up to 1.5×
/// the long-term average before shrinking, and `queue_size` keeps it
/// probing upward: it settles *above* a backend's knee. See the simulation
/// in `docs/benchmarks.md`.
#[derive(Clone, Debug)]
pub struct Gradient2 {
    estimate: f64,
    min: u32,
    max: u32,
    smoothing: f64,
    tolerance: f64,
    queue_size: f64,
    long: ExpAvg,
}

#[derive(Clone, Debug)]
struct ExpAvg {
    window: u32,
    warmup: u32,
    count: u32,
    sum: f64,
    value: f64,
}

impl ExpAvg {
    fn add(&mut self, x: f64) -> f64 {
        if self.count < self.warmup {
            self.count += 1;
            self.sum += x;
            self.value = self.sum / f64::from(self.count);
        } else {
            let factor = 2.0 / (f64::from(self.window) + 1.0);
            self.value = self.value * (1.0 - factor) + x * factor;
        }
        self.value
    }
}

/// Builds a [`Gradient2`]; every default is Netflix concurrency-limits'.
#[derive(Clone, Debug)]
pub struct Gradient2Builder {
    initial: u32,
    min: u32,
    max: u32,
    smoothing: f64,
    tolerance: f64,
    queue_size: u32,
    long_window: u32,
}

impl Gradient2 {
    /// A builder with the reference defaults.
    #[must_use]
    pub fn builder() -> Gradient2Builder {
        Gradient2Builder {
            initial: 20,
            min: 20,
            max: 200,
            smoothing: 0.2,
            tolerance: 1.5,
            queue_size: 4,
            long_window: 600,
        }
    }

    /// The long-term RTT average, in seconds (0 before the first window).
    #[must_use]
    pub fn long_rtt_secs(&self) -> f64 {
        self.long.value
    }
}

impl Gradient2Builder {
    /// The starting limit. Default: 20 (Netflix `Gradient2Limit`).
    #[must_use]
    pub fn initial_limit(mut self, limit: u32) -> Self {
        self.initial = limit;
        self
    }

    /// The lowest limit. Default: 20 (Netflix `Gradient2Limit`).
    #[must_use]
    pub fn min_limit(mut self, limit: u32) -> Self {
        self.min = limit;
        self
    }

    /// The highest limit. Default: 200 (Netflix `Gradient2Limit`).
    #[must_use]
    pub fn max_limit(mut self, limit: u32) -> Self {
        self.max = limit;
        self
    }

    /// The weight of each new estimate, in `(0, 1]`. Default: 0.2 (Netflix
    /// `Gradient2Limit`).
    #[must_use]
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// How much the short RTT may exceed the long one before the limit
    /// shrinks, in `[1, 100]`. Default: 1.5 (Netflix `Gradient2Limit`).
    #[must_use]
    pub fn rtt_tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The head-room added to each estimate, at least 1 (with none the
    /// limit could only shrink). Default: 4 (Netflix `Gradient2Limit`).
    #[must_use]
    pub fn queue_size(mut self, queue: u32) -> Self {
        self.queue_size = queue;
        self
    }

    /// The long-term average's span, in windows (at least 10). Default:
    /// 600 (Netflix `Gradient2Limit`; its first 10 windows are a plain
    /// mean).
    #[must_use]
    pub fn long_window(mut self, windows: u32) -> Self {
        self.long_window = windows;
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting: a zero or inverted
    /// bound, an initial limit outside the bounds, a smoothing outside
    /// `(0, 1]`, a tolerance outside `[1, 100]`, a zero queue size, a long
    /// window under 10.
    pub fn build(self) -> Result<Gradient2, ConfigError> {
        check_bounds(self.min, self.initial, self.max)?;
        check_range("smoothing", self.smoothing, 0.0, 1.0, false)?;
        check_range("rtt_tolerance", self.tolerance, 1.0, 100.0, true)?;
        if self.queue_size == 0 {
            return Err(crate::error::config_error(
                "queue_size",
                "must be at least 1: with no head-room the limit can only shrink",
            ));
        }
        if self.long_window < 10 {
            return Err(crate::error::config_error(
                "long_window",
                format!("must be at least 10 windows, got {}", self.long_window),
            ));
        }
        Ok(Gradient2 {
            estimate: f64::from(self.initial),
            min: self.min,
            max: self.max,
            smoothing: self.smoothing,
            tolerance: self.tolerance,
            queue_size: f64::from(self.queue_size),
            long: ExpAvg {
                window: self.long_window,
                warmup: 10,
                count: 0,
                sum: 0.0,
                value: 0.0,
            },
        })
    }
}

impl Limit for Gradient2 {
    fn limit(&self) -> u32 {
        super::to_limit(self.estimate)
    }

    fn update(&mut self, s: &Sample) -> u32 {
        if s.rtt().is_zero() {
            return self.limit();
        }
        let short = s.rtt().as_secs_f64();
        let long = self.long.add(short);
        if long / short > 2.0 {
            self.long.value *= 0.95;
        }
        if f64::from(s.in_flight()) < self.estimate / 2.0 {
            return self.limit();
        }
        let gradient = (self.tolerance * long / short).clamp(0.5, 1.0);
        let new = self.estimate * gradient + self.queue_size;
        let new = self.estimate * (1.0 - self.smoothing) + new * self.smoothing;
        self.estimate = new.clamp(f64::from(self.min), f64::from(self.max));
        self.limit()
    }

    fn name(&self) -> &'static str {
        "gradient2"
    }

    fn no_load_rtt(&self) -> Option<std::time::Duration> {
        std::time::Duration::try_from_secs_f64(self.long.value)
            .ok()
            .filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn s(rtt_ms: u64, in_flight: u32) -> Sample {
        Sample::new(
            Duration::ZERO,
            Duration::from_millis(rtt_ms),
            in_flight,
            false,
        )
    }

    #[test]
    fn grows_by_the_smoothed_queue_when_latency_is_flat() {
        let mut g = Gradient2::builder().build().unwrap();
        assert_eq!(g.no_load_rtt(), None, "no long-term average yet");
        // g = 1: L' = L + 4; L = 0.8 · 20 + 0.2 · 24 = 20.8.
        g.update(&s(100, 20));
        assert!((g.estimate - 20.8).abs() < 1e-9);
        assert_eq!(g.no_load_rtt(), Some(Duration::from_millis(100)));
        // Idle: no change.
        g.update(&s(100, 5));
        assert!((g.estimate - 20.8).abs() < 1e-9);
    }

    #[test]
    fn shrinks_when_the_short_rtt_exceeds_tolerance() {
        let mut g = Gradient2::builder().initial_limit(100).build().unwrap();
        for _ in 0..10 {
            g.update(&s(100, 100));
        }
        let before = g.estimate;
        // long ≈ (10 · 100 + 400)/11 ms warm-up mean → after warm-up, an EMA.
        // Short 400 ms against long ≈ 100.99 ms: g = max(0.5, 1.5 · 100.99/400) = 0.5 (clamped below at 0.5 → 0.3787 → 0.5).
        g.update(&s(400, 100));
        let long = g.long_rtt_secs();
        let gradient = (1.5 * long / 0.4_f64).clamp(0.5, 1.0);
        let expected = before * 0.8 + (before * gradient + 4.0) * 0.2;
        assert!(
            (g.estimate - expected).abs() < 1e-9,
            "{} vs {expected}",
            g.estimate
        );
        assert!(g.estimate < before);
    }

    #[test]
    fn long_rtt_is_a_mean_then_an_ema_and_decays_after_overload() {
        let mut g = Gradient2::builder().build().unwrap();
        for ms in [100, 200] {
            g.update(&s(ms, 0));
        }
        assert!((g.long_rtt_secs() - 0.15).abs() < 1e-12);
        let mut g = Gradient2::builder().long_window(10).build().unwrap();
        for _ in 0..10 {
            g.update(&s(1000, 0));
        }
        // EMA factor 2/11: long = 1.0 · 9/11 + 0.1 · 2/11 ≈ 0.8364 > 2 · 0.1 → ×0.95.
        g.update(&s(100, 0));
        let ema = 1.0 * (1.0 - 2.0 / 11.0) + 0.1 * (2.0 / 11.0);
        assert!((g.long_rtt_secs() - ema * 0.95).abs() < 1e-12);
    }

    #[test]
    fn rejects_bad_config() {
        let f = |b: Gradient2Builder| b.build().unwrap_err().field();
        assert_eq!(f(Gradient2::builder().smoothing(1.5)), "smoothing");
        assert_eq!(f(Gradient2::builder().rtt_tolerance(0.9)), "rtt_tolerance");
        assert_eq!(f(Gradient2::builder().long_window(5)), "long_window");
        assert_eq!(f(Gradient2::builder().max_limit(10)), "min_limit");
        assert_eq!(f(Gradient2::builder().queue_size(0)), "queue_size");
        assert_eq!(f(Gradient2::builder().smoothing(f64::NAN)), "smoothing");
        assert_eq!(
            f(Gradient2::builder().rtt_tolerance(f64::NAN)),
            "rtt_tolerance"
        );
        assert_eq!(f(Gradient2::builder().min_limit(0)), "min_limit");
    }
}
