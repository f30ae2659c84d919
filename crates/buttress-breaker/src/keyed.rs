//! One breaker per key (host, route, tenant).

use std::convert::Infallible;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};

use buttress_core::BoxError;
use buttress_core::classify::{Classify, ErrorsAsFailures};
use buttress_core::key::KeyExtractor;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::{Builder, Config};
use crate::error::ConfigError;
use crate::future::ResponseFuture;
use crate::handle::{Admit, CircuitBreaker, Permit};
use crate::telemetry::KeyedTelemetry;

type Breakers<K> = quick_cache::sync::Cache<
    K,
    CircuitBreaker,
    quick_cache::UnitWeighter,
    quick_cache::DefaultHashBuilder,
    Evictions,
>;

struct KeyedInner<K> {
    template: Builder,
    config: Config,
    telemetry: Arc<KeyedTelemetry>,
    breakers: Breakers<K>,
}

/// Counts evicted breakers out of the set's metrics.
#[derive(Clone)]
struct Evictions(Arc<KeyedTelemetry>);

impl<K> quick_cache::Lifecycle<K, CircuitBreaker> for Evictions {
    type RequestState = ();

    fn on_evict(&self, (): &mut (), _key: K, breaker: CircuitBreaker) {
        breaker.inner().detach();
        self.0.key_evicted();
    }
}

/// A set of breakers, one per key, each configured like the template
/// builder and named `"{template name}/{key:?}"`.
///
/// The set holds at most `max_keys` breakers. When a new key arrives at the
/// cap, the least recently and least frequently used breaker is evicted
/// (quick_cache's CLOCK-PRO policy), so idle keys leave first and a busy
/// key, including one whose breaker is open and rejecting, stays. An
/// evicted key that comes back starts with a fresh, closed breaker.
///
/// # Metrics
///
/// The set reports under the template's name, whatever the number of keys:
/// `buttress_breaker_calls_total{breaker, outcome}`,
/// `buttress_breaker_slow_calls_total{breaker}` and
/// `buttress_breaker_transitions_total{breaker}` summed over every key,
/// the gauge `buttress_breaker_keys{breaker}` (breakers held) and the gauge
/// `buttress_breaker_open_keys{breaker}` (held breakers that are not
/// closed: open, half-open or forced open). There is no per-key label by
/// default: keys are often unbounded (hosts, tenants), and a series per key
/// would grow with every key ever seen, since the `metrics` facade cannot
/// unregister a series. [`per_key_metrics`](Self::per_key_metrics) opts in.
///
/// ```
/// use buttress_breaker::{CircuitBreaker, KeyedCircuitBreaker, State};
///
/// let breakers = KeyedCircuitBreaker::new(CircuitBreaker::builder().name("upstream"), 1000).unwrap();
/// let a = breakers.get(&"a.example".to_string());
/// assert_eq!(a.name(), "upstream/\"a.example\"");
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
            .field("template", &self.inner.template)
            .field("keys", &self.inner.breakers.len())
            .finish()
    }
}

impl<K> KeyedCircuitBreaker<K>
where
    K: Eq + Hash + Clone + fmt::Debug,
{
    /// A set of breakers built from `template`, holding at most `max_keys`.
    ///
    /// # Errors
    ///
    /// The template's [`ConfigError`], or one naming `max_keys` when it is 0.
    pub fn new(template: Builder, max_keys: usize) -> Result<Self, ConfigError> {
        if max_keys == 0 {
            return Err(crate::error::config_error("max_keys", "must be at least 1"));
        }
        let config = Config::validate(&template)?;
        let telemetry = Arc::new(KeyedTelemetry::register(&template.name, max_keys));
        let breakers = quick_cache::sync::Cache::with(
            max_keys,
            max_keys as u64,
            quick_cache::UnitWeighter,
            quick_cache::DefaultHashBuilder::default(),
            Evictions(Arc::clone(&telemetry)),
        );
        Ok(Self {
            inner: Arc::new(KeyedInner {
                template,
                config,
                telemetry,
                breakers,
            }),
        })
    }

    /// Also reports each key's breaker under its own name
    /// (`breaker = "{template name}/{key:?}"`, every series a single
    /// breaker has, `buttress_breaker_state` included), for breakers
    /// created from now on. Default: off (see [Metrics](Self#metrics)).
    ///
    /// The `metrics` facade cannot unregister a series, so an evicted key's
    /// series stay with the recorder. To keep them bounded, only the first
    /// `max_keys` breakers created get series of their own; later ones
    /// report only in the set's totals (and a `warn` event says so once).
    /// Turn it on for a small, known set of keys (configured hosts), not
    /// for keys taken from requests.
    #[must_use]
    pub fn per_key_metrics(self, enabled: bool) -> Self {
        self.inner.telemetry.set_own_series(enabled);
        self
    }

    /// The breaker for `key`, created (closed) if the key is new.
    pub fn get(&self, key: &K) -> CircuitBreaker {
        let inner = &*self.inner;
        let created = inner.breakers.get_or_insert_with(key, || {
            let name = format!("{}/{key:?}", inner.template.name);
            let telemetry = inner.telemetry.key_created(&name);
            let builder = inner.template.clone().name(name);
            Ok::<_, Infallible>(CircuitBreaker::with_telemetry(
                inner.config.clone(),
                builder,
                telemetry,
            ))
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
    /// Judges results with `classifier`.
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
    K: Eq + Hash + Clone + fmt::Debug,
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
