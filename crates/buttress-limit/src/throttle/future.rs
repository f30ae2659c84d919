//! [`ThrottleFuture`], the future of an
//! [`AdaptiveThrottleService`](super::AdaptiveThrottleService) call
//! (public as `buttress_limit::future::ThrottleFuture`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use buttress_core::BoxError;
use buttress_core::classify::{Classify, Outcome};
use buttress_core::reject::{Throttled, rejection};
use buttress_core::telemetry::Name;
use pin_project_lite::pin_project;

use super::handle::AdaptiveThrottle;

pin_project! {
    /// The future of an [`AdaptiveThrottleService`](crate::throttle::AdaptiveThrottleService) call: the
    /// inner call, whose result is counted as accepted or not on
    /// completion, or an immediate local rejection ([`Throttled`]).
    pub struct ThrottleFuture<F, C> {
        #[pin]
        kind: ThrottleKind<F, C>,
    }
}

pin_project! {
    #[project = ThrottleKindProj]
    enum ThrottleKind<F, C> {
        Sent { #[pin] future: F, throttle: Option<AdaptiveThrottle>, classifier: C },
        Throttled { name: Name },
    }
}

impl<F, C> ThrottleFuture<F, C> {
    /// A call sent to the inner service.
    pub(crate) fn sent(future: F, throttle: AdaptiveThrottle, classifier: C) -> Self {
        Self {
            kind: ThrottleKind::Sent {
                future,
                throttle: Some(throttle),
                classifier,
            },
        }
    }

    /// A call shed by the throttle `name`.
    pub(crate) fn throttled(name: Name) -> Self {
        Self {
            kind: ThrottleKind::Throttled { name },
        }
    }
}

impl<F, C> fmt::Debug for ThrottleFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottleFuture")
            .field(
                "throttled",
                &matches!(self.kind, ThrottleKind::Throttled { .. }),
            )
            .finish_non_exhaustive()
    }
}

impl<F, C, T, E> Future for ThrottleFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            ThrottleKindProj::Throttled { name } => {
                Poll::Ready(Err(Box::new(Throttled::new(*name))))
            }
            ThrottleKindProj::Sent {
                future,
                throttle,
                classifier,
            } => {
                let result = ready!(future.poll(cx));
                let c = classifier.classify(&result);
                let result = result.map_err(Into::into);
                if let Some(throttle) = throttle.take() {
                    // Another layer's refusal is not the backend rejecting:
                    // it counts as accepted, like any answer that is not a
                    // backend's rejection.
                    let refused = result
                        .as_ref()
                        .err()
                        .and_then(rejection)
                        .is_some_and(|r| r.is_refusal());
                    if refused || (c.outcome() != Outcome::Failure && !c.is_retryable()) {
                        throttle.inner().accept();
                    }
                }
                Poll::Ready(result)
            }
        }
    }
}
