//! The breaker's builder and its validated configuration.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use buttress_core::telemetry::Name;

use crate::error::ConfigError;
use crate::handle::CircuitBreaker;
use crate::state::StateTransition;

/// The most half-open probes a breaker can be configured with.
pub const MAX_HALF_OPEN_PROBES: u32 = 1000;
/// The largest count window (in calls).
pub const MAX_COUNT_WINDOW: u32 = 1_000_000;
/// The most buckets a time window can have.
pub const MAX_TIME_BUCKETS: u32 = 1000;

pub(crate) type Listener = Arc<dyn Fn(&StateTransition) + Send + Sync>;

/// Which calls the breaker judges the failure rate over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WindowKind {
    /// The last `size` calls: each new call pushes the oldest out.
    Count {
        /// How many calls.
        size: u32,
    },
    /// The calls of the last `duration`, in `buckets` equal slices; the
    /// oldest slice leaves the window whole.
    Time {
        /// How far back.
        duration: Duration,
        /// How many slices.
        buckets: u32,
    },
}

/// Builds a [`CircuitBreaker`]. Every setter documents its default and where
/// the default comes from; [`build`](Self::build) validates them all.
///
/// ```
/// use std::time::Duration;
/// use buttress_breaker::CircuitBreaker;
///
/// let breaker = CircuitBreaker::builder()
///     .name("payments")
///     .failure_rate_threshold(0.25)
///     .count_window(50)
///     .minimum_calls(10)
///     .open_duration(Duration::from_secs(10))
///     .build()
///     .expect("valid configuration");
/// assert_eq!(breaker.name(), "payments");
/// ```
///
/// # Names
///
/// A breaker built without [`name`](Self::name) is named after the line
/// that called [`CircuitBreaker::builder`] (`src/main.rs:42`). Two live
/// breakers never share a name: the second live `"payments"` is named
/// `"payments#2"` (see [`CircuitBreaker::name`]).
#[derive(Clone)]
pub struct Builder {
    name: Name,
    failure_rate_threshold: f64,
    window: WindowKind,
    minimum_calls: Option<u32>,
    slow_call_duration: Option<Duration>,
    slow_call_rate_threshold: f64,
    consecutive_failures: Option<u32>,
    open_duration: Duration,
    open_duration_multiplier: f64,
    max_open_duration: Option<Duration>,
    open_duration_jitter: f64,
    half_open_probes: u32,
    half_open_max_wait: Duration,
    listener: Option<Listener>,
    seed: Option<u64>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("failure_rate_threshold", &self.failure_rate_threshold)
            .field("window", &self.window)
            .field("minimum_calls", &self.minimum_calls)
            .field("slow_call_duration", &self.slow_call_duration)
            .field("slow_call_rate_threshold", &self.slow_call_rate_threshold)
            .field("consecutive_failures", &self.consecutive_failures)
            .field("open_duration", &self.open_duration)
            .field("open_duration_multiplier", &self.open_duration_multiplier)
            .field("max_open_duration", &self.max_open_duration)
            .field("open_duration_jitter", &self.open_duration_jitter)
            .field("half_open_probes", &self.half_open_probes)
            .field("half_open_max_wait", &self.half_open_max_wait)
            .field("listener", &self.listener.as_ref().map(|_| ".."))
            .finish()
    }
}

impl Default for Builder {
    #[track_caller]
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// A builder with every default, named after the caller's line until
    /// [`name`](Self::name) says otherwise.
    #[must_use]
    #[track_caller]
    pub fn new() -> Self {
        Self {
            name: Name::caller(),
            failure_rate_threshold: 0.5,
            window: WindowKind::Count { size: 100 },
            minimum_calls: None,
            slow_call_duration: None,
            slow_call_rate_threshold: 1.0,
            consecutive_failures: None,
            open_duration: Duration::from_secs(30),
            open_duration_multiplier: 2.0,
            max_open_duration: None,
            open_duration_jitter: 0.1,
            half_open_probes: 5,
            half_open_max_wait: Duration::from_secs(60),
            listener: None,
            seed: None,
        }
    }

