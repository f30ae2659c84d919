//! The shared breaker: state machine, windows, telemetry, and the
//! [`CircuitBreaker`] handle.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buttress_core::classify::Outcome;
use buttress_core::rng::FastRng;
use buttress_core::time::{Instant, Origin};

use crate::config::{Builder, Config, Listener};
use crate::error::CircuitOpen;
use crate::state::{Snapshot, State, TransitionReason};
use crate::telemetry::Telemetry;
use crate::window::{Padded, Trip, Window, thread_stripe};

mod transition;

// The state word: state (3 bits) | probe permits left (10) | probe
// successes (10) | probe failures (10) | epoch (31). The epoch changes on
// every transition, so an outcome admitted in one period is never counted
// in another.
const STATE_MASK: u64 = 0b111;
const FIELD_BITS: u32 = 10;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const PERMITS_SHIFT: u32 = 3;
const SUCC_SHIFT: u32 = PERMITS_SHIFT + FIELD_BITS;
const FAIL_SHIFT: u32 = SUCC_SHIFT + FIELD_BITS;
const EPOCH_SHIFT: u32 = FAIL_SHIFT + FIELD_BITS;
const EPOCH_MASK: u64 = (1 << (64 - EPOCH_SHIFT)) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Word(u64);

impl Word {
    fn new(state: State, epoch: u64, permits: u64) -> Self {
        Self(state.bits() | (permits << PERMITS_SHIFT) | ((epoch & EPOCH_MASK) << EPOCH_SHIFT))
    }
    fn state(self) -> State {
        State::from_bits(self.0 & STATE_MASK)
    }
    fn epoch(self) -> u64 {
        self.0 >> EPOCH_SHIFT
    }
    fn permits(self) -> u64 {
        (self.0 >> PERMITS_SHIFT) & FIELD_MASK
    }
    fn successes(self) -> u64 {
        (self.0 >> SUCC_SHIFT) & FIELD_MASK
    }
    fn failures(self) -> u64 {
        (self.0 >> FAIL_SHIFT) & FIELD_MASK
    }
    fn next(self, state: State, permits: u64) -> Self {
        Self::new(state, self.epoch().wrapping_add(1), permits)
    }
}

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

struct Control {
    consecutive_trips: u32,
    /// Whether this breaker is counted in its keyed set's open keys.
    counted_open: bool,
    /// Set when a keyed set evicted this breaker: it no longer counts
    /// towards the set's open keys, whatever it does next.
    detached: bool,
}

pub(crate) struct Inner {
    word: Padded<AtomicU64>,
    consecutive: Padded<AtomicU32>,
    window: Window,
    config: Config,
    origin: Origin,
    open_until: AtomicU64,
    state_since: AtomicU64,
    rejected: AtomicU64,
    control: Mutex<Control>,
    rng: FastRng,
    name: Arc<str>,
    listener: Option<Listener>,
    telemetry: Telemetry,
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
    /// A [`Builder`] with every default.
    #[must_use]
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn from_config(config: Config, builder: Builder) -> Self {
        let telemetry = Telemetry::single(&builder.name);
        Self::with_telemetry(config, builder, telemetry)
    }

