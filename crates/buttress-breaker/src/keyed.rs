//! One breaker per key (host, route, tenant).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};

use buttress_core::BoxError;
use buttress_core::classify::{Classify, ErrorsAsFailures};
use buttress_core::key::KeyExtractor;
use buttress_core::telemetry::{Emit, Name, Publish, Registration, register_catalog};
use tower_layer::Layer;
use tower_service::Service;

use crate::config::{Builder, Config};
use crate::error::ConfigError;
use crate::future::ResponseFuture;
use crate::handle::{Admit, CircuitBreaker, Permit, WeakBreaker};
use crate::telemetry::{self, HighWater, Totals, counts_as_open};

type Breakers<K> = quick_cache::sync::Cache<
    K,
    CircuitBreaker,
    quick_cache::UnitWeighter,
    quick_cache::DefaultHashBuilder,
    Evictions,
>;

struct KeyedInner<K> {
    /// The template's validated configuration, cloned for each key.
    config: Config,
    name: Name,
    max_keys: usize,
    counts: Arc<SetCounts>,
    breakers: Breakers<K>,
    /// Holds the set's name while the set lives.
    _registration: Registration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the set counts and publishes besides its breakers' own counts.
#[derive(Default)]
struct SetCounts {
    /// The totals of evicted breakers, taken when they left.
    evicted: Mutex<Totals>,
    /// Every breaker created and not yet seen evicted or dropped.
    members: Mutex<Vec<WeakBreaker>>,
    high: HighWater,
    /// Whether new keys get series of their own.
    per_key: AtomicBool,
    /// The keys with series of their own (at most `max_keys`, ever), and
    /// each one's breaker now.
    granted: Mutex<HashMap<Arc<str>, WeakBreaker>>,
    /// Whether the warning that `granted` is full has been given.
    warned: AtomicBool,
}

/// Moves evicted breakers' counts into the set's.
#[derive(Clone)]
struct Evictions(Arc<SetCounts>);

impl<K> quick_cache::Lifecycle<K, CircuitBreaker> for Evictions {
    type RequestState = ();

    fn on_evict(&self, (): &mut (), _key: K, breaker: CircuitBreaker) {
        let inner = breaker.inner();
        // Retired first: a publication that sees these totals in `evicted`
        // then sees the flag, and does not count the breaker twice.
        inner.retire();
        lock(&self.0.evicted).add(&inner.totals());
    }
}

/// A breaker that is live in its set (not evicted), if `weak` is one.
fn live(weak: &WeakBreaker) -> Option<CircuitBreaker> {
    weak.upgrade().filter(|b| !b.inner().is_retired())
}

impl<K: Eq + Hash + Send + Sync + 'static> Publish for KeyedInner<K> {
    fn publish(&self, out: &mut Emit<'_>) {
        let counts = &*self.counts;
        // `evicted` before the members: see `Evictions`.
        let mut totals = *lock(&counts.evicted);
        let members: Vec<CircuitBreaker> = {
            let mut members = lock(&counts.members);
            members.retain(|w| live(w).is_some());
            members.iter().filter_map(live).collect()
        };
        let mut open = 0;
        for breaker in &members {
            totals.add(&breaker.inner().totals());
            open += usize::from(counts_as_open(breaker.state()));
        }
        let totals = counts.high.raise(totals);
        telemetry::publish_set(out, &totals, self.breakers.len(), open);
        let keys: Vec<_> = lock(&counts.granted)
            .iter()
            .map(|(key, weak)| (Arc::clone(key), live(weak)))
            .collect();
        for (key, breaker) in keys {
            telemetry::publish_key(out, &key, breaker.map(|b| b.inner().current()));
        }
    }
}

impl SetCounts {
    /// Gives `breaker` series of its own if its key has them or there is
    /// room for one more key.
    fn grant(&self, name: Name, max_keys: usize, breaker: &CircuitBreaker) {
        let Some(key) = breaker.inner().key_text() else {
            return;
        };
        let mut granted = lock(&self.granted);
        if let Some(weak) = granted.get_mut(key) {
            *weak = breaker.downgrade();
        } else if granted.len() < max_keys {
            granted.insert(Arc::clone(key), breaker.downgrade());
        } else if !self.warned.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                name = %name,
                max_keys,
                "keyed circuit breaker: per-key metric series reached max_keys keys; \
                 new keys report only in the set's totals"
            );
        }
    }
}

