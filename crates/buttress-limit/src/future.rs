//! The futures of the crate's services: [`ResponseFuture`] for the limit,
//! [`ThrottleFuture`] for the client-side throttle.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use buttress_core::BoxError;
use buttress_core::classify::Classify;
use buttress_core::reject::accounted;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::error::Overloaded;
use crate::handle::{AdaptiveLimit, Permit, Waiter};

pub use crate::throttle::future::ThrottleFuture;

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
        kind: Kind<F, C>,
    }
}

/// A queued call: boxed, so the common future stays small (the queue path
/// allocates anyway).
pub(crate) struct Waiting<F, C> {
    call: Option<Deferred<F>>,
    classifier: Option<C>,
    guard: WaitGuard,
    sleep: Pin<Box<Sleep>>,
}

pin_project! {
    // The permit and the classifier live in the `Called` variant only: a
    // shed call's future writes its tag and its two-word rejection, so
    // moving it never reloads narrow fields just stored (a store-forwarding
    // stall).
    #[project = KindProj]
    enum Kind<F, C> {
        Called { #[pin] future: F, permit: Permit, classifier: C },
        Waiting { waiting: Box<Waiting<F, C>> },
        Rejected { error: Overloaded },
    }
}

impl<F, C> ResponseFuture<F, C> {
    #[inline]
    pub(crate) fn called(future: F, permit: Permit, classifier: C) -> Self {
        Self {
            kind: Kind::Called {
                future,
                permit,
                classifier,
            },
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
                    classifier: Some(classifier),
                    guard,
                    sleep: Box::pin(sleep),
                }),
            },
        }
    }

    /// A shed call: fails with `error` when polled.
    #[inline]
    pub(crate) fn rejected(error: Overloaded) -> Self {
        Self {
            kind: Kind::Rejected { error },
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
                KindProj::Called {
                    future,
                    permit,
                    classifier,
                } => {
                    let result = ready!(future.poll(cx));
                    let outcome = classifier.classify(&result).outcome();
                    let result = result.map_err(Into::into);
                    // Another layer's refusal is not a drop.
                    permit.finish(accounted(outcome, result.as_ref().err()));
                    return Poll::Ready(result);
                }
                KindProj::Rejected { error } => {
                    return Poll::Ready(Err(Box::new(*error)));
                }
                KindProj::Waiting { waiting } => {
                    let Waiting {
                        call,
                        classifier,
                        guard,
                        sleep,
                    } = &mut **waiting;
                    if !guard.waiter.is_granted() {
                        guard.waiter.register(cx.waker());
                        if !guard.waiter.is_granted() {
                            if sleep.as_mut().poll(cx).is_pending() {
                                return Poll::Pending;
                            }
                            let inner = guard.limit.inner();
                            if inner.cancel(&guard.waiter) {
                                guard.done = true;
                                return Poll::Ready(Err(Box::new(inner.timed_out(&guard.waiter))));
                            }
                        }
                    }
                    guard.done = true;
                    let permit = guard.limit.granted(&guard.waiter);
                    match (call.take(), classifier.take()) {
                        (Some(call), Some(classifier)) => Kind::Called {
                            future: call(),
                            permit,
                            classifier,
                        },
                        // Unreachable: a waiter is granted once.
                        _ => Kind::Rejected {
                            error: Overloaded::new(guard.limit.name()),
                        },
                    }
                }
            };
            self.as_mut().project().kind.set(next);
        }
    }
}
