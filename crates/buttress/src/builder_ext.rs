//! `ServiceBuilder` methods for every buttress layer.

use tower_layer::Stack;

#[cfg(feature = "breaker")]
use buttress_breaker::{CircuitBreaker, CircuitBreakerLayer};
#[cfg(feature = "limit")]
use buttress_limit::{
    AdaptiveLimit, AdaptiveLimitLayer,
    throttle::{AdaptiveThrottle, ThrottleLayer},
};

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

/// Adds one method per buttress layer to [`tower::ServiceBuilder`].
///
/// Sealed: implemented for `ServiceBuilder` only, so new methods can be
/// added without breaking anyone.
pub trait ServiceBuilderExt<L>: sealed::Sealed + Sized {
    /// Adds a [`CircuitBreakerLayer`] around `breaker`, counting `Err` as
    /// failure. For another classifier, use
    /// `.layer(CircuitBreakerLayer::new(breaker).classifier(..))`.
    #[cfg(feature = "breaker")]
    #[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
    fn circuit_breaker(
        self,
        breaker: CircuitBreaker,
    ) -> tower::ServiceBuilder<Stack<CircuitBreakerLayer, L>>;

    /// Adds an [`AdaptiveLimitLayer`] around `limit`, counting `Err` as a
    /// drop. For another classifier or partitions, use
    /// `.layer(AdaptiveLimitLayer::new(limit).classifier(..).partition_by(..))`.
    ///
    /// ```
    /// use buttress::ServiceBuilderExt;
    /// use buttress::limit::{AdaptiveLimit, algorithm::Vegas};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// let limit = AdaptiveLimit::builder(Vegas::builder().build()?).name("db").build()?;
    /// let svc = ServiceBuilder::new()
    ///     .adaptive_limit(limit.clone())
    ///     .service(service_fn(|x: u64| async move { Ok::<_, std::io::Error>(x + 1) }));
    /// assert_eq!(svc.oneshot(1).await?, 2);
    /// assert_eq!(limit.in_flight(), 0);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
    fn adaptive_limit(
        self,
        limit: AdaptiveLimit,
    ) -> tower::ServiceBuilder<Stack<AdaptiveLimitLayer, L>>;

    /// Adds a client-side [`ThrottleLayer`] around `throttle`, counting
    /// `Ok` as accepted.
    #[cfg(feature = "limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
    fn adaptive_throttle(
        self,
        throttle: AdaptiveThrottle,
    ) -> tower::ServiceBuilder<Stack<ThrottleLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for tower::ServiceBuilder<L> {
    #[cfg(feature = "breaker")]
    fn circuit_breaker(
        self,
        breaker: CircuitBreaker,
    ) -> tower::ServiceBuilder<Stack<CircuitBreakerLayer, L>> {
        self.layer(CircuitBreakerLayer::new(breaker))
    }

    #[cfg(feature = "limit")]
    fn adaptive_limit(
        self,
        limit: AdaptiveLimit,
    ) -> tower::ServiceBuilder<Stack<AdaptiveLimitLayer, L>> {
        self.layer(AdaptiveLimitLayer::new(limit))
    }

    #[cfg(feature = "limit")]
    fn adaptive_throttle(
        self,
        throttle: AdaptiveThrottle,
    ) -> tower::ServiceBuilder<Stack<ThrottleLayer, L>> {
        self.layer(ThrottleLayer::new(throttle))
    }
}
