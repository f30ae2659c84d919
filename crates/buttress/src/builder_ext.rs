//! `ServiceBuilder` methods for every buttress layer.

use tower_layer::Stack;

#[cfg(feature = "breaker")]
use buttress_breaker::{CircuitBreaker, CircuitBreakerLayer};

#[cfg(feature = "retry")]
use buttress_retry::{HedgeLayer, HedgePolicy, RetryLayer, RetryPolicy};

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

    /// Adds a [`RetryLayer`] driven by `policy` (its classifier, request
    /// replay, budget and deadline come with it).
    ///
    /// Named `retries` because tower's `ServiceBuilder` already has an
    /// inherent `retry` (tower's own layer, which would win the call).
    ///
    /// ```
    /// use buttress::ServiceBuilderExt;
    /// use buttress::retry::RetryPolicy;
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// let policy = RetryPolicy::builder().name("backend").build()?;
    /// let svc = ServiceBuilder::new()
    ///     .retries(policy)
    ///     .service(service_fn(|x: u64| async move { Ok::<_, std::io::Error>(x + 1) }));
    /// assert_eq!(svc.oneshot(1).await?, 2);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "retry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
    fn retries<C, R>(
        self,
        policy: RetryPolicy<C, R>,
    ) -> tower::ServiceBuilder<Stack<RetryLayer<C, R>, L>>;

    /// Adds a [`HedgeLayer`] driven by `policy`.
    #[cfg(feature = "retry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
    fn hedge<R>(self, policy: HedgePolicy<R>) -> tower::ServiceBuilder<Stack<HedgeLayer<R>, L>>;
}

impl<L> ServiceBuilderExt<L> for tower::ServiceBuilder<L> {
    #[cfg(feature = "breaker")]
    fn circuit_breaker(
        self,
        breaker: CircuitBreaker,
    ) -> tower::ServiceBuilder<Stack<CircuitBreakerLayer, L>> {
        self.layer(CircuitBreakerLayer::new(breaker))
    }

    #[cfg(feature = "retry")]
    fn retries<C, R>(
        self,
        policy: RetryPolicy<C, R>,
    ) -> tower::ServiceBuilder<Stack<RetryLayer<C, R>, L>> {
        self.layer(RetryLayer::new(policy))
    }

    #[cfg(feature = "retry")]
    fn hedge<R>(self, policy: HedgePolicy<R>) -> tower::ServiceBuilder<Stack<HedgeLayer<R>, L>> {
        self.layer(HedgeLayer::new(policy))
    }
}
