//! The breaker's response future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use buttress_core::BoxError;
use buttress_core::classify::Classify;
use buttress_core::reject::accounted;
use pin_project_lite::pin_project;

use crate::error::CircuitOpen;
use crate::handle::Permit;

pin_project! {
    /// The future of a [`CircuitBreakerService`](crate::CircuitBreakerService)
    /// call: the inner call's future, classified and recorded on completion,
    /// or an immediate [`CircuitOpen`].
    ///
    /// Dropping it before completion counts as a cancelled call: ignored,
    /// and a half-open probe's permit is given back.
    #[derive(Debug)]
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F>,
        permit: Option<Permit>,
        classifier: C,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Called { #[pin] future: F },
        // Boxed when the call is rejected, the one allocation a rejection
        // costs either way: the future stays as small as the inner one.
        Rejected { error: Option<Box<CircuitOpen>> },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(future: F, permit: Option<Permit>, classifier: C) -> Self {
        Self {
            kind: Kind::Called { future },
            permit,
            classifier,
        }
    }

    pub(crate) fn rejected(error: CircuitOpen, classifier: C) -> Self {
        Self {
            kind: Kind::Rejected {
                error: Some(Box::new(error)),
            },
            permit: None,
            classifier,
        }
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
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Called { future } => {
                let result = ready!(future.poll(cx));
                let outcome = this.classifier.classify(&result).outcome();
                let result = result.map_err(Into::into);
                // Recorded in place: taking the permit out would copy it.
                if let Some(permit) = this.permit {
                    // Another layer's refusal is not the dependency's failure.
                    permit.finish(accounted(outcome, result.as_ref().err()));
                }
                Poll::Ready(result)
            }
            KindProj::Rejected { error } => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}