    /// The breaker's name: the `name` label on its metrics, the `name`
    /// field on its tracing events, and the breaker a [`CircuitOpen`]
    /// names. Default: the source line that called
    /// [`CircuitBreaker::builder`] (`file:line`), never a name shared by
    /// unrelated breakers. Names are interned for the life of the process:
    /// use a fixed name per dependency, never one built from request data.
    ///
    /// [`CircuitOpen`]: crate::CircuitOpen
    #[must_use]
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = name.into();
        self
    }

    /// Trip when the share of failed calls in the window reaches this
    /// (`0.0..=1.0`). Default: `0.5`, resilience4j's default (Polly v8
    /// uses 0.1).
    #[must_use]
    pub fn failure_rate_threshold(mut self, threshold: f64) -> Self {
        self.failure_rate_threshold = threshold;
        self
    }

    /// Judge over the last `size` calls. This is the default, with 100
    /// calls: resilience4j's default window. Each call costs O(1) and no
    /// clock read.
    #[must_use]
    pub fn count_window(mut self, size: u32) -> Self {
        self.window = WindowKind::Count { size };
        self
    }

    /// Judge over the calls of the last `duration`, kept in `buckets` equal
    /// slices (Polly v8's default is 30 s in 10 slices). Each call reads the
    /// clock once.
    #[must_use]
    pub fn time_window(mut self, duration: Duration, buckets: u32) -> Self {
        self.window = WindowKind::Time { duration, buckets };
        self
    }

    /// The fewest calls in the window before the failure rate is judged.
    /// Default: 20 (resilience4j and Polly use 100, which on a 100-call
    /// window means no trip before the window is full; 20 reacts sooner
    /// while still ignoring a handful of unlucky calls). With a count window
    /// smaller than 20 and no explicit setting, the window size is used.
    #[must_use]
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.minimum_calls = Some(calls);
        self
    }

    /// Counts calls that take at least `duration` as slow, and trips when
    /// the share of slow calls reaches
    /// [`slow_call_rate_threshold`](Self::slow_call_rate_threshold).
    /// Default: off (resilience4j's 60 s at 100 % is effectively off too).
    /// Turning it on costs two clock reads per call.
    #[must_use]
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.slow_call_duration = Some(duration);
        self
    }

    /// The slow-call share that trips the breaker (`0.0..=1.0`). Default:
    /// `1.0` (resilience4j's default). Only used with
    /// [`slow_call_duration`](Self::slow_call_duration).
    #[must_use]
    pub fn slow_call_rate_threshold(mut self, threshold: f64) -> Self {
        self.slow_call_rate_threshold = threshold;
        self
    }

    /// Also trip after `n` failures in a row, whatever the window says.
    /// Default: off (as in resilience4j and Polly; Hystrix-era breakers
    /// used only this rule).
    #[must_use]
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = Some(n);
        self
    }

    /// How long the breaker stays open after its first trip. Default: 30 s
    /// (between Polly's 5 s and resilience4j's 60 s).
    #[must_use]
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.open_duration = duration;
        self
    }

    /// Each consecutive trip (a trip again from half-open, without a close
    /// in between) multiplies the open duration by this (`>= 1.0`; `1.0`
    /// keeps it constant). Default: `2.0` (resilience4j's exponential
    /// back-off interval function).
    #[must_use]
    pub fn open_duration_multiplier(mut self, multiplier: f64) -> Self {
        self.open_duration_multiplier = multiplier;
        self
    }

    /// The cap on the growing open duration. Default: 300 s, or the open
    /// duration itself if that is longer.
    #[must_use]
    pub fn max_open_duration(mut self, duration: Duration) -> Self {
        self.max_open_duration = Some(duration);
        self
    }

    /// Shortens each open duration by a random share of up to this
    /// (`0.0..1.0`), so many clients that tripped together do not probe
    /// together. Default: `0.1` (the customary ±10 % of jittered timers).
    #[must_use]
    pub fn open_duration_jitter(mut self, jitter: f64) -> Self {
        self.open_duration_jitter = jitter;
        self
    }

    /// How many calls the half-open state lets through to decide. Default:
    /// 5 (between Polly's 1 and resilience4j's 10). At most
    /// [`MAX_HALF_OPEN_PROBES`].
    #[must_use]
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.half_open_probes = probes;
        self
    }

    /// The longest the half-open state waits for a verdict once every probe
    /// is out. A probe whose call never completes (a hung backend with no
    /// timeout inside the breaker) would otherwise hold its permit, and the
    /// breaker half-open and rejecting, forever. Past this bound the
    /// outstanding probes are taken as failed: the breaker re-opens
    /// ([`TransitionReason::ProbesTimedOut`](crate::TransitionReason::ProbesTimedOut)),
    /// and a new half-open period with fresh probes follows the open
    /// duration; a late outcome of an old probe is not counted.
    ///
    /// Default: 60 s, resilience4j's slow-call threshold: a call outstanding
    /// that long is slow by resilience4j's own default. (resilience4j's
    /// `maxWaitDurationInHalfOpenState` defaults to waiting forever.) Set it
    /// above the slowest call the backend legitimately makes, or the probes
    /// of a healthy but slow backend time out and the breaker never closes;
    /// `Duration::MAX` waits forever. The bound is checked when a call
    /// arrives, so it costs nothing on the closed path.
    #[must_use]
    pub fn half_open_max_wait(mut self, duration: Duration) -> Self {
        self.half_open_max_wait = duration;
        self
    }

    /// Calls `listener` after every state change. Events are only built
    /// when a listener is set. The listener runs on the thread that caused
    /// the change, after the breaker's internal lock is released, so it may
    /// call back into the breaker; keep it short.
    #[must_use]
    pub fn on_state_change<F>(mut self, listener: F) -> Self
    where
        F: Fn(&StateTransition) + Send + Sync + 'static,
    {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Seeds the jitter's random numbers, so tests see exact open
    /// durations. Default: seeded from the process's entropy.
    #[must_use]
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Validates the configuration and builds the breaker.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting: an empty name, a
    /// threshold outside
    /// `0.0..=1.0`, a zero or oversized window, zero or too many half-open
    /// probes, minimum calls of zero or above the count window, a zero open
    /// duration or slow-call duration, a multiplier below 1, a cap below
    /// the open duration, a jitter outside `0.0..1.0`, zero consecutive
    /// failures, or a zero half-open wait.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        Ok(CircuitBreaker::from_config(Config::validate(self)?))
    }
}

