//! The shared breaker: state machine, windows, telemetry, and the
//! [`CircuitBreaker`] handle.

use std::fmt;
#[cfg(feature = "keyed")]
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use buttress_core::classify::Outcome;
use buttress_core::rng::FastRng;
use buttress_core::telemetry::{Emit, Name, Publish, Registration, register_catalog};
use buttress_core::time::Origin;

use crate::config::{Builder, Config};
use crate::error::CircuitOpen;
use crate::state::{Snapshot, State, TransitionReason};
use crate::telemetry::{self, HighWater, STATES, Totals};
use crate::window::{Counts, Padded, Tally, Trip, Window, thread_stripe};

mod permit;
mod transition;
mod word;

pub use permit::Permit;
use word::{FAIL_SHIFT, PERMITS_SHIFT, SUCC_SHIFT, Word};

/// What admission granted a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Closed: count the outcome in the window if still in this epoch.
    Closed(u64),
    /// Half-open probe: its outcome decides (or its permit goes back).
    Probe(u64),
    /// Forced closed: pass, count nothing.
    Unguarded,
}

impl Admit {
    const KIND: u64 = 3 << 62;
    const PROBE: u64 = 1 << 62;
    const UNGUARDED: u64 = 2 << 62;
    /// What a recorded [`Permit`] holds: nothing left to record.
    pub(crate) const DONE: u64 = 3 << 62;

    /// One word (an epoch has 31 bits), so a permit is three words and
    /// moves as such.
    pub(crate) fn pack(self) -> u64 {
        match self {
            Self::Closed(epoch) => epoch,
            Self::Probe(epoch) => epoch | Self::PROBE,
            Self::Unguarded => Self::UNGUARDED,
        }
    }

    /// The admission `pack` made `bits` from (not [`DONE`](Self::DONE)).
    pub(crate) fn unpack(bits: u64) -> Self {
        match bits & Self::KIND {
            0 => Self::Closed(bits),
            Self::PROBE => Self::Probe(bits & !Self::KIND),
            _ => Self::Unguarded,
        }
    }
}

/// A call's start on the breaker's clock, when slow calls are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Start(u64);

impl Start {
    /// Not timed.
    pub(crate) const NONE: Self = Self(u64::MAX);
}

struct Control {
    consecutive_trips: u32,
}

pub(crate) struct Inner {
    word: Padded<AtomicU64>,
    consecutive: Padded<AtomicU32>,
    window: Window,
    config: Config,
    origin: Origin,
    open_until: AtomicU64,
    state_since: AtomicU64,
    /// Transitions by the state entered.
    transitions: [AtomicU64; STATES.len()],
    control: Mutex<Control>,
    rng: FastRng,
    /// The effective name (a keyed breaker's: its set's).
    name: Name,
    /// A keyed breaker's key, as text.
    key: Option<Arc<str>>,
    /// Set when a keyed set evicted this breaker: its counts have moved
    /// into the set's.
    #[cfg(feature = "keyed")]
    retired: AtomicBool,
}

/// A per-stripe handle on the shared breaker. A call's future holds one, so
/// threads clone and drop different reference counts instead of one.
#[repr(align(128))]
pub(crate) struct Token {
    pub(crate) inner: Arc<Inner>,
}

struct Shared {
    inner: Arc<Inner>,
    tokens: Box<[Arc<Token>]>,
    /// A breaker of its own holds its name here, and publishes its series
    /// while a handle (or a layer, or a service) is alive; a keyed set's
    /// breakers publish through their set.
    published: Option<(Registration, HighWater)>,
}

impl Publish for Shared {
    fn publish(&self, out: &mut Emit<'_>) {
        if let Some((_, high)) = &self.published {
            let inner = &self.inner;
            let totals = high.raise(inner.totals());
            let (state, window) = inner.current();
            telemetry::publish_breaker(out, &totals, state, window);
        }
    }
}

