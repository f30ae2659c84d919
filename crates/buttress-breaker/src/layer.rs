//! The breaker's layer.

use buttress_core::classify::ErrorsAsFailures;
use tower_layer::Layer;

use crate::handle::CircuitBreaker;
use crate::service::CircuitBreakerService;

/// Wraps services in a [`CircuitBreakerService`] sharing one
/// [`CircuitBreaker`].
///
/// ```
/// use buttress_breaker::{CircuitBreaker, CircuitBreakerLayer};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let breaker = CircuitBreaker::builder().name("inventory").build()?;
/// let service = ServiceBuilder::new()
///     .layer(CircuitBreakerLayer::new(breaker.clone()))
///     .service(service_fn(|id: u32| async move { Ok::<_, std::io::Error>(id * 2) }));
///
/// assert_eq!(service.oneshot(21).await?, 42);
/// assert_eq!(breaker.snapshot().calls, 1);
/// # Ok(())
/// # }
/// ```
///
/// # Clone
///
/// Every service this layer (or a clone of it) builds shares the same
/// breaker: one dependency, one breaker. Build a layer per dependency from
/// its own [`CircuitBreaker`], or use a keyed breaker for one per host.
#[derive(Clone, Debug)]
pub struct CircuitBreakerLayer<C = ErrorsAsFailures> {
    breaker: CircuitBreaker,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A layer around `breaker` that counts `Err` as failure and `Ok` as
    /// success ([`ErrorsAsFailures`]).
    #[must_use]
    pub fn new(breaker: CircuitBreaker) -> Self {
        Self {
            breaker,
            classifier: ErrorsAsFailures::new(),
        }
    }
}

impl From<CircuitBreaker> for CircuitBreakerLayer {
    fn from(breaker: CircuitBreaker) -> Self {
        Self::new(breaker)
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Judges the inner service's results (`Result<S::Response,
    /// S::Error>`) with `classifier` instead of [`ErrorsAsFailures`]: for
    /// example `buttress_core::http::HttpClassifier` (5xx fail, 4xx
    /// succeed), a gRPC classifier, or a closure returning a
    /// `Classification`. Any [`Classify`](buttress_core::classify::Classify)
    /// works, the same type every buttress layer takes.
    ///
    /// ```
    /// use buttress_breaker::{CircuitBreaker, CircuitBreakerLayer};
    /// use buttress_core::classify::Classification;
    ///
    /// // A "not found" is a healthy answer; other errors count as failures.
    /// let layer = CircuitBreakerLayer::new(CircuitBreaker::builder().name("users").build().unwrap())
    ///     .classifier(|r: &Result<u32, std::io::Error>| match r {
    ///         Err(e) if e.kind() != std::io::ErrorKind::NotFound => Classification::failure(),
    ///         _ => Classification::success(),
    ///     });
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// The breaker.
    #[must_use]
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::new(inner, self.breaker.clone(), self.classifier.clone())
    }
}
