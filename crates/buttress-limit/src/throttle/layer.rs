//! The throttle's layer.

use buttress_core::classify::ErrorsAsFailures;
use tower_layer::Layer;

use super::handle::AdaptiveThrottle;
use super::service::AdaptiveThrottleService;

/// Wraps services in an [`AdaptiveThrottleService`] sharing one
/// [`AdaptiveThrottle`].
///
/// # Clone
///
/// Every service built by this layer (or a clone) shares the throttle's
/// counts: build one throttle per backend.
#[derive(Clone, Debug)]
pub struct AdaptiveThrottleLayer<C = ErrorsAsFailures> {
    throttle: AdaptiveThrottle,
    classifier: C,
}

impl AdaptiveThrottleLayer {
    /// A layer around `throttle` that counts `Ok` as accepted
    /// ([`ErrorsAsFailures`]).
    #[must_use]
    pub fn new(throttle: AdaptiveThrottle) -> Self {
        Self {
            throttle,
            classifier: ErrorsAsFailures::new(),
        }
    }
}

impl From<AdaptiveThrottle> for AdaptiveThrottleLayer {
    fn from(throttle: AdaptiveThrottle) -> Self {
        Self::new(throttle)
    }
}

impl<C> AdaptiveThrottleLayer<C> {
    /// Judges the inner service's results with `classifier`, a
    /// [`Classify`](buttress_core::classify::Classify) over its
    /// `Result<Response, Error>`: a result is accepted when it is a
    /// success (or ignored) and not retryable. Default:
    /// [`ErrorsAsFailures`].
    #[must_use]
    pub fn classifier<C2>(self, classifier: C2) -> AdaptiveThrottleLayer<C2> {
        AdaptiveThrottleLayer {
            throttle: self.throttle,
            classifier,
        }
    }

    /// The throttle.
    #[must_use]
    pub fn throttle(&self) -> &AdaptiveThrottle {
        &self.throttle
    }
}

impl<S, C: Clone> Layer<S> for AdaptiveThrottleLayer<C> {
    type Service = AdaptiveThrottleService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveThrottleService::new(inner, self.throttle.clone(), self.classifier.clone())
    }
}