/// A circuit breaker: the shared state behind every
/// [`CircuitBreakerLayer`](crate::CircuitBreakerLayer) built from it.
///
/// Clone it freely (one reference count): clones are the same breaker.
/// Read its [`state`](Self::state) and [`snapshot`](Self::snapshot), or
/// steer it with [`force_open`](Self::force_open),
/// [`force_closed`](Self::force_closed) and [`reset`](Self::reset).
///
/// ```
/// use buttress_breaker::{CircuitBreaker, State};
///
/// let breaker = CircuitBreaker::builder().name("search").build().unwrap();
/// assert_eq!(breaker.state(), State::Closed);
/// breaker.force_open();
/// assert_eq!(breaker.snapshot().state(), State::ForcedOpen);
/// breaker.reset();
/// assert_eq!(breaker.state(), State::Closed);
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// A [`Builder`] with every default, named after the line that calls
    /// this until [`Builder::name`] says otherwise.
    #[must_use]
    #[track_caller]
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// A breaker of its own: it claims its name and publishes its series.
    pub(crate) fn from_config(config: Config) -> Self {
        register_catalog(telemetry::METRICS);
        let reg = Registration::new(telemetry::KIND, config.name);
        let name = reg.name();
        let breaker = Self::assemble(config, name, None, Some((reg, HighWater::default())));
        if let Some((reg, _)) = &breaker.shared.published {
            let weak: Weak<Shared> = Arc::downgrade(&breaker.shared);
            reg.attach(weak);
        }
        breaker
    }

    /// A keyed set's breaker for `key`: named `name` (the set's), counted
    /// and published by its set.
    #[cfg(feature = "keyed")]
    pub(crate) fn for_key(config: Config, name: Name, key: Arc<str>) -> Self {
        Self::assemble(config, name, Some(key), None)
    }

    fn assemble(
        config: Config,
        name: Name,
        key: Option<Arc<str>>,
        published: Option<(Registration, HighWater)>,
    ) -> Self {
        let rng = config
            .seed
            .map_or_else(FastRng::from_entropy, FastRng::seeded);
        let inner = Arc::new(Inner {
            word: Padded(AtomicU64::new(Word::new(State::Closed, 0, 0).0)),
            consecutive: Padded(AtomicU32::new(0)),
            window: Window::new(&config),
            config,
            origin: Origin::now(),
            open_until: AtomicU64::new(0),
            state_since: AtomicU64::new(0),
            transitions: std::array::from_fn(|_| AtomicU64::new(0)),
            control: Mutex::new(Control {
                consecutive_trips: 0,
            }),
            rng,
            name,
            key,
            #[cfg(feature = "keyed")]
            retired: AtomicBool::new(false),
        });
        let stripes = crate::window::stripes();
        let tokens = (0..stripes)
            .map(|_| {
                Arc::new(Token {
                    inner: Arc::clone(&inner),
                })
            })
            .collect();
        Self {
            shared: Arc::new(Shared {
                inner,
                tokens,
                published,
            }),
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.shared.inner
    }

    /// A link to this breaker that does not keep it alive.
    #[cfg(feature = "keyed")]
    pub(crate) fn downgrade(&self) -> WeakBreaker {
        WeakBreaker(Arc::downgrade(&self.shared))
    }

    /// This thread's token (a reference count no other thread touches, as
    /// long as threads do not outnumber stripes).
    #[inline]
    pub(crate) fn token(&self) -> Arc<Token> {
        let tokens = &self.shared.tokens;
        Arc::clone(&tokens[thread_stripe() & (tokens.len() - 1)])
    }

    /// The breaker's effective name: the `name` label on its metrics, the
    /// `name` field on its tracing events, and the name in its
    /// [`CircuitOpen`]. It is the [name asked for](Builder::name) unless
    /// another live breaker holds that one: the second live `"payments"`
    /// is `"payments#2"`. A keyed set's breakers carry the set's name (see
    /// [`key`](Self::key)).
    #[must_use]
    pub fn name(&self) -> Name {
        self.inner().name
    }

    /// A keyed set's breaker: its key, as text (`Display`); `None` for a
    /// breaker of its own.
    #[must_use]
    pub fn key(&self) -> Option<&str> {
        self.inner().key.as_deref()
    }

    /// The current state.
    ///
    /// An open breaker whose open duration has passed reports
    /// [`State::Open`] until the next call arrives and becomes a probe;
    /// likewise a half-open one past
    /// [`half_open_max_wait`](crate::Builder::half_open_max_wait) reports
    /// [`State::HalfOpen`] until the next call re-opens it.
    #[must_use]
    pub fn state(&self) -> State {
        self.inner().word().state()
    }

    /// Counts, rates, state and time in state, read now.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.inner();
        let now = inner.now();
        let (state, counts) = inner.current_at(now);
        Snapshot {
            state,
            time_in_state: Duration::from_nanos(
                now.saturating_sub(inner.state_since.load(Ordering::Acquire)),
            ),
            calls: counts.calls,
            failures: counts.failures,
            slow_calls: counts.slow,
            rejected: inner.window.tallied(Tally::Rejected),
        }
    }

    /// Opens the breaker until [`reset`](Self::reset) or
    /// [`force_closed`](Self::force_closed): every call is rejected (for
    /// maintenance, or a dependency known to be down).
    pub fn force_open(&self) {
        self.inner()
            .transition_any(State::ForcedOpen, TransitionReason::ForcedOpen);
    }

    /// Closes the breaker until [`reset`](Self::reset) or
    /// [`force_open`](Self::force_open): every call passes, nothing is
    /// counted, nothing trips it.
    pub fn force_closed(&self) {
        self.inner()
            .transition_any(State::ForcedClosed, TransitionReason::ForcedClosed);
    }

    /// Back to a fresh closed state: empty window, first-trip open duration.
    pub fn reset(&self) {
        self.inner()
            .transition_any(State::Closed, TransitionReason::Reset);
    }

    /// Asks for permission to make one call, as the layer does in `call`.
    /// Exposed for callers outside tower: pair every `Ok` with
    /// [`Permit::record`].
    ///
    /// # Errors
    ///
    /// [`CircuitOpen`] when the breaker rejects the call.
    pub fn try_acquire(&self) -> Result<Permit, CircuitOpen> {
        let admit = self.inner().admit()?;
        Ok(Permit::new(self.token(), admit, self.inner().start()))
    }
}