/// A set of breakers, one per key, each configured like the template
/// builder. They carry the set's [name](Builder::name) (in their
/// rejections, events and metrics) and their own
/// [key](CircuitBreaker::key), the key's `Display` text.
///
/// The set holds at most `max_keys` breakers. When a new key arrives at the
/// cap, the least recently and least frequently used breaker is evicted
/// (quick_cache's CLOCK-PRO policy), so idle keys leave first and a busy
/// key, including one whose breaker is open and rejecting, stays. An
/// evicted key that comes back starts with a fresh, closed breaker.
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
/// a series once it has seen it. [`per_key_metrics`](Self::per_key_metrics)
/// opts in.
///
/// ```
/// use buttress_breaker::{CircuitBreaker, KeyedCircuitBreaker, State};
///
/// let breakers = KeyedCircuitBreaker::new(CircuitBreaker::builder().name("upstream"), 1000).unwrap();
/// let a = breakers.get(&"a.example".to_string());
/// assert_eq!((a.name(), a.key()), (breakers.name(), Some("a.example")));
/// a.force_open();
/// assert_eq!(breakers.get(&"a.example".to_string()).state(), State::ForcedOpen);
/// assert_eq!(breakers.get(&"b.example".to_string()).state(), State::Closed);
/// ```
///
/// # Clone
///
/// Clones share the set.
pub struct KeyedCircuitBreaker<K> {
    inner: Arc<KeyedInner<K>>,
}

impl<K> Clone for KeyedCircuitBreaker<K> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Eq + Hash + Clone> fmt::Debug for KeyedCircuitBreaker<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreaker")
            .field("name", &self.inner.name)
            .field("config", &self.inner.config)
            .field("keys", &self.inner.breakers.len())
            .finish()
    }
}

impl<K> KeyedCircuitBreaker<K>
where
    K: Eq + Hash + Clone + fmt::Display + Send + Sync + 'static,
{
    /// A set of breakers built from `template`, holding at most `max_keys`.
    /// The set claims the template's name as a breaker would (a live
    /// breaker or set of that name makes it `"{name}#2"`).
    ///
    /// # Errors
    ///
    /// The template's [`ConfigError`], or one naming `max_keys` when it is 0.
    pub fn new(template: Builder, max_keys: usize) -> Result<Self, ConfigError> {
        if max_keys == 0 {
            return Err(crate::error::config_error("max_keys", "must be at least 1"));
        }
        let config = Config::validate(template)?;
        register_catalog(telemetry::METRICS);
        let registration = Registration::new(telemetry::KIND, config.name);
        let counts = Arc::new(SetCounts::default());
        let breakers = quick_cache::sync::Cache::with(
            max_keys,
            max_keys as u64,
            quick_cache::UnitWeighter,
            quick_cache::DefaultHashBuilder::default(),
            Evictions(Arc::clone(&counts)),
        );
        let inner = Arc::new(KeyedInner {
            name: registration.name(),
            config,
            max_keys,
            counts,
            breakers,
            _registration: registration,
        });
        let weak: Weak<KeyedInner<K>> = Arc::downgrade(&inner);
        inner._registration.attach(weak);
        Ok(Self { inner })
    }

    /// Also publishes each key's state, failure rate and slow-call rate
    /// (`buttress_breaker_key_state{name, key}`,
    /// `buttress_breaker_key_failure_rate{name, key}`,
    /// `buttress_breaker_key_slow_call_rate{name, key}`, `key` being the
    /// key's `Display` text), for the keys that have a breaker now and
    /// those created from now on. Default: off (see [Metrics](Self#metrics)).
    ///
    /// A recorder keeps a series once it has seen it, so to keep the `key`
    /// label bounded only the first `max_keys` distinct keys get series of
    /// their own (a `warn` event says so once when the set turns one
    /// away); later keys report only in the set's totals. A key that was
    /// evicted keeps its series, which read as a fresh closed breaker (what
    /// its next call finds) until it comes back. Turn it on for a small,
    /// known set of keys (configured hosts), not for keys taken from
    /// requests. `per_key_metrics(false)` stops giving series to new keys.
    #[must_use]
    pub fn per_key_metrics(self, enabled: bool) -> Self {
        let counts = &self.inner.counts;
        counts.per_key.store(enabled, Ordering::Release);
        if enabled {
            let members: Vec<_> = lock(&counts.members).iter().filter_map(live).collect();
            for breaker in &members {
                counts.grant(self.inner.name, self.inner.max_keys, breaker);
            }
        }
        self
    }

    /// The breaker for `key`, created (closed) if the key is new.
    pub fn get(&self, key: &K) -> CircuitBreaker {
        let inner = &*self.inner;
        let created = inner.breakers.get_or_insert_with(key, || {
            let breaker = CircuitBreaker::for_key(
                inner.config.clone(),
                inner.name,
                Arc::from(key.to_string()),
            );
            inner.add_member(&breaker);
            Ok::<_, Infallible>(breaker)
        });
        match created {
            Ok(breaker) => breaker,
            Err(never) => match never {},
        }
    }

    /// The breaker for `key`, if it exists; creates nothing.
    pub fn peek(&self, key: &K) -> Option<CircuitBreaker> {
        self.inner.breakers.peek(key)
    }

    /// How many keys have a breaker now.
    pub fn len(&self) -> usize {
        self.inner.breakers.len()
    }

    /// Whether no key has a breaker.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The set's effective name, which its breakers carry (see
    /// [`CircuitBreaker::name`]).
    pub fn name(&self) -> Name {
        self.inner.name
    }
}

