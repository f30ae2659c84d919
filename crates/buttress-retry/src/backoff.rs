//! Backoff schedules and jitter (AWS "Exponential Backoff and Jitter",
//! Polly's decorrelated jitter v2), and the random source they draw from.

use std::time::Duration;

use buttress_core::rng::FastRng;

/// How the un-jittered delay grows with each retry `n` (0 for the first
/// retry), before the [cap](crate::RetryPolicyBuilder::max_delay):
///
/// | kind | delay before retry `n` |
/// |---|---|
/// | [`Constant`](Self::Constant) | `base` |
/// | [`Linear`](Self::Linear) | `base · (n + 1)` |
/// | [`Exponential`](Self::Exponential) | `base · 2ⁿ` |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackoffKind {
    /// The same delay every time.
    Constant,
    /// One more `base` each time.
    Linear,
    /// Doubles each time (the default).
    Exponential,
}

/// How the delay is randomised, so clients that failed together do not
/// retry together. With `t = min(cap, schedule(n))`, a uniform draw `U`:
///
/// | jitter | delay |
/// |---|---|
/// | [`None`](Self::None) | `t` |
/// | [`Full`](Self::Full) (default) | `U(0, t)` |
/// | [`Equal`](Self::Equal) | `t/2 + U(0, t/2)` |
/// | [`Decorrelated`](Self::Decorrelated) | `min(cap, U(base, 3 · previous))`, previous starting at `base` |
/// | [`DecorrelatedV2`](Self::DecorrelatedV2) | Polly's: `x = n + U(0,1)`, `next = 2ˣ · tanh(√(4x))`, delay `= (next − prev) · base / 1.4`, capped |
///
/// The first three are from AWS's "Exponential Backoff and Jitter" (Marc
/// Brooker, 2015), which found full jitter the best trade-off between work
/// done and time taken; the decorrelated forms grow on their own and ignore
/// the [`BackoffKind`]. Polly's v2 keeps the median of the sequence close to
/// an exponential `base · 2ⁿ` schedule while avoiding the clumps of the AWS
/// decorrelated formula.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness: exact, and every client retries in step.
    None,
    /// `U(0, t)`: AWS's recommendation and Envoy's behaviour.
    Full,
    /// `t/2 + U(0, t/2)`: never shorter than half the schedule.
    Equal,
    /// AWS decorrelated jitter.
    Decorrelated,
    /// Polly v8's decorrelated jitter ("v2").
    DecorrelatedV2,
}

/// A source of uniform random numbers in `[0, 1)` for jitter.
///
/// A draw outside `[0, 1]` is clamped into it, and a NaN draw counts as 1,
/// the top of the range: a broken source makes retries wait the longest
/// jittered delay, never retry at once.
///
/// Implemented for [`FastRng`], the default (seeded from the process's
/// entropy, or from [`RetryPolicyBuilder::seed`](crate::RetryPolicyBuilder::seed)),
/// and for closures `Fn() -> f64`, so a test can script every draw.
pub trait Random: Send + Sync + 'static {
    /// A uniform number in `[0, 1)`.
    fn next_f64(&self) -> f64;
}

impl Random for FastRng {
    #[inline]
    fn next_f64(&self) -> f64 {
        FastRng::next_f64(self)
    }
}

impl<F: Fn() -> f64 + Send + Sync + 'static> Random for F {
    #[inline]
    fn next_f64(&self) -> f64 {
        self()
    }
}

/// The validated backoff settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    pub(crate) kind: BackoffKind,
    pub(crate) jitter: Jitter,
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
}

/// Polly's scaling so the first v2 delay averages about `base`.
const RP_SCALING: f64 = 1.0 / 1.4;
/// Polly's `pFactor`.
const P_FACTOR: f64 = 4.0;

impl Schedule {
    /// The delay before retry `n` (0-based). `prev` is the per-request
    /// state of the decorrelated forms; start it at `0.0`.
    pub(crate) fn delay(&self, n: u32, prev: &mut f64, rng: &dyn Random) -> Duration {
        let base = self.base.as_secs_f64();
        let cap = self.cap.as_secs_f64();
        let exp = i32::try_from(n).unwrap_or(i32::MAX);
        let t = match self.kind {
            BackoffKind::Constant => base,
            BackoffKind::Linear => base * (f64::from(n) + 1.0),
            BackoffKind::Exponential => base * 2f64.powi(exp),
        }
        .min(cap);
        let draw = || unit(rng.next_f64());
        let secs = match self.jitter {
            Jitter::None => t,
            Jitter::Full => t * draw(),
            Jitter::Equal => t / 2.0 + draw() * t / 2.0,
            Jitter::Decorrelated => {
                let last = if *prev > 0.0 { *prev } else { base };
                let hi = (last * 3.0).max(base);
                let next = (base + draw() * (hi - base)).min(cap);
                *prev = next;
                next
            }
            Jitter::DecorrelatedV2 => {
                let x = f64::from(n) + draw();
                let next = 2f64.powf(x) * (P_FACTOR * x).sqrt().tanh();
                if !next.is_finite() {
                    *prev = f64::INFINITY;
                    cap
                } else {
                    let d = (next - *prev) * RP_SCALING * base;
                    *prev = next;
                    d.min(cap)
                }
            }
        };
        to_duration(secs, self.cap)
    }
}

