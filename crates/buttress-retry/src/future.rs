//! Future types.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use buttress_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tracing::Span;

use crate::error::DeadlineExceeded;
use crate::telemetry::RetryCounts;

pin_project! {
    /// The wait before a retry: the [`Future`] of
    /// [`TowerPolicy`](crate::TowerPolicy)'s `tower::retry::Policy` impl.
    /// Ready at once for a zero delay (no timer is created).
    #[derive(Debug)]
    pub struct Backoff {
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl Backoff {
    pub(crate) fn ready() -> Self {
        Self { sleep: None }
    }

    pub(crate) fn sleep(sleep: Sleep) -> Self {
        Self { sleep: Some(sleep) }
    }
}

impl Future for Backoff {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project().sleep.as_pin_mut() {
            Some(sleep) => sleep.poll(cx),
            None => Poll::Ready(()),
        }
    }
}

pin_project! {
    /// The future of a [`RetryService`](crate::RetryService) call: tower's
    /// retry future, cut short by the request's deadline when one is set.
    /// Resolves to the inner service's response, or its error boxed (or
    /// wrapped in [`BudgetExhausted`](crate::BudgetExhausted)), or
    /// [`DeadlineExceeded`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Plain { #[pin] future: F },
        Deadline {
            #[pin]
            future: F,
            #[pin]
            sleep: Sleep,
            counts: Arc<RetryCounts>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn plain(future: F) -> Self {
        Self {
            kind: Kind::Plain { future },
        }
    }

    pub(crate) fn deadline(future: F, sleep: Sleep, counts: Arc<RetryCounts>) -> Self {
        Self {
            kind: Kind::Deadline {
                future,
                sleep,
                counts,
            },
        }
    }
}

/// An attempt's result as the caller gets it.
#[inline]
fn unwrap<T, E: Into<BoxError>>(out: Result<Result<T, E>, BoxError>) -> Result<T, BoxError> {
    match out {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(e),
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Result<T, E>, BoxError>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Plain { future } => future.poll(cx).map(unwrap),
            KindProj::Deadline {
                future,
                sleep,
                counts,
            } => {
                if let Poll::Ready(out) = future.poll(cx) {
                    return Poll::Ready(unwrap(out));
                }
                ready!(sleep.poll(cx));
                counts.deadline_exceeded.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(name = %counts.name(), "deadline exceeded: the attempt in flight is dropped");
                Poll::Ready(Err(Box::new(DeadlineExceeded::new(counts.name()))))
            }
        }
    }
}

pin_project! {
    /// One attempt of a [`RetryService`](crate::RetryService) call: the
    /// inner service's future, polled inside the attempt's tracing span,
    /// its result handed to the policy as it is.
    #[derive(Debug)]
    pub struct AttemptFuture<F> {
        #[pin]
        future: Option<F>,
        span: Option<Box<Span>>,
    }
}

impl<F> AttemptFuture<F> {
    pub(crate) fn new(future: Option<F>, span: Option<Box<Span>>) -> Self {
        Self { future, span }
    }
}

impl<F, T, E> Future for AttemptFuture<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<Result<T, E>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.as_deref().map(Span::enter);
        match this.future.as_pin_mut() {
            Some(future) => future.poll(cx).map(Ok),
            // The policy never lets tower send an attempt without a request.
            None => Poll::Ready(Err(Box::new(NoRequest))),
        }
    }
}

/// The error of an attempt made without a request (which the policy never
/// lets happen).
#[derive(Debug)]
struct NoRequest;

impl std::fmt::Display for NoRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("retry: no copy of the request left to send")
    }
}

impl std::error::Error for NoRequest {}