/// A [`CircuitBreaker`] that may be gone.
#[cfg(feature = "keyed")]
#[derive(Clone)]
pub(crate) struct WeakBreaker(Weak<Shared>);

#[cfg(feature = "keyed")]
impl WeakBreaker {
    pub(crate) fn upgrade(&self) -> Option<CircuitBreaker> {
        self.0.upgrade().map(|shared| CircuitBreaker { shared })
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").finish_non_exhaustive()
    }
}

impl Inner {
    #[inline]
    fn word(&self) -> Word {
        Word(self.word.0.load(Ordering::Acquire))
    }

    #[inline]
    fn now(&self) -> u64 {
        self.origin.elapsed_nanos()
    }

    /// The state, and the window's counts in it (empty outside the closed
    /// state, whose window they are).
    pub(crate) fn current(&self) -> (State, Counts) {
        self.current_at(self.now())
    }

    fn current_at(&self, now: u64) -> (State, Counts) {
        let state = self.word().state();
        let counts = if state == State::Closed {
            self.window.counts(now)
        } else {
            Counts::default()
        };
        (state, counts)
    }

    /// Totals since the breaker was built (a moment short, at worst, while
    /// calls complete).
    pub(crate) fn totals(&self) -> Totals {
        let transitions = std::array::from_fn(|i| self.transitions[i].load(Ordering::Acquire));
        Totals::of(&self.window, transitions)
    }

