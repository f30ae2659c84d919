//! Future types.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use buttress_core::BoxError;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::error::DeadlineExceeded;

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
        Deadline { #[pin] future: F, #[pin] sleep: Sleep },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn plain(future: F) -> Self {
        Self {
            kind: Kind::Plain { future },
        }
    }

    pub(crate) fn deadline(future: F, sleep: Sleep) -> Self {
        Self {
            kind: Kind::Deadline { future, sleep },
        }
    }
}

impl<F, T> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, BoxError>>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Plain { future } => future.poll(cx),
            KindProj::Deadline { future, sleep } => {
                if let Poll::Ready(out) = future.poll(cx) {
                    return Poll::Ready(out);
                }
                ready!(sleep.poll(cx));
                Poll::Ready(Err(Box::new(DeadlineExceeded::new())))
            }
        }
    }
}

pin_project! {
    /// The future of [`BoxErrors`](crate::BoxErrors): the inner future with
    /// its error boxed.
    #[derive(Debug)]
    pub struct BoxErrorsFuture<F> {
        #[pin]
        future: F,
    }
}

impl<F> BoxErrorsFuture<F> {
    pub(crate) fn new(future: F) -> Self {
        Self { future }
    }
}

impl<F, T, E> Future for BoxErrorsFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().future.poll(cx).map_err(Into::into)
    }
}
