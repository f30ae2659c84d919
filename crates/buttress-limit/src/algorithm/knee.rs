use std::time::Duration;

use super::{Limit, Sample};
use crate::error::{ConfigError, check_bounds, check_range, config_error};

/// A window whose RTT is within 3 % of the no-load RTT is at or below the
/// knee: the limit grows by its growth share. (A window's mean RTT wanders
/// by a few per cent when call latencies are noisy, and the lowest one is
/// the no-load RTT: a tighter band would stall growth on noise.)
const CALM: f64 = 0.97;

/// Finds the knee of the backend's latency curve: the most calls it serves
/// at its no-load latency. The crate's recommended algorithm, built to
/// converge within a few windows when capacity or latency changes (the
/// `simulation` test holds its defaults to that; `docs/limit.md` has the
/// figures).
///
/// With `rtt₀` the no-load RTT (the lowest window RTT seen) and `rtt` this
/// window's, Little's law at a saturated backend says it serves
/// `L · rtt₀ / rtt` of the limit `L` and the rest queue. Per window:
///
/// - a drop: `L ← L · backoff_ratio`;
/// - in-flight · 2 < L (the limit is not what holds traffic back): no
///   change;
/// - the queue over [`tolerance`](KneeBuilder::tolerance) of the limit
///   (`rtt₀ / rtt < 1 − tolerance`) in two windows in a row (so a window
///   that mixes calls from before a change does not decide alone):
///   `L ← L · rtt₀ / rtt · (1 + tolerance / 2)`, down to what the backend
///   serves in one step, not one call per window;
/// - the RTT within 3 % of `rtt₀` (at or below the knee):
///   `L ← L · (1 + growth)`; doubling instead before the first queue is
///   seen (a slow start) and from the third such window in a row (the
///   backend has room to spare);
/// - a queue under a third of the tolerance: `L ← L + 1`;
/// - otherwise no change; the limit stays within `[min_limit, max_limit]`.
///
/// Two checks keep `rtt₀` true, as the simple minimum cannot:
///
/// - **a slower backend is not a queue**: a queue drained by a decrease
///   makes the next window's RTT fall in proportion to the limit. If it
///   fell by less than half of that, the backend itself became slower (its
///   no-load latency rose, its capacity did not fall): that RTT becomes
///   `rtt₀` and the limit goes back to where it was, so a slower backend
///   costs a dip of a window or two, not a collapse;
/// - **a faster backend is found from below**: an RTT more than the
///   tolerance under `rtt₀` may still hold a queue, so the limit steps down
///   by the tolerance each window while the RTT keeps falling, and
///   `rtt₀` is the RTT where it stops.
///
/// Knee draws no random numbers: it needs no seed. It is meant for the
/// limiter's default, RTT-scaled windows
/// ([`AdaptiveLimitBuilder::window`](crate::AdaptiveLimitBuilder::window)).
#[derive(Clone, Debug)]
pub struct Knee {
    estimate: f64,
    min: u32,
    max: u32,
    tolerance: f64,
    growth: f64,
    backoff_ratio: f64,
    /// In seconds; 0 before the first window.
    no_load: f64,
    /// The last decrease, to be checked by the next window.
    pending: Option<Decrease>,
    /// The last window's queue was over the tolerance.
    over: bool,
    /// No queue seen yet: the limit doubles while the RTT is the no-load one.
    slow_start: bool,
    /// Stepping down to find a lower no-load RTT.
    probing: bool,
    /// Windows in a row at the no-load RTT with the limit in use.
    calm: u32,
}

#[derive(Clone, Copy, Debug)]
struct Decrease {
    /// The limit before the decrease.
    limit: f64,
    /// The RTT that caused it, in seconds.
    rtt: f64,
}

/// Builds a [`Knee`]; every default is documented on its setter.
#[derive(Clone, Debug)]
pub struct KneeBuilder {
    initial: u32,
    min: u32,
    max: u32,
    tolerance: f64,
    growth: f64,
    backoff_ratio: f64,
}

impl Knee {
    /// A builder with the defaults.
    #[must_use]
    pub fn builder() -> KneeBuilder {
        KneeBuilder {
            initial: 20,
            min: 1,
            max: 1000,
            tolerance: 0.15,
            growth: 0.5,
            backoff_ratio: 0.9,
        }
    }

    /// The current no-load RTT estimate (zero before the first window).
    #[must_use]
    pub fn rtt_noload(&self) -> Duration {
        Duration::from_secs_f64(self.no_load)
    }

    fn clamp(&self, x: f64) -> f64 {
        x.clamp(f64::from(self.min), f64::from(self.max))
    }
}

impl KneeBuilder {
    /// The starting limit. Default: 20 (as Netflix concurrency-limits'
    /// algorithms).
    #[must_use]
    pub fn initial_limit(mut self, limit: u32) -> Self {
        self.initial = limit;
        self
    }

