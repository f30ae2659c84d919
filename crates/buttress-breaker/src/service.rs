//! The breaker's service.

use std::fmt;
use std::task::{Context, Poll};

use buttress_core::BoxError;
use buttress_core::classify::{Classify, ErrorsAsFailures};
use tower_service::Service;

use crate::error::CircuitOpen;
use crate::future::ResponseFuture;
use crate::handle::{Admit, CircuitBreaker, Permit};

/// What admission decided for the next call.
enum Decision {
    Admitted(Admit),
    Probe(Permit),
    Rejected(CircuitOpen),
}

/// Guards an inner service with a [`CircuitBreaker`].
///
/// `poll_ready` asks the breaker first: when it rejects, the inner service
/// is not polled at all (a dead backend's pool is not waited on) and the
/// next `call` fails at once with [`CircuitOpen`]. When it admits, the
/// inner service's readiness is awaited as usual, and the call's outcome,
/// judged by the classifier `C`, is recorded when its future completes.
///
/// # Clone
///
/// Clones share the breaker (its state is in the [`CircuitBreaker`]
/// handle); each clone has its own readiness, so a half-open probe permit
/// reserved by one clone's `poll_ready` is never used twice.
pub struct CircuitBreakerService<S, C = ErrorsAsFailures> {
    inner: S,
    breaker: CircuitBreaker,
    classifier: C,
    ready: Option<Decision>,
}

impl<S, C> CircuitBreakerService<S, C> {
    /// Wraps `inner`, sharing `breaker`, judging results with `classifier`.
    pub fn new(inner: S, breaker: CircuitBreaker, classifier: C) -> Self {
        Self {
            inner,
            breaker,
            classifier,
            ready: None,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service (a reserved probe permit is given back).
    pub fn into_inner(self) -> S {
        self.inner
    }
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

impl<S, C> CircuitBreakerService<S, C> {
    #[inline]
    fn admit(&self) -> Decision {
        match self.breaker.inner().admit() {
            Ok(Admit::Probe(epoch)) => {
                Decision::Probe(Permit::new(self.breaker.token(), Admit::Probe(epoch), None))
            }
            Ok(admit) => Decision::Admitted(admit),
            Err(open) => Decision::Rejected(open),
        }
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
        if matches!(self.ready, None | Some(Decision::Rejected(_))) {
            self.ready = Some(self.admit());
        }
        if matches!(self.ready, Some(Decision::Rejected(_))) {
            // Ready to fail fast; the inner service is left alone.
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        // Calling without `poll_ready` is a contract violation; admitting
        // here is the forgiving answer (the inner service may still object).
        let inner = self.breaker.inner();
        // The common case, read in place: moving the whole decision out
        // costs a store-forwarding stall on the hot path.
        match &self.ready {
            Some(Decision::Admitted(admit)) => {
                let admit = *admit;
                self.ready = None;
                let permit = match admit {
                    Admit::Unguarded => None,
                    admit => Some(Permit::new(self.breaker.token(), admit, inner.start())),
                };
                return ResponseFuture::called(
                    self.inner.call(req),
                    permit,
                    self.classifier.clone(),
                );
            }
            Some(Decision::Rejected(open)) => {
                let open = *open;
                self.ready = None;
                return ResponseFuture::rejected(open, self.classifier.clone());
            }
            _ => {}
        }
        let decision = match self.ready.take() {
            Some(decision) => decision,
            None => self.admit(),
        };
        let permit = match decision {
            Decision::Rejected(open) => {
                return ResponseFuture::rejected(open, self.classifier.clone());
            }
            Decision::Admitted(Admit::Unguarded) => None,
            Decision::Admitted(admit) => {
                Some(Permit::new(self.breaker.token(), admit, inner.start()))
            }
            Decision::Probe(permit) => Some(permit.started(inner.start())),
        };
        ResponseFuture::called(self.inner.call(req), permit, self.classifier.clone())
    }
}
