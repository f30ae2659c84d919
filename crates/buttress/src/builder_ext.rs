//! `ServiceBuilder` methods for every buttress layer.

use tower_layer::Stack;

#[cfg(feature = "breaker")]
use buttress_breaker::{CircuitBreaker, CircuitBreakerLayer};

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
}

impl<L> ServiceBuilderExt<L> for tower::ServiceBuilder<L> {
    #[cfg(feature = "breaker")]
    fn circuit_breaker(
        self,
        breaker: CircuitBreaker,
    ) -> tower::ServiceBuilder<Stack<CircuitBreakerLayer, L>> {
        self.layer(CircuitBreakerLayer::new(breaker))
    }
}
