//! The throttle's service.

use std::task::{Context, Poll};

use buttress_core::BoxError;
use buttress_core::classify::{Classify, ErrorsAsFailures};
use tower_service::Service;

use super::future::ThrottleFuture;
use super::handle::AdaptiveThrottle;

/// Client-side adaptive throttling around an inner service: see the
/// [module docs](super).
///
/// # Clone
///
/// Clones share the throttle's counts.
#[derive(Clone, Debug)]
pub struct AdaptiveThrottleService<S, C = ErrorsAsFailures> {
    inner: S,
    throttle: AdaptiveThrottle,
    classifier: C,
}

impl<S, C> AdaptiveThrottleService<S, C> {
    /// Wraps `inner`, sharing `throttle` and judging results with
    /// `classifier`.
    pub fn new(inner: S, throttle: AdaptiveThrottle, classifier: C) -> Self {
        Self {
            inner,
            throttle,
            classifier,
        }
    }

    /// The throttle.
    pub fn throttle(&self) -> &AdaptiveThrottle {
        &self.throttle
    }

    buttress_core::define_inner_service_accessors!();
}

impl<S, C, Req> Service<Req> for AdaptiveThrottleService<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ThrottleFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let inner = self.throttle.inner();
        if inner.admit() {
            ThrottleFuture::sent(
                self.inner.call(req),
                self.throttle.clone(),
                self.classifier.clone(),
            )
        } else {
            ThrottleFuture::throttled(inner.name())
        }
    }
}