    /// Marks this breaker as evicted from its keyed set, before the set
    /// takes over its totals.
    #[cfg(feature = "keyed")]
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    #[cfg(feature = "keyed")]
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    #[cfg(feature = "keyed")]
    pub(crate) fn key_text(&self) -> Option<&Arc<str>> {
        self.key.as_ref()
    }

    /// The call's start time, read only when slow calls are tracked.
    #[inline]
    pub(crate) fn start(&self) -> Start {
        if self.config.slow_call_nanos.is_some() {
            Start(self.now())
        } else {
            Start::NONE
        }
    }

    /// Decides whether a call may go ahead.
    #[inline]
    pub(crate) fn admit(&self) -> Result<Admit, CircuitOpen> {
        loop {
            let w = self.word();
            match w.state() {
                State::Closed => return Ok(Admit::Closed(w.epoch())),
                State::ForcedClosed => return Ok(Admit::Unguarded),
                State::ForcedOpen => return Err(self.reject(None)),
                State::Open => {
                    let now = self.now();
                    let until = self.open_until.load(Ordering::Acquire);
                    if now < until {
                        return Err(self.reject(Some(Duration::from_nanos(until - now))));
                    }
                    self.half_open(w);
                }
                State::HalfOpen => {
                    if w.permits() == 0 {
                        if self.half_open_expired(w) {
                            continue;
                        }
                        return Err(self.reject(None));
                    }
                    let taken = Word(w.0 - (1 << PERMITS_SHIFT));
                    if self
                        .word
                        .0
                        .compare_exchange_weak(w.0, taken.0, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return Ok(Admit::Probe(w.epoch()));
                    }
                }
            }
        }
    }

    /// Whether a call arriving now would be admitted: `Err` with the time
    /// until the next probe (when known) if not. Takes no probe permit and
    /// counts nothing: a service's `poll_ready` asks this, and its `call`
    /// takes the decision with [`admit`](Self::admit), or rejects with
    /// [`reject`](Self::reject) if this said no (one clock read per
    /// rejection, as in `admit`).
    #[inline]
    pub(crate) fn readiness(&self) -> Result<(), Option<Duration>> {
        let w = self.word();
        match w.state() {
            State::Closed | State::ForcedClosed => Ok(()),
            State::ForcedOpen => Err(None),
            State::Open => {
                let now = self.now();
                let until = self.open_until.load(Ordering::Acquire);
                if now >= until {
                    Ok(())
                } else {
                    Err(Some(Duration::from_nanos(until - now)))
                }
            }
            State::HalfOpen => {
                if w.permits() > 0 {
                    return Ok(());
                }
                // No probe is free now. Once expired, the breaker has
                // re-opened: say when its next probe is due.
                if self.half_open_expired(w) {
                    return self.readiness();
                }
                Err(None)
            }
        }
    }

    /// For a half-open period `w` with every probe out: if it has lasted
    /// `half_open_max_wait`, its probes are taken as failed and the breaker
    /// re-opens. Returns whether the period is over.
    #[cold]
    fn half_open_expired(&self, w: Word) -> bool {
        let since = self.state_since.load(Ordering::Acquire);
        if self.now().saturating_sub(since) < self.config.half_open_max_wait_nanos {
            return false;
        }
        self.trip(w, TransitionReason::ProbesTimedOut);
        // Whoever moved first, this period is over.
        true
    }

    /// Counts a rejection and builds its error.
    #[cold]
    pub(crate) fn reject(&self, retry_after: Option<Duration>) -> CircuitOpen {
        self.window.tally(Tally::Rejected);
        CircuitOpen::new(self.name, retry_after)
    }

    /// Counts a call the window does not record: by outcome (`Some(true)`
    /// for a failure, `None` for ignored), and as slow if it was.
    fn tally_call(&self, failure: Option<bool>, slow: bool) {
        self.window.tally(match failure {
            Some(false) => Tally::Success,
            Some(true) => Tally::Failure,
            None => Tally::Ignored,
        });
        if slow {
            self.window.tally(Tally::Slow);
        }
    }