impl<K> KeyedInner<K> {
    /// Counts a new breaker in the set (and gives it series of its own if
    /// asked to).
    fn add_member(&self, breaker: &CircuitBreaker) {
        {
            let mut members = lock(&self.counts.members);
            // Breakers leave the list when a publication finds them gone;
            // without publications, prune here so the list stays bounded.
            if members.len() >= 2 * self.max_keys {
                members.retain(|w| live(w).is_some());
            }
            members.push(breaker.downgrade());
        }
        if self.counts.per_key.load(Ordering::Acquire) {
            self.counts.grant(self.name, self.max_keys, breaker);
        }
    }
}

/// Wraps services in a [`KeyedCircuitBreakerService`]: a breaker per key
/// extracted from each request.
///
/// ```
/// use buttress_breaker::{CircuitBreaker, KeyedCircuitBreaker, KeyedCircuitBreakerLayer};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let breakers = KeyedCircuitBreaker::new(CircuitBreaker::builder(), 10_000)?;
/// // Requests are (host, payload); one breaker per host.
/// let by_host = |req: &(String, u32)| Some(req.0.clone());
/// let svc = ServiceBuilder::new()
///     .layer(KeyedCircuitBreakerLayer::new(breakers.clone(), by_host))
///     .service(service_fn(|(_, n): (String, u32)| async move { Ok::<_, std::io::Error>(n) }));
/// assert_eq!(svc.oneshot(("db-1".to_string(), 7)).await?, 7);
/// assert_eq!(breakers.len(), 1);
/// # Ok(())
/// # }
/// ```
///
/// # Clone
///
/// Every service built from this layer shares the same set of breakers.
#[derive(Clone)]
pub struct KeyedCircuitBreakerLayer<K, E, C = ErrorsAsFailures> {
    breakers: KeyedCircuitBreaker<K>,
    extractor: E,
    classifier: C,
}

impl<K, E> KeyedCircuitBreakerLayer<K, E> {
    /// A layer keying requests with `extractor` into `breakers`.
    #[must_use]
    pub fn new(breakers: KeyedCircuitBreaker<K>, extractor: E) -> Self {
        Self {
            breakers,
            extractor,
            classifier: ErrorsAsFailures::new(),
        }
    }
}

impl<K: Eq + Hash + Clone, E, C: fmt::Debug> fmt::Debug for KeyedCircuitBreakerLayer<K, E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer")
            .field("breakers", &self.breakers)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl<S: fmt::Debug, K: Eq + Hash + Clone, E, C: fmt::Debug> fmt::Debug
    for KeyedCircuitBreakerService<S, K, E, C>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerService")
            .field("inner", &self.inner)
            .field("breakers", &self.breakers)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl<K, E, C> KeyedCircuitBreakerLayer<K, E, C> {
    /// Judges the inner service's results with `classifier` instead of
    /// [`ErrorsAsFailures`], as
    /// [`CircuitBreakerLayer::classifier`](crate::CircuitBreakerLayer::classifier).
    #[must_use]
    pub fn classifier<C2>(self, classifier: C2) -> KeyedCircuitBreakerLayer<K, E, C2> {
        KeyedCircuitBreakerLayer {
            breakers: self.breakers,
            extractor: self.extractor,
            classifier,
        }
    }
}

impl<S, K, E: Clone, C: Clone> Layer<S> for KeyedCircuitBreakerLayer<K, E, C> {
    type Service = KeyedCircuitBreakerService<S, K, E, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreakerService {
            inner,
            breakers: self.breakers.clone(),
            extractor: self.extractor.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

/// Guards an inner service with a breaker per request key.
///
/// The key is only known in `call`, so `poll_ready` waits for the inner
/// service and a rejected call leaves that readiness unused. A request
/// whose key cannot be extracted passes unguarded and is not counted.
#[derive(Clone)]
pub struct KeyedCircuitBreakerService<S, K, E, C = ErrorsAsFailures> {
    inner: S,
    breakers: KeyedCircuitBreaker<K>,
    extractor: E,
    classifier: C,
}

impl<S, K, E, C> KeyedCircuitBreakerService<S, K, E, C> {
    /// The set of breakers.
    pub fn breakers(&self) -> &KeyedCircuitBreaker<K> {
        &self.breakers
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, K, E, C, Req> Service<Req> for KeyedCircuitBreakerService<S, K, E, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    K: Eq + Hash + Clone + fmt::Display + Send + Sync + 'static,
    E: KeyExtractor<Req, Key = K>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let Some(key) = self.extractor.extract(&req) else {
            return ResponseFuture::called(self.inner.call(req), None, self.classifier.clone());
        };
        let breaker = self.breakers.get(&key);
        let inner = breaker.inner();
        let permit = match inner.admit() {
            Err(open) => return ResponseFuture::rejected(open, self.classifier.clone()),
            Ok(Admit::Unguarded) => None,
            Ok(admit) => Some(Permit::new(breaker.token(), admit, inner.start())),
        };
        ResponseFuture::called(self.inner.call(req), permit, self.classifier.clone())
    }
}
