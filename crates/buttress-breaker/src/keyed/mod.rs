//! One breaker per key (host, route, tenant): the [`KeyedCircuitBreaker`]
//! set, its builder, layer and service.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use buttress_core::ConfigError;
use buttress_core::telemetry::Name;

use crate::config::CircuitBreakerBuilder;
use crate::handle::CircuitBreaker;

mod config;
mod layer;
mod service;
mod set;

pub use config::{DEFAULT_IDLE_TIMEOUT, KeyedCircuitBreakerBuilder};
pub use layer::KeyedCircuitBreakerLayer;
pub use service::KeyedCircuitBreakerService;
use set::Set;

/// A set of breakers, one per key, each configured like the template
/// builder. They carry the set's [name](CircuitBreakerBuilder::name) (in
/// their rejections, events and metrics) and their own
/// [key](CircuitBreaker::key), the key's `Display` text.
///
/// # Bounded memory
///
/// Keys often come from requests (a host, a tenant), so the set bounds
/// what it holds however many distinct keys arrive:
///
/// - It holds at most `max_keys` breakers. When a new key arrives at the
///   cap, the least recently and least frequently used breaker is evicted
///   (quick_cache's CLOCK-PRO policy), so idle keys leave first and a busy
///   key, including one whose breaker is open and rejecting, stays. (The
///   map splits the cap into equal shards: when `max_keys` is not a
///   multiple of their number the set holds a few fewer, at most 1/32.)
/// - A key unused for the
///   [idle timeout](KeyedCircuitBreakerBuilder::idle_timeout) (default 10
///   minutes) is evicted too, so a burst of one-off keys does not keep its
///   breakers until other keys push them out.
/// - Its metrics are a fixed number of series (see [Metrics](#metrics)).
///
/// An evicted key that comes back starts with a fresh, closed breaker.
///
/// # Metrics
///
/// The set publishes under its name, whatever the number of keys:
/// `buttress_breaker_calls_total{name, outcome}`,
/// `buttress_breaker_slow_calls_total{name}` and
/// `buttress_breaker_transitions_total{name, to}` summed over every key
/// (evicted keys included, up to their eviction), the gauge
/// `buttress_breaker_keys{name}` (breakers held) and the gauge
/// `buttress_breaker_open_keys{name}` (held breakers that are not
/// closed: open, half-open or forced open). There is no per-key label by
/// default: keys are often unbounded (hosts, tenants), and a recorder keeps
/// a series once it has seen it.
/// [`per_key_metrics`](KeyedCircuitBreakerBuilder::per_key_metrics) opts
/// in.
///
/// ```
/// use buttress_breaker::{CircuitBreaker, KeyedCircuitBreaker, State};
///
/// let breakers = KeyedCircuitBreaker::builder(CircuitBreaker::builder().name("upstream"), 1000)
///     .build()
///     .unwrap();
/// let a = breakers.get(&"a.example".to_string());
/// assert_eq!((a.name(), a.key()), (breakers.name(), Some("a.example")));
/// a.force_open();
/// assert_eq!(breakers.get(&"a.example".to_string()).state(), State::ForcedOpen);
/// assert_eq!(breakers.get(&"b.example".to_string()).state(), State::Closed);
/// let s = breakers.snapshot();
/// assert_eq!((s.keys, s.open_keys), (2, 1));
/// ```
///
/// # Clone
///
/// Clones share the set.
pub struct KeyedCircuitBreaker<K> {
    set: Arc<Set<K>>,
}

impl<K> Clone for KeyedCircuitBreaker<K> {
    fn clone(&self) -> Self {
        Self {
            set: Arc::clone(&self.set),
        }
    }
}

impl<K: Eq + Hash + Clone> fmt::Debug for KeyedCircuitBreaker<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreaker")
            .field("name", &self.set.name)
            .field("keys", &self.set.len())
            .finish_non_exhaustive()
    }
}

/// A point-in-time view of a keyed set, from
/// [`KeyedCircuitBreaker::snapshot`]. Each key's breaker has its own
/// [`snapshot`](CircuitBreaker::snapshot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyedCircuitBreakerSnapshot {
    /// The keys that have a breaker now (at most `max_keys`).
    pub keys: usize,
    /// Of those, the breakers that are not closed: open, half-open or
    /// forced open.
    pub open_keys: usize,
    /// Breakers evicted since the set was built because their key went
    /// unused for the idle timeout.
    pub idle_evictions: u64,
    /// Breakers evicted since the set was built to make room for a new key
    /// at the `max_keys` cap.
    pub cap_evictions: u64,
}

impl<K> KeyedCircuitBreaker<K>
where
    K: Eq + Hash + Clone + fmt::Display + Send + Sync + 'static,
{
    /// A [`KeyedCircuitBreakerBuilder`] for a set whose breakers are built
    /// like `template`, holding at most `max_keys` of them.
    #[must_use]
    pub fn builder(
        template: CircuitBreakerBuilder,
        max_keys: usize,
    ) -> KeyedCircuitBreakerBuilder<K> {
        KeyedCircuitBreakerBuilder::new(template, max_keys)
    }

    /// The breaker for `key`, created (closed) if the key is new. This is
    /// a use of the key (see
    /// [`idle_timeout`](KeyedCircuitBreakerBuilder::idle_timeout)).
    pub fn get(&self, key: &K) -> CircuitBreaker {
        self.set.get(key)
    }

    /// The breaker for `key`, if it exists; creates nothing, and is not a
    /// use of the key.
    pub fn peek(&self, key: &K) -> Option<CircuitBreaker> {
        self.set.peek(key)
    }

    /// The keys held, how many are open, and the evictions so far, read
    /// now.
    #[must_use]
    pub fn snapshot(&self) -> KeyedCircuitBreakerSnapshot {
        self.set.snapshot()
    }
}

impl<K> KeyedCircuitBreaker<K> {
    /// The set's effective name, which its breakers carry (see
    /// [`CircuitBreaker::name`]).
    pub fn name(&self) -> Name {
        self.set.name
    }
}

impl<K> KeyedCircuitBreakerBuilder<K>
where
    K: Eq + Hash + Clone + fmt::Display + Send + Sync + 'static,
{
    /// Validates the template and the set's settings and builds the set.
    /// The set claims the template's name as a breaker would (a live
    /// breaker or set of that name makes it `"{name}#2"`).
    ///
    /// # Errors
    ///
    /// The template's [`ConfigError`] (see
    /// [`CircuitBreakerBuilder::build`]), or one naming `max_keys` when it
    /// is 0, or `idle_timeout` when it is zero.
    pub fn build(self) -> Result<KeyedCircuitBreaker<K>, ConfigError> {
        Ok(KeyedCircuitBreaker {
            set: Set::new(self.validate()?),
        })
    }
}
