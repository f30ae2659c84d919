//! The shared breaker: its state, window and telemetry, and the
//! [`CircuitBreaker`] handle (with the builder's `build`).

use std::fmt;
#[cfg(feature = "keyed")]
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use buttress_core::ConfigError;
use buttress_core::rng::FastRng;
use buttress_core::stripe::{Padded, stripes, thread_stripe};
use buttress_core::telemetry::{Emit, Name, Publish, Registration, register_catalog};
use buttress_core::time::Origin;

use crate::config::{CircuitBreakerBuilder, Config};
use crate::error::CircuitOpen;
use crate::state::{CircuitBreakerSnapshot, State, TransitionReason};
use crate::telemetry::{self, HighWater, STATES, Totals};
use crate::window::{Counts, Tally, Window};

mod call;
mod permit;
mod transition;
mod word;

pub(crate) use call::{Admit, Start};
pub use permit::Permit;
use word::Word;

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
    /// A keyed set's breaker: when its set last handed it out, on the
    /// set's clock (see `keyed::set`).
    #[cfg(feature = "keyed")]
    last_used: AtomicU64,
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
/// assert_eq!(breaker.snapshot().state, State::ForcedOpen);
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

impl CircuitBreakerBuilder {
    /// Validates the configuration and builds the breaker.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting: an empty name; a
    /// rate threshold that is not above 0 and at most 1 (NaN included); a
    /// zero or oversized window; zero or too many half-open probes; minimum
    /// calls of zero or above the count window; a zero open duration,
    /// slow-call duration or half-open wait; an open, maximum open,
    /// slow-call or time-window duration past the breaker's nanosecond
    /// clock (`u64::MAX` ns, about 584 years); a multiplier below 1 or not
    /// finite; a cap below the open duration; a jitter outside `0.0..1.0`;
    /// or zero consecutive failures.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        Ok(CircuitBreaker::from_config(Config::validate(self)?))
    }
}

impl CircuitBreaker {
    /// A [`CircuitBreakerBuilder`] with every default, named after the line
    /// that calls this until [`CircuitBreakerBuilder::name`] says otherwise.
    #[must_use]
    #[track_caller]
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::new()
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
        let tokens = (0..stripes())
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
                #[cfg(feature = "keyed")]
                last_used: AtomicU64::new(0),
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
    /// [`CircuitOpen`]. It is the
    /// [name asked for](CircuitBreakerBuilder::name) unless
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
    /// [`half_open_max_wait`](CircuitBreakerBuilder::half_open_max_wait) reports
    /// [`State::HalfOpen`] until the next call re-opens it.
    #[must_use]
    pub fn state(&self) -> State {
        self.inner().word().state()
    }

    /// Counts, rates, state and time in state, read now.
    #[must_use]
    pub fn snapshot(&self) -> CircuitBreakerSnapshot {
        let inner = self.inner();
        let now = inner.now();
        let (state, counts) = inner.current_at(now);
        CircuitBreakerSnapshot {
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

/// A keyed set's bookkeeping of when it last handed a breaker out.
#[cfg(feature = "keyed")]
impl CircuitBreaker {
    /// When the set last handed this breaker out (its clock, in
    /// nanoseconds; 0 until first stamped).
    pub(crate) fn last_used(&self) -> u64 {
        self.shared.last_used.load(Ordering::Relaxed)
    }

    /// Stamps `now` as its last use, unless the stamp is less than
    /// `granularity` old: a busy key is written once per `granularity`, not
    /// once per call, so threads sharing it do not fight over the line.
    #[inline]
    pub(crate) fn touch(&self, now: u64, granularity: u64) {
        let last = &self.shared.last_used;
        if now.saturating_sub(last.load(Ordering::Relaxed)) >= granularity {
            last.store(now, Ordering::Relaxed);
        }
    }
}

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
}
