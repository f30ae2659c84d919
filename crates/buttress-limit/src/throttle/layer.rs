//! The throttle's layer.

use buttress_core::classify::ErrorsAsFailures;
use tower_layer::Layer;

use super::handle::AdaptiveThrottle;
use super::service::Throttle;

/// Wraps services in a [`Throttle`] sharing one [`AdaptiveThrottle`].
///
/// # Clone
///
/// Every service built by this layer (or a clone) shares the throttle's
/// counts: build one throttle per backend.
#[derive(Clone, Debug)]
pub struct ThrottleLayer<C = ErrorsAsFailures> {
    throttle: AdaptiveThrottle,
    classifier: C,
}

impl ThrottleLayer {
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

impl From<AdaptiveThrottle> for ThrottleLayer {
    fn from(throttle: AdaptiveThrottle) -> Self {
        Self::new(throttle)
    }
}

impl<C> ThrottleLayer<C> {
    /// Judges the inner service's results with `classifier`, a
    /// [`Classify`](buttress_core::classify::Classify) over its
    /// `Result<Response, Error>`: a result is accepted when it is a
    /// success (or ignored) and not retryable. Default:
    /// [`ErrorsAsFailures`].
    #[must_use]
    pub fn classifier<C2>(self, classifier: C2) -> ThrottleLayer<C2> {
        ThrottleLayer {
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

impl<S, C: Clone> Layer<S> for ThrottleLayer<C> {
    type Service = Throttle<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttle::new(inner, self.throttle.clone(), self.classifier.clone())
    }
}