/// A jitter draw clamped to `[0, 1]`; NaN counts as 1 (see [`Random`]).
#[inline]
fn unit(x: f64) -> f64 {
    if x.is_nan() { 1.0 } else { x.clamp(0.0, 1.0) }
}

/// Seconds to a duration, clamped to `0..=cap`; NaN (no sensible delay)
/// gives `cap`, the conservative end.
pub(crate) fn to_duration(secs: f64, cap: Duration) -> Duration {
    if secs.is_nan() {
        return cap;
    }
    if secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs).map_or(cap, |d| d.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: BackoffKind, jitter: Jitter) -> Schedule {
        Schedule {
            kind,
            jitter,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        }
    }

    fn seq(s: &Schedule, rng: &dyn Random, n: u32) -> Vec<Duration> {
        let mut prev = 0.0;
        (0..n).map(|i| s.delay(i, &mut prev, rng)).collect()
    }

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn schedules_without_jitter() {
        let half = || 0.5;
        assert_eq!(
            seq(&schedule(BackoffKind::Constant, Jitter::None), &half, 4),
            ms(&[100, 100, 100, 100])
        );
        assert_eq!(
            seq(&schedule(BackoffKind::Linear, Jitter::None), &half, 4),
            ms(&[100, 200, 300, 400])
        );
        assert_eq!(
            seq(&schedule(BackoffKind::Exponential, Jitter::None), &half, 6),
            ms(&[100, 200, 400, 800, 1000, 1000])
        );
    }

    #[test]
    fn jitter_formulas_with_scripted_draws() {
        let half = || 0.5;
        // Full: t · U; Equal: t/2 + U · t/2.
        assert_eq!(
            seq(&schedule(BackoffKind::Exponential, Jitter::Full), &half, 5),
            ms(&[50, 100, 200, 400, 500])
        );
        assert_eq!(
            seq(&schedule(BackoffKind::Exponential, Jitter::Equal), &half, 5),
            ms(&[75, 150, 300, 600, 750])
        );
        // Decorrelated: base + U · (3 · prev − base), prev from base.
        // 100 + .5·200 = 200; 100 + .5·950 = 575; 100 + .5·1625 = 912.5;
        // 100 + .5·2637.5 capped at 1000.
        let mut want = ms(&[200, 350, 575]);
        want.extend([Duration::from_micros(912_500), Duration::from_secs(1)]);
        assert_eq!(
            seq(
                &schedule(BackoffKind::Exponential, Jitter::Decorrelated),
                &half,
                5
            ),
            want
        );
        // The extreme draws stay within [0, cap].
        let zero = || 0.0;
        let one = || 0.999_999_999;
        for jitter in [
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
            Jitter::DecorrelatedV2,
        ] {
            for rng in [&zero as &dyn Random, &one] {
                for d in seq(&schedule(BackoffKind::Exponential, jitter), rng, 64) {
                    assert!(d <= Duration::from_secs(1), "{jitter:?}: {d:?}");
                }
            }
        }
    }

    /// A source that returns NaN (a broken custom source) must not make
    /// retries immediate: each draw counts as the top of the range.
    #[test]
    fn nan_draws_wait_the_longest_jittered_delay() {
        struct Broken;
        impl Random for Broken {
            fn next_f64(&self) -> f64 {
                f64::NAN
            }
        }
        let nan = || f64::NAN;
        let top = || 1.0;
        for jitter in [
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
            Jitter::DecorrelatedV2,
        ] {
            let s = schedule(BackoffKind::Exponential, jitter);
            let want = seq(&s, &top, 8);
            assert!(want.iter().all(|d| !d.is_zero()), "{jitter:?}: {want:?}");
            assert_eq!(seq(&s, &nan, 8), want, "{jitter:?}, closure");
            assert_eq!(seq(&s, &Broken, 8), want, "{jitter:?}, Random impl");
        }
        // Out-of-range draws are clamped, not trusted.
        let s = schedule(BackoffKind::Exponential, Jitter::Full);
        assert_eq!(seq(&s, &|| f64::INFINITY, 3), seq(&s, &top, 3));
        assert_eq!(seq(&s, &|| -5.0, 3), ms(&[0, 0, 0]));
    }

    #[test]
    fn polly_v2_matches_its_formula() {
        let half = || 0.5;
        let s = Schedule {
            kind: BackoffKind::Exponential,
            jitter: Jitter::DecorrelatedV2,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(3600),
        };
        let mut prev = 0.0;
        let mut expected_prev = 0.0;
        for n in 0..10u32 {
            let x = f64::from(n) + 0.5;
            let next = 2f64.powf(x) * (4.0 * x).sqrt().tanh();
            let want = (next - expected_prev) / 1.4;
            expected_prev = next;
            let got = s.delay(n, &mut prev, &half).as_secs_f64();
            assert!((got - want).abs() < 1e-9, "n={n}: {got} vs {want}");
        }
    }
}
