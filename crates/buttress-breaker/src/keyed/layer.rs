//! The keyed breaker's layer.

use std::fmt;
use std::hash::Hash;

use buttress_core::classify::ErrorsAsFailures;
use tower_layer::Layer;

use super::KeyedCircuitBreaker;
use super::service::KeyedCircuitBreakerService;

/// Wraps services in a [`KeyedCircuitBreakerService`]: a breaker per key
/// extracted from each request.
///
/// ```
/// use buttress_breaker::{CircuitBreaker, KeyedCircuitBreaker, KeyedCircuitBreakerLayer};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let breakers = KeyedCircuitBreaker::builder(CircuitBreaker::builder(), 10_000).build()?;
/// // Requests are (host, payload); one breaker per host.
/// let by_host = |req: &(String, u32)| Some(req.0.clone());
/// let svc = ServiceBuilder::new()
///     .layer(KeyedCircuitBreakerLayer::new(breakers.clone(), by_host))
///     .service(service_fn(|(_, n): (String, u32)| async move { Ok::<_, std::io::Error>(n) }));
/// assert_eq!(svc.oneshot(("db-1".to_string(), 7)).await?, 7);
/// assert_eq!(breakers.snapshot().keys, 1);
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
        KeyedCircuitBreakerService::new(
            inner,
            self.breakers.clone(),
            self.extractor.clone(),
            self.classifier.clone(),
        )
    }
}