    /// The lowest limit. Default: 1.
    #[must_use]
    pub fn min_limit(mut self, limit: u32) -> Self {
        self.min = limit;
        self
    }

    /// The highest limit. Default: 1000 (Netflix `VegasLimit`'s).
    #[must_use]
    pub fn max_limit(mut self, limit: u32) -> Self {
        self.max = limit;
        self
    }

    /// The share of the limit allowed to queue before the limit shrinks,
    /// in `(0, 0.5]`: the window RTT may exceed the no-load RTT by
    /// `1 / (1 − tolerance)` (18 % for 0.15). Default: 0.15, so the limit
    /// settles between about 1.05 and 1.18 times the knee: the backend is
    /// kept busy, and a caller waits at most a few per cent more than at
    /// no load.
    #[must_use]
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The limit's growth per window while the RTT is the no-load one, as a
    /// share of the limit, in `(0, 1]`; at least one call per window.
    /// Default: 0.5 (from half the capacity back to it within two windows
    /// when capacity returns).
    #[must_use]
    pub fn growth(mut self, growth: f64) -> Self {
        self.growth = growth;
        self
    }

    /// The factor applied on a drop, in `[0.5, 1.0)`. Default: 0.9 (Netflix
    /// `AIMDLimit`'s).
    #[must_use]
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.backoff_ratio = ratio;
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting: a zero or inverted
    /// bound, an initial limit outside the bounds, a tolerance outside
    /// `(0, 0.5]`, a growth outside `(0, 1]`, a backoff ratio outside
    /// `[0.5, 1.0)`.
    pub fn build(self) -> Result<Knee, ConfigError> {
        check_bounds(self.min, self.initial, self.max)?;
        check_range("tolerance", self.tolerance, 0.0, 0.5, false)?;
        check_range("growth", self.growth, 0.0, 1.0, false)?;
        if !(self.backoff_ratio.is_finite() && (0.5..1.0).contains(&self.backoff_ratio)) {
            return Err(config_error(
                "backoff_ratio",
                format!("must be within [0.5, 1.0), got {}", self.backoff_ratio),
            ));
        }
        Ok(Knee {
            estimate: f64::from(self.initial),
            min: self.min,
            max: self.max,
            tolerance: self.tolerance,
            growth: self.growth,
            backoff_ratio: self.backoff_ratio,
            no_load: 0.0,
            pending: None,
            over: false,
            slow_start: true,
            probing: false,
            calm: 0,
        })
    }
}

impl Limit for Knee {
    fn limit(&self) -> u32 {
        super::to_limit(self.estimate)
    }

    fn update(&mut self, s: &Sample) -> u32 {
        let rtt = s.rtt().as_secs_f64();
        if s.dropped() {
            self.pending = None;
            self.over = false;
            self.estimate = self.clamp(self.estimate * self.backoff_ratio);
            return self.limit();
        }
        if rtt == 0.0 {
            return self.limit();
        }
        let busy = f64::from(s.in_flight()) * 2.0 >= self.estimate;
        if self.no_load == 0.0 || rtt < self.no_load {
            let falling = self.probing || rtt < self.no_load * (1.0 - self.tolerance);
            let step = rtt < self.no_load * (1.0 - self.tolerance / 3.0);
            self.no_load = rtt;
            if falling && step && busy {
                // The backend became faster, and this RTT may still hold a
                // queue: step below the limit until the RTT stops falling,
                // which shows the new no-load RTT.
                self.probing = true;
                self.pending = None;
                self.over = false;
                self.estimate = self.clamp(self.estimate * (1.0 - self.tolerance));
                return self.limit();
            }
        }
        self.probing = false;
        if !busy {
            self.pending = None;
            self.over = false;
            return self.limit();
        }
        if let Some(d) = self.pending.take() {
            // The RTT a drained queue leaves (Little's law at the same
            // throughput), against the RTT had the decrease drained nothing.
            let drained = d.rtt * self.estimate / d.limit;
            if rtt > (drained + d.rtt) / 2.0 {
                // Smaller and no faster: the backend itself is slower.
                self.no_load = rtt;
                self.estimate = self.clamp(d.limit);
            }
            // Otherwise the queue drained. Either way this window still
            // held calls admitted before the decrease: it changes nothing
            // else.
            return self.limit();
        }
        let served = self.no_load / rtt;
        let l = self.estimate;
        if served < 1.0 - self.tolerance {
            self.slow_start = false;
            // Two windows in a row, so the decision is not taken on a
            // window that mixes calls from before a change.
            if self.over {
                self.over = false;
                self.pending = Some(Decrease { limit: l, rtt });
                self.estimate = self.clamp(l * served * (1.0 + self.tolerance / 2.0));
            } else {
                self.over = true;
            }
            return self.limit();
        }
        self.over = false;
        if served < CALM {
            self.calm = 0;
        }
        if served >= CALM {
            // At the no-load RTT: the knee may be anywhere above. Double
            // until the first queue (slow start), then grow by `growth`.
            self.calm = self.calm.saturating_add(1);
            let growth = if self.slow_start || self.calm > 2 {
                1.0
            } else {
                self.growth
            };
            self.estimate = self.clamp(l + (growth * l).max(1.0));
        } else if served > 1.0 - self.tolerance / 3.0 {
            // Just past the knee: one call at a time.
            self.estimate = self.clamp(l + 1.0);
        }
        self.limit()
    }