    /// A breaker reporting to `telemetry` (a keyed set's breakers share
    /// their set's series).
    pub(crate) fn with_telemetry(config: Config, builder: Builder, telemetry: Telemetry) -> Self {
        let rng = builder
            .seed
            .map_or_else(FastRng::from_entropy, FastRng::seeded);
        telemetry.state.set(0.0);
        let inner = Arc::new(Inner {
            word: Padded(AtomicU64::new(Word::new(State::Closed, 0, 0).0)),
            consecutive: Padded(AtomicU32::new(0)),
            window: Window::new(&config),
            config,
            origin: Origin::now(),
            open_until: AtomicU64::new(0),
            state_since: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            control: Mutex::new(Control {
                consecutive_trips: 0,
                counted_open: false,
                detached: false,
            }),
            rng,
            name: builder.name,
            listener: builder.listener,
            telemetry,
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
            shared: Arc::new(Shared { inner, tokens }),
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.shared.inner
    }

    /// This thread's token (a reference count no other thread touches, as
    /// long as threads do not outnumber stripes).
    #[inline]
    pub(crate) fn token(&self) -> Arc<Token> {
        let tokens = &self.shared.tokens;
        Arc::clone(&tokens[thread_stripe() & (tokens.len() - 1)])
    }

    /// The breaker's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner().name
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
        let word = inner.word();
        let counts = if word.state() == State::Closed {
            inner.window.counts(now)
        } else {
            crate::window::Counts::default()
        };
        Snapshot {
            state: word.state(),
            time_in_state: Duration::from_nanos(
                now.saturating_sub(inner.state_since.load(Ordering::Acquire)),
            ),
            calls: counts.calls,
            failures: counts.failures,
            slow_calls: counts.slow,
            rejected: inner.rejected.load(Ordering::Relaxed),
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
        Ok(Permit {
            token: self.token(),
            admit,
            start: self.inner().start(),
            done: false,
        })
    }
}

/// Permission for one call outside tower (from
/// [`CircuitBreaker::try_acquire`]). Report its outcome with
/// [`record`](Self::record); dropping it unrecorded counts as a cancelled
/// call (ignored, and a half-open probe's permit goes back).
#[derive(Debug)]
pub struct Permit {
    token: Arc<Token>,
    admit: Admit,
    start: Option<Instant>,
    done: bool,
}

impl Permit {
    pub(crate) fn new(token: Arc<Token>, admit: Admit, start: Option<Instant>) -> Self {
        Self {
            token,
            admit,
            start,
            done: false,
        }
    }

    /// Records the call's outcome.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        self.done = true;
        self.token.inner.complete(self.admit, outcome, self.start);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            self.token
                .inner
                .complete(self.admit, Outcome::Ignored, None);
        }
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

    /// The call's start time, read only when slow calls are tracked.
    #[inline]
    pub(crate) fn start(&self) -> Option<Instant> {
        self.config.slow_call_nanos.map(|_| Instant::now())
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
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.telemetry.rejected();
        CircuitOpen::new(retry_after)
    }

    /// Stops counting this breaker in its keyed set's open keys (it was
    /// evicted from the set).
    #[cfg(feature = "keyed")]
    pub(crate) fn detach(&self) {
        let mut control = self
            .control
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if control.counted_open
            && let Some(open_keys) = &self.telemetry.open_keys
        {
            open_keys.decrement(1.0);
        }
        control.counted_open = false;
        control.detached = true;
    }

    /// Records a finished (or abandoned) call.
    #[inline]
    pub(crate) fn complete(&self, admit: Admit, outcome: Outcome, start: Option<Instant>) {
        match outcome {
            Outcome::Success => self.telemetry.success(),
            Outcome::Failure => self.telemetry.failure(),
            _ => self.telemetry.ignored(),
        }
        let slow = match (self.config.slow_call_nanos, start) {
            (Some(limit), Some(start)) if !matches!(outcome, Outcome::Ignored) => {
                let slow = buttress_core::time::saturating_nanos(start.elapsed()) >= limit;
                if slow {
                    self.telemetry.slow();
                }
                slow
            }
            _ => false,
        };
        match admit {
            Admit::Closed(epoch) => self.complete_closed(epoch, outcome, slow),
            Admit::Probe(epoch) => self.complete_probe(epoch, outcome, slow),
            Admit::Unguarded => {}
        }
    }

    #[inline]
    fn complete_closed(&self, epoch: u64, outcome: Outcome, slow: bool) {
        let failure = match outcome {
            Outcome::Success => false,
            Outcome::Failure => true,
            _ => return,
        };
        let w = self.word();
        if w.state() != State::Closed || w.epoch() != epoch {
            return; // admitted in an earlier period: not part of this window
        }
        if let Some(limit) = self.config.consecutive_failures {
            if failure {
                let n = self.consecutive.0.fetch_add(1, Ordering::AcqRel) + 1;
                if n >= limit {
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