    /// Records a finished (or abandoned) call. A call the window records
    /// is counted by the window alone; every other one in the tally.
    #[inline]
    pub(crate) fn complete(&self, admit: Admit, outcome: Outcome, start: Start) {
        let failure = match outcome {
            Outcome::Success => Some(false),
            Outcome::Failure => Some(true),
            _ => None,
        };
        let slow = match self.config.slow_call_nanos {
            Some(limit) if start != Start::NONE && failure.is_some() => {
                self.now().saturating_sub(start.0) >= limit
            }
            _ => false,
        };
        match (admit, failure) {
            (Admit::Closed(epoch), Some(failure)) => self.complete_closed(epoch, failure, slow),
            (Admit::Probe(epoch), _) => {
                self.tally_call(failure, slow);
                self.complete_probe(epoch, outcome, slow);
            }
            _ => self.tally_call(failure, slow),
        }
    }

    #[inline]
    fn complete_closed(&self, epoch: u64, failure: bool, slow: bool) {
        let w = self.word();
        if w.state() != State::Closed || w.epoch() != epoch {
            // Admitted in an earlier period: not part of this window.
            self.tally_call(Some(failure), slow);
            return;
        }
        if let Some(limit) = self.config.consecutive_failures {
            if failure {
                let n = self.consecutive.0.fetch_add(1, Ordering::AcqRel) + 1;
                if n >= limit {
                    self.tally_call(Some(true), slow);
                    self.trip(w, TransitionReason::ConsecutiveFailures);
                    return;
                }
            } else if self.consecutive.0.load(Ordering::Relaxed) != 0 {
                self.consecutive.0.store(0, Ordering::Relaxed);
            }
        }
        let now = if self.window.needs_clock() {
            self.now()
        } else {
            0
        };
        if let Some(at) = self.window.record(failure, slow, now)
            && let Some(trip) = self.window.should_trip(at, &self.config)
        {
            let reason = match trip {
                Trip::FailureRate => TransitionReason::FailureRate,
                Trip::SlowCallRate => TransitionReason::SlowCallRate,
            };
            self.trip(w, reason);
        }
    }

    fn complete_probe(&self, epoch: u64, outcome: Outcome, slow: bool) {
        let probes = u64::from(self.config.half_open_probes);
        // Failures among the probes that reopen the breaker.
        let reopen_at = Config::needed(self.config.failure_ppm, probes);
        let mut w = self.word();
        loop {
            if w.state() != State::HalfOpen || w.epoch() != epoch {
                return;
            }
            let next = match outcome {
                Outcome::Success if !slow => Word(w.0 + (1 << SUCC_SHIFT)),
                Outcome::Success | Outcome::Failure => Word(w.0 + (1 << FAIL_SHIFT)),
                // Cancelled or ignored: the permit goes back.
                _ => Word(w.0 + (1 << PERMITS_SHIFT)),
            };
            match self.word.0.compare_exchange_weak(
                w.0,
                next.0,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if next.failures() >= reopen_at {
                        self.trip(next, TransitionReason::ProbesFailed);
                    } else if next.successes() > probes - reopen_at {
                        // The failures can no longer reach the threshold.
                        self.transition_from(
                            next,
                            State::Closed,
                            TransitionReason::ProbesSucceeded,
                        );
                    }
                    return;
                }
                Err(actual) => w = Word(actual),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admissions_pack_into_one_word() {
        let top = word::EPOCH_MASK;
        for admit in [
            Admit::Closed(0),
            Admit::Closed(top),
            Admit::Probe(0),
            Admit::Probe(top),
            Admit::Unguarded,
        ] {
            assert_ne!(admit.pack(), Admit::DONE);
            assert_eq!(Admit::unpack(admit.pack()), admit);
        }
    }
}