fn unit_interval(field: &'static str, v: f64) -> Result<u32, ConfigError> {
    if !(0.0..=1.0).contains(&v) {
        return Err(crate::error::config_error(
            field,
            format!("must be within 0.0..=1.0, got {v}"),
        ));
    }
    // Parts per million: thresholds compare in exact integer arithmetic.
    Ok((v * 1e6).round() as u32)
}

/// The validated, immutable configuration: everything a breaker needs,
/// with the name it asks for (its effective name is claimed when it is
/// built). A keyed set clones it for each key's breaker.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) name: Name,
    pub(crate) listener: Option<Listener>,
    pub(crate) seed: Option<u64>,
    pub(crate) failure_ppm: u32,
    pub(crate) slow_ppm: u32,
    pub(crate) window: WindowKind,
    pub(crate) minimum_calls: u32,
    pub(crate) slow_call_nanos: Option<u64>,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) open_duration: Duration,
    pub(crate) open_duration_multiplier: f64,
    pub(crate) max_open_duration: Duration,
    pub(crate) open_duration_jitter: f64,
    pub(crate) half_open_probes: u32,
    pub(crate) half_open_max_wait_nanos: u64,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("name", &self.name)
            .field("window", &self.window)
            .field("minimum_calls", &self.minimum_calls)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub(crate) fn validate(b: Builder) -> Result<Self, ConfigError> {
        if b.name.as_str().is_empty() {
            return Err(crate::error::config_error("name", "must not be empty"));
        }
        let failure_ppm = unit_interval("failure_rate_threshold", b.failure_rate_threshold)?;
        let slow_ppm = unit_interval("slow_call_rate_threshold", b.slow_call_rate_threshold)?;
        let minimum_calls = match b.window {
            WindowKind::Count { size } => {
                if size == 0 || size > MAX_COUNT_WINDOW {
                    return Err(crate::error::config_error(
                        "count_window",
                        format!("must be within 1..={MAX_COUNT_WINDOW} calls, got {size}"),
                    ));
                }
                match b.minimum_calls {
                    Some(m) if m > size => {
                        return Err(crate::error::config_error(
                            "minimum_calls",
                            format!("({m}) must not exceed the count window ({size} calls)"),
                        ));
                    }
                    Some(m) => m,
                    None => 20.min(size),
                }
            }
            WindowKind::Time { duration, buckets } => {
                if buckets == 0 || buckets > MAX_TIME_BUCKETS {
                    return Err(crate::error::config_error(
                        "time_window",
                        format!("buckets must be within 1..={MAX_TIME_BUCKETS}, got {buckets}"),
                    ));
                }
                if duration < Duration::from_millis(u64::from(buckets)) {
                    return Err(crate::error::config_error(
                        "time_window",
                        format!(
                            "duration {duration:?} is too short: each of the {buckets} buckets must span at least 1ms"
                        ),
                    ));
                }
                b.minimum_calls.unwrap_or(20)
            }
        };
        if minimum_calls == 0 {
            return Err(crate::error::config_error(
                "minimum_calls",
                "must be at least 1",
            ));
        }
        if b.slow_call_duration == Some(Duration::ZERO) {
            return Err(crate::error::config_error(
                "slow_call_duration",
                "must be greater than zero",
            ));
        }
        if b.consecutive_failures == Some(0) {
            return Err(crate::error::config_error(
                "consecutive_failures",
                "must be at least 1",
            ));
        }
        if b.open_duration.is_zero() {
            return Err(crate::error::config_error(
                "open_duration",
                "must be greater than zero",
            ));
        }
        if !(b.open_duration_multiplier >= 1.0 && b.open_duration_multiplier.is_finite()) {
            return Err(crate::error::config_error(
                "open_duration_multiplier",
                format!(
                    "must be a finite number >= 1.0, got {}",
                    b.open_duration_multiplier
                ),
            ));
        }
        let max_open_duration = match b.max_open_duration {
            Some(max) if max < b.open_duration => {
                return Err(crate::error::config_error(
                    "max_open_duration",
                    format!(
                        "({max:?}) must not be below open_duration ({:?})",
                        b.open_duration
                    ),
                ));
            }
            Some(max) => max,
            None => b.open_duration.max(Duration::from_secs(300)),
        };
        if !(0.0..1.0).contains(&b.open_duration_jitter) {
            return Err(crate::error::config_error(
                "open_duration_jitter",
                format!("must be within 0.0..1.0, got {}", b.open_duration_jitter),
            ));
        }
        if b.half_open_probes == 0 || b.half_open_probes > MAX_HALF_OPEN_PROBES {
            return Err(crate::error::config_error(
                "half_open_probes",
                format!(
                    "must be within 1..={MAX_HALF_OPEN_PROBES}, got {}",
                    b.half_open_probes
                ),
            ));
        }
        if b.half_open_max_wait.is_zero() {
            return Err(crate::error::config_error(
                "half_open_max_wait",
                "must be greater than zero",
            ));
        }
        Ok(Self {
            name: b.name,
            listener: b.listener,
            seed: b.seed,
            failure_ppm,
            slow_ppm,
            window: b.window,
            minimum_calls,
            slow_call_nanos: b
                .slow_call_duration
                .map(buttress_core::time::saturating_nanos),
            consecutive_failures: b.consecutive_failures,
            open_duration: b.open_duration,
            open_duration_multiplier: b.open_duration_multiplier,
            max_open_duration,
            open_duration_jitter: b.open_duration_jitter,
            half_open_probes: b.half_open_probes,
            half_open_max_wait_nanos: buttress_core::time::saturating_nanos(b.half_open_max_wait),
        })
    }

    /// The fewest of `n` calls that make a rate of at least `ppm`
    /// (at least one): `ceil(ppm · n / 10⁶)`, in exact integer arithmetic.
    pub(crate) fn needed(ppm: u32, n: u64) -> u64 {
        (u128::from(ppm) * u128::from(n))
            .div_ceil(1_000_000)
            .max(1)
            .try_into()
            .unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(b: Builder) -> &'static str {
        b.build().unwrap_err().field()
    }

    #[test]
    fn rejects_bad_settings_by_name() {
        let b = Builder::new;
        assert_eq!(
            field(b().failure_rate_threshold(-0.1)),
            "failure_rate_threshold"
        );
        assert_eq!(
            field(b().failure_rate_threshold(f64::NAN)),
            "failure_rate_threshold"
        );
        assert_eq!(
            field(b().slow_call_rate_threshold(1.01)),
            "slow_call_rate_threshold"
        );
        assert_eq!(field(b().count_window(0)), "count_window");
        assert_eq!(field(b().count_window(2_000_000)), "count_window");
        assert_eq!(field(b().time_window(Duration::ZERO, 10)), "time_window");
        assert_eq!(
            field(b().time_window(Duration::from_secs(1), 0)),
            "time_window"
        );
        assert_eq!(field(b().half_open_probes(0)), "half_open_probes");
        assert_eq!(field(b().half_open_probes(1001)), "half_open_probes");
        assert_eq!(
            field(b().count_window(10).minimum_calls(11)),
            "minimum_calls"
        );
        assert_eq!(field(b().minimum_calls(0)), "minimum_calls");
        assert_eq!(field(b().open_duration(Duration::ZERO)), "open_duration");
        assert_eq!(
            field(b().open_duration_multiplier(0.5)),
            "open_duration_multiplier"
        );
        assert_eq!(
            field(
                b().open_duration(Duration::from_secs(60))
                    .max_open_duration(Duration::from_secs(59))
            ),
            "max_open_duration"
        );
        assert_eq!(field(b().open_duration_jitter(1.0)), "open_duration_jitter");
        assert_eq!(
            field(b().slow_call_duration(Duration::ZERO)),
            "slow_call_duration"
        );
        assert_eq!(field(b().consecutive_failures(0)), "consecutive_failures");
        assert_eq!(field(b().name("")), "name");
        assert_eq!(
            field(b().half_open_max_wait(Duration::ZERO)),
            "half_open_max_wait"
        );
    }

    #[test]
    fn defaults_build_and_small_windows_cap_minimum_calls() {
        assert!(Builder::new().build().is_ok());
        let c = Config::validate(Builder::new().count_window(5)).unwrap();
        assert_eq!(c.minimum_calls, 5);
        let c = Config::validate(Builder::new()).unwrap();
        assert_eq!(c.minimum_calls, 20);
        assert_eq!(c.failure_ppm, 500_000);
        assert!(
            c.name.as_str().contains("config.rs:"),
            "named after the caller's line: {}",
            c.name
        );
    }

    #[test]
    fn needed_is_an_exact_ceiling() {
        assert_eq!(Config::needed(500_000, 100), 50);
        assert_eq!(Config::needed(500_000, 101), 51);
        // 0.1 × 30 is 3.0000000000000004 in floating point; here it is 3.
        assert_eq!(Config::needed(100_000, 30), 3);
        assert_eq!(Config::needed(0, 30), 1);
        assert_eq!(Config::needed(1_000_000, 7), 7);
    }
}
