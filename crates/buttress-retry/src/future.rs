//! Future types.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use buttress_core::BoxError;
use buttress_core::time::Instant;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tracing::instrument::Instrumented;

pub use crate::hedge::future::HedgeFuture;

use crate::error::DeadlineExceeded;
use crate::telemetry::RetryCounts;

/// The wait before a retry: the [`Future`] of
/// [`TowerPolicy`](crate::TowerPolicy)'s `tower::retry::Policy` impl.
/// Ready at once for a zero delay (no timer is created). The timer is
/// boxed: it exists only while a retry waits, and keeping it inline would
/// make every call's future (which carries this type whether or not it
/// retries) larger by a whole timer.
#[derive(Debug)]
pub struct Backoff {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Backoff {
    pub(crate) fn ready() -> Self {
        Self { sleep: None }
    }

    pub(crate) fn sleep(sleep: Sleep) -> Self {
        Self {
            sleep: Some(Box::pin(sleep)),
        }
    }
}

impl Future for Backoff {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
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
        future: F,
        #[pin]
        timer: Option<DeadlineTimer>,
    }
}

pin_project! {
    /// The deadline of a request, its timer, and the counts to report it
    /// in. The timer is built the first time the call is pending inside a
    /// tokio runtime: a call answered on its first poll never touches the
    /// runtime's timer, and one made outside a runtime is bounded by the
    /// policy alone (no retry starts past the deadline).
    #[derive(Debug)]
    pub(crate) struct DeadlineTimer {
        deadline: Instant,
        #[pin]
        sleep: Option<Sleep>,
        counts: Arc<RetryCounts>,
    }
}

impl DeadlineTimer {
    pub(crate) fn new(deadline: Instant, counts: Arc<RetryCounts>) -> Self {
        Self {
            deadline,
            sleep: None,
            counts,
        }
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn new(future: F, timer: Option<DeadlineTimer>) -> Self {
        Self { future, timer }
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
        let this = self.project();
        if let Poll::Ready(out) = this.future.poll(cx) {
            return Poll::Ready(unwrap(out));
        }
        let Some(timer) = this.timer.as_pin_mut() else {
            return Poll::Pending;
        };
        let mut timer = timer.project();
        if timer.sleep.is_none() {
            if tokio::runtime::Handle::try_current().is_err() {
                return Poll::Pending;
            }
            timer
                .sleep
                .set(Some(tokio::time::sleep_until(*timer.deadline)));
        }
        let Some(sleep) = timer.sleep.as_pin_mut() else {
            return Poll::Pending;
        };
        ready!(sleep.poll(cx));
        let counts = &**timer.counts;
        counts.deadline_exceeded.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(name = %counts.name(), "deadline exceeded: the attempt in flight is dropped");
        Poll::Ready(Err(Box::new(DeadlineExceeded::new(counts.name()))))
    }
}

pin_project! {
    /// One attempt of a [`RetryService`](crate::RetryService) call: the
    /// inner service's future (polled inside the attempt's tracing span
    /// when a subscriber wants one), its result handed to the policy as it
    /// is.
    #[derive(Debug)]
    pub struct AttemptFuture<F> {
        #[pin]
        kind: AttemptKind<F>,
    }
}

pin_project! {
    #[project = AttemptProj]
    #[derive(Debug)]
    enum AttemptKind<F> {
        Plain { #[pin] future: F },
        Traced { future: Pin<Box<Instrumented<F>>> },
        // The policy never lets tower send an attempt without a request.
        Empty,
    }
}

impl<F> AttemptFuture<F> {
    #[inline]
    pub(crate) fn plain(future: F) -> Self {
        Self {
            kind: AttemptKind::Plain { future },
        }
    }

    #[inline]
    pub(crate) fn traced(future: Pin<Box<Instrumented<F>>>) -> Self {
        Self {
            kind: AttemptKind::Traced { future },
        }
    }

    #[inline]
    pub(crate) fn empty() -> Self {
        Self {
            kind: AttemptKind::Empty,
        }
    }
}

impl<F, T, E> Future for AttemptFuture<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<Result<T, E>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            AttemptProj::Plain { future } => future.poll(cx).map(Ok),
            AttemptProj::Traced { future } => future.as_mut().poll(cx).map(Ok),
            AttemptProj::Empty => Poll::Ready(Err(Box::new(NoRequest))),
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
