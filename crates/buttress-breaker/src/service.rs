//! The breaker's service.

use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use buttress_core::BoxError;
use buttress_core::classify::{Classify, ErrorsAsFailures};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::handle::{Admit, CircuitBreaker, Permit};

/// Guards an inner service with a [`CircuitBreaker`].
///
/// `poll_ready` reserves nothing in the breaker. When the breaker would
/// reject a call (open, forced open, or half-open with every probe out),
/// it answers ready at once without polling the inner service (a dead
/// backend's pool is not waited on), and the next `call` fails with
/// [`CircuitOpen`](crate::CircuitOpen). Otherwise it awaits the inner
/// service's readiness. `call` takes the decision against the breaker's
/// state at that moment: a closed breaker admits the call, a half-open one
/// hands it a probe permit if one is free, and a breaker forced open after
/// `poll_ready` rejects it. The call's outcome, judged by the classifier
/// `C`, is recorded when its future completes.
///
/// # Clone
///
/// Clones share the breaker (its state is in the [`CircuitBreaker`]
/// handle); each clone has its own readiness. Since readiness holds no
/// probe permit, clones polled ready and left idle never keep other
/// callers from probing a half-open breaker.
pub struct CircuitBreakerService<S, C = ErrorsAsFailures> {
    inner: S,
    breaker: CircuitBreaker,
    classifier: C,
    /// Set (to the time until the next probe, when known) when
    /// `poll_ready` answered for a rejecting breaker without readying
    /// `inner`: the next `call` must not reach `inner`.
    bypassed: Option<Option<Duration>>,
}

impl<S, C> CircuitBreakerService<S, C> {
    /// Wraps `inner`, sharing `breaker`, judging results with `classifier`.
    pub fn new(inner: S, breaker: CircuitBreaker, classifier: C) -> Self {
        Self {
            inner,
            breaker,
            classifier,
            bypassed: None,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    buttress_core::define_inner_service_accessors!();
}

impl<S: Clone, C: Clone> Clone for CircuitBreakerService<S, C> {
    fn clone(&self) -> Self {
        Self::new(
            self.inner.clone(),
            self.breaker.clone(),
            self.classifier.clone(),
        )
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for CircuitBreakerService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerService")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for CircuitBreakerService<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Err(retry_after) = self.breaker.inner().readiness() {
            // Ready to fail fast; the inner service is left alone.
            self.bypassed = Some(retry_after);
            return Poll::Ready(Ok(()));
        }
        self.bypassed = None;
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let inner = self.breaker.inner();
        if let Some(retry_after) = self.bypassed.take() {
            // The inner service was not readied, so it is not called even
            // if the breaker has admitted calls again since.
            return ResponseFuture::rejected(inner.reject(retry_after), self.classifier.clone());
        }
        // The decision is taken here, against the state now: a probe
        // permit is held only by a call in flight, and a state forced
        // since `poll_ready` applies to this call.
        let permit = match inner.admit() {
            Ok(Admit::Unguarded) => None,
            Ok(admit) => Some(Permit::new(self.breaker.token(), admit, inner.start())),
            Err(open) => return ResponseFuture::rejected(open, self.classifier.clone()),
        };
        ResponseFuture::called(self.inner.call(req), permit, self.classifier.clone())
    }
}
