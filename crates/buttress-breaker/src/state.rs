//! Breaker states, transitions and the metrics snapshot.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use buttress_core::telemetry::Name;
use buttress_core::time::Instant;

/// A circuit breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls pass and are counted.
    Closed,
    /// Calls are rejected at once until the open duration has passed.
    Open,
    /// A bounded number of probe calls pass; their outcomes decide.
    HalfOpen,
    /// Forced open by [`force_open`](crate::CircuitBreaker::force_open):
    /// every call is rejected until [`reset`](crate::CircuitBreaker::reset)
    /// or [`force_closed`](crate::CircuitBreaker::force_closed).
    ForcedOpen,
    /// Forced closed by [`force_closed`](crate::CircuitBreaker::force_closed):
    /// every call passes and nothing is counted until
    /// [`reset`](crate::CircuitBreaker::reset) or
    /// [`force_open`](crate::CircuitBreaker::force_open).
    ForcedClosed,
}

impl State {
    pub(crate) const fn from_bits(bits: u64) -> Self {
        match bits {
            0 => Self::Closed,
            1 => Self::Open,
            2 => Self::HalfOpen,
            3 => Self::ForcedOpen,
            _ => Self::ForcedClosed,
        }
    }

    pub(crate) const fn bits(self) -> u64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
            Self::ForcedOpen => 3,
            Self::ForcedClosed => 4,
        }
    }

    /// The state's name in metrics (the `to` label of
    /// `buttress_breaker_transitions_total`) and logs: `closed`, `open`,
    /// `half_open`, `forced_open`, `forced_closed`. Its value in the
    /// `buttress_breaker_state` gauge is 0 to 4 in that order.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::ForcedClosed => "forced_closed",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Why the breaker changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransitionReason {
    /// The window's failure rate reached the threshold.
    FailureRate,
    /// The window's slow-call rate reached the threshold.
    SlowCallRate,
    /// The configured number of failures in a row happened.
    ConsecutiveFailures,
    /// The open duration passed; probing starts.
    OpenDurationElapsed,
    /// Enough half-open probes succeeded.
    ProbesSucceeded,
    /// Too many half-open probes failed.
    ProbesFailed,
    /// The half-open state lasted
    /// [`half_open_max_wait`](crate::CircuitBreakerBuilder::half_open_max_wait) with
    /// every probe out and no verdict: the outstanding probes are taken as
    /// failed.
    ProbesTimedOut,
    /// [`force_open`](crate::CircuitBreaker::force_open) was called.
    ForcedOpen,
    /// [`force_closed`](crate::CircuitBreaker::force_closed) was called.
    ForcedClosed,
    /// [`reset`](crate::CircuitBreaker::reset) was called.
    Reset,
}

/// One state change, handed to the listener set with
/// [`on_state_change`](crate::CircuitBreakerBuilder::on_state_change).
#[derive(Clone, Debug)]
pub struct StateTransition {
    pub(crate) name: Name,
    pub(crate) key: Option<Arc<str>>,
    pub(crate) from: State,
    pub(crate) to: State,
    pub(crate) reason: TransitionReason,
    pub(crate) at: Instant,
    pub(crate) open_for: Option<Duration>,
}

impl StateTransition {
    /// The breaker's [name](crate::CircuitBreaker::name) (a keyed set's
    /// breaker: the set's).
    #[must_use]
    pub fn name(&self) -> Name {
        self.name
    }

    /// A keyed set's breaker: its [key](crate::CircuitBreaker::key).
    #[must_use]
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The state left.
    #[must_use]
    pub fn from(&self) -> State {
        self.from
    }

    /// The state entered.
    #[must_use]
    pub fn to(&self) -> State {
        self.to
    }

    /// Why.
    #[must_use]
    pub fn reason(&self) -> TransitionReason {
        self.reason
    }

    /// When (tokio's clock).
    #[must_use]
    pub fn at(&self) -> Instant {
        self.at
    }

    /// For a change to [`State::Open`]: how long it stays open.
    #[must_use]
    pub fn open_for(&self) -> Option<Duration> {
        self.open_for
    }
}

/// A point-in-time view of a breaker, from
/// [`CircuitBreaker::snapshot`](crate::CircuitBreaker::snapshot).
///
/// ```
/// use buttress_breaker::{CircuitBreaker, State};
/// use buttress_core::classify::Outcome;
///
/// let breaker = CircuitBreaker::builder().name("snapshot-doc").build().unwrap();
/// breaker.try_acquire().unwrap().record(Outcome::Failure);
/// breaker.try_acquire().unwrap().record(Outcome::Success);
/// let s = breaker.snapshot();
/// assert_eq!((s.state, s.calls, s.failures), (State::Closed, 2, 1));
/// assert_eq!(s.failure_rate(), 0.5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct CircuitBreakerSnapshot {
    /// The current state.
    pub state: State,
    /// How long the breaker has been in it.
    pub time_in_state: Duration,
    /// Calls in the window (closed state; zero in other states, whose
    /// probes are not part of the window).
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window.
    pub slow_calls: u64,
    /// Calls rejected since the breaker was built.
    pub rejected: u64,
}

impl CircuitBreakerSnapshot {
    /// Failures over calls in the window (0 with no calls).
    #[must_use]
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failures, self.calls)
    }

    /// Slow calls over calls in the window (0 with no calls).
    #[must_use]
    pub fn slow_call_rate(&self) -> f64 {
        ratio(self.slow_calls, self.calls)
    }
}

#[allow(clippy::cast_precision_loss)]
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}
