//! The breaker's builder and its validated configuration ([`Config`]).
//!
//! The builder's `build` is implemented beside the handle it builds
//! (`handle`), so that this module knows nothing of the handle.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use buttress_core::telemetry::Name;

use crate::state::StateTransition;

mod validate;

pub(crate) use validate::Config;

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

/// Builds a [`CircuitBreaker`](crate::CircuitBreaker), from
/// [`CircuitBreaker::builder`](crate::CircuitBreaker::builder). Every
/// setter documents its default and where the default comes from;
/// [`build`](Self::build) validates them all.
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
/// that called [`CircuitBreaker::builder`](crate::CircuitBreaker::builder)
/// (`src/main.rs:42`). Two live breakers never share a name: the second
/// live `"payments"` is named `"payments#2"` (see
/// [`CircuitBreaker::name`](crate::CircuitBreaker::name)).
#[derive(Clone)]
pub struct CircuitBreakerBuilder {
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

impl fmt::Debug for CircuitBreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
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
            .field("seed", &self.seed)
            .finish()
    }
}

impl Default for CircuitBreakerBuilder {
    #[track_caller]
    fn default() -> Self {
        Self::new()
    }
}

impl CircuitBreakerBuilder {
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
    /// [`CircuitBreaker::builder`](crate::CircuitBreaker::builder)
    /// (`file:line`), never a name shared by
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
    /// (above `0.0`, at most `1.0`). Default: `0.5`, resilience4j's default
    /// (Polly v8 uses 0.1).
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

    /// The slow-call share that trips the breaker (above `0.0`, at most
    /// `1.0`). Default:
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

    /// Seeds the open-duration jitter's random numbers, so tests see exact
    /// open durations. Default: seeded from the process's entropy. A keyed
    /// set gives every key's breaker this seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}