    fn name(&self) -> &'static str {
        "knee"
    }

    fn no_load_rtt(&self) -> Option<Duration> {
        Some(self.rtt_noload()).filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::super::to_limit;
    use super::*;

    fn s(rtt_ms: u64, in_flight: u32) -> Sample {
        Sample::new(
            Duration::ZERO,
            Duration::from_millis(rtt_ms),
            in_flight,
            false,
        )
    }

    #[test]
    fn doubles_then_cuts_to_what_the_backend_serves_and_checks_it() {
        let mut k = Knee::builder().build().unwrap();
        assert_eq!(k.no_load_rtt(), None);
        // Slow start: the first window sets the no-load RTT and doubles.
        assert_eq!(k.update(&s(100, 20)), 40);
        assert_eq!(k.no_load_rtt(), Some(Duration::from_millis(100)));
        // Idle: no change.
        assert_eq!(k.update(&s(100, 5)), 40);
        // Twice the no-load RTT: half queues. The first such window only
        // arms the decrease; the second cuts to 40 · 0.5 · 1.075.
        assert_eq!(k.update(&s(200, 40)), 40);
        assert_eq!(k.update(&s(200, 40)), 21);
        // The next window checks (the RTT fell: a queue drained) and holds.
        assert_eq!(k.update(&s(110, 40)), 21);
        assert_eq!(k.no_load_rtt(), Some(Duration::from_millis(100)));
        // 10 % over no-load: within the tolerance, no change.
        assert_eq!(k.update(&s(110, 21)), 21);
        // Just past the knee (4 % over): one more call.
        assert_eq!(k.update(&s(104, 21)), 22);
        // At the no-load RTT after the slow start: × 1.5.
        assert_eq!(k.update(&s(100, 22)), 33);
        // A drop: × 0.9.
        let drop = Sample::new(Duration::ZERO, Duration::from_millis(100), 33, true);
        assert_eq!(k.update(&drop), 30);
    }

    #[test]
    fn a_slower_backend_is_not_mistaken_for_a_queue() {
        let mut k = Knee::builder().initial_limit(50).build().unwrap();
        k.update(&s(100, 50));
        let before = k.limit();
        // The backend now takes 200 ms whatever the concurrency.
        assert_eq!(k.update(&s(200, before)), before);
        let cut = k.update(&s(200, before));
        assert!(cut < before * 3 / 4, "{cut}");
        // Smaller and no faster: 200 ms is the new no-load RTT, the limit
        // comes back.
        assert_eq!(k.update(&s(200, cut)), before);
        assert_eq!(k.no_load_rtt(), Some(Duration::from_millis(200)));
        // At the new no-load RTT it grows again.
        assert!(k.update(&s(200, before)) > before);
    }

    #[test]
    fn a_faster_backend_is_found_from_below() {
        let mut k = Knee::builder().initial_limit(100).build().unwrap();
        k.update(&s(200, 100));
        let l = k.limit();
        // The RTT falls by more than the tolerance: one step down per
        // window while it keeps falling.
        assert_eq!(k.update(&s(150, l)), to_limit(f64::from(l) * 0.85));
        let l2 = k.limit();
        assert!(k.update(&s(120, l2)) < l2);
        // It stopped falling: 118 ms is the no-load RTT, and growth resumes.
        let l3 = k.limit();
        assert!(k.update(&s(118, l3)) > l3);
        assert_eq!(k.no_load_rtt(), Some(Duration::from_millis(118)));
    }

    #[test]
    fn rejects_bad_config() {
        let f = |b: KneeBuilder| b.build().unwrap_err().field();
        assert_eq!(f(Knee::builder().tolerance(0.0)), "tolerance");
        assert_eq!(f(Knee::builder().tolerance(0.6)), "tolerance");
        assert_eq!(f(Knee::builder().growth(f64::NAN)), "growth");
        assert_eq!(f(Knee::builder().backoff_ratio(1.0)), "backoff_ratio");
        assert_eq!(f(Knee::builder().min_limit(0)), "min_limit");
        assert_eq!(f(Knee::builder().initial_limit(5000)), "initial_limit");
    }
}
