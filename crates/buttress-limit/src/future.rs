//! The limiter's response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use buttress_core::BoxError;
use buttress_core::classify::Classify;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::error::Overloaded;
use crate::handle::{AdaptiveLimit, Permit, Waiter};

/// The inner call of a queued request, made once it gets a permit.
pub(crate) type Deferred<F> = Box<dyn FnOnce() -> F + Send>;

/// Takes a waiter out of the queue if its future is dropped or times out.
pub(crate) struct WaitGuard {
    pub(crate) waiter: Arc<Waiter>,
    pub(crate) limit: AdaptiveLimit,
    pub(crate) done: bool,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        if !self.done && !self.limit.inner().cancel(&self.waiter) {
            // Granted meanwhile: the permit was never used.
            self.limit.inner().release_granted(&self.waiter);
        }
    }
}

pin_project! {
    /// The future of an [`AdaptiveLimitService`](crate::AdaptiveLimitService)
    /// call: the inner call's future, whose permit is released and whose
    /// outcome is recorded on completion; a call waiting in the queue; or an
    /// immediate [`Overloaded`].
    ///
    /// Dropping it releases its permit (or leaves the queue) and counts as
    /// an ignored call.
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F>,
        permit: Permit,
        classifier: C,
    }
}

/// A queued call: boxed, so the common future stays small (the queue path
/// allocates anyway).
pub(crate) struct Waiting<F> {
    call: Option<Deferred<F>>,
    guard: WaitGuard,
    sleep: Pin<Box<Sleep>>,
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] future: F },
        Waiting { waiting: Box<Waiting<F>> },
        Rejected { error: Option<Overloaded> },
    }
}

impl<F, C> ResponseFuture<F, C> {
    #[inline]
    pub(crate) fn called(future: F, permit: Permit, classifier: C) -> Self {
        Self {
            kind: Kind::Called { future },
            permit,
            classifier,
        }
    }

    pub(crate) fn waiting(
        call: Deferred<F>,
        guard: WaitGuard,
        sleep: Sleep,
        classifier: C,
    ) -> Self {
        Self {
            kind: Kind::Waiting {
                waiting: Box::new(Waiting {
                    call: Some(call),
                    guard,
                    sleep: Box::pin(sleep),
                }),
            },
            permit: Permit::empty(),
            classifier,
        }
    }

    #[inline]
    pub(crate) fn rejected(error: Overloaded, classifier: C) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
            permit: Permit::empty(),
            classifier,
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Called { .. } => "called",
            Kind::Waiting { .. } => "waiting",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            let next = match this.kind.project() {
                KindProj::Called { future } => {
                    let result = ready!(future.poll(cx));
                    this.permit
                        .finish(this.classifier.classify(&result).outcome());
                    return Poll::Ready(result.map_err(Into::into));
                }
                KindProj::Rejected { error } => {
                    return Poll::Ready(Err(Box::new(error.take().unwrap_or_default())));
                }
                KindProj::Waiting { waiting } => {
                    let Waiting { call, guard, sleep } = &mut **waiting;
                    if !guard.waiter.is_granted() {
                        guard.waiter.register(cx.waker());
                        if !guard.waiter.is_granted() {
                            if sleep.as_mut().poll(cx).is_pending() {
                                return Poll::Pending;
                            }
                            let inner = guard.limit.inner();
                            if inner.cancel(&guard.waiter) {
                                guard.done = true;
                                let error = inner.reject(Overloaded::new());
                                return Poll::Ready(Err(Box::new(error)));
                            }
                        }
                    }
                    guard.done = true;
                    *this.permit = guard.limit.granted(&guard.waiter);
                    match call.take() {
                        Some(call) => Kind::Called { future: call() },
                        None => Kind::Rejected { error: None },
                    }
                }
            };
            self.as_mut().project().kind.set(next);
        }
    }
}
