//! The layer's response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use buttress_core::BoxError;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::decision::Decision;
use crate::fields::Fields;

/// A decision taken in Redis (boxed: it is a network round trip, which
/// dwarfs the allocation; in-process decisions are taken in `call` and
/// never box).
pub(crate) type Deciding = Pin<Box<dyn Future<Output = Decision> + Send>>;

pin_project! {
    #[project = StateProj]
    enum State<F, S, Req> {
        Deciding { decide: Deciding, svc: Option<S>, req: Option<Req> },
        Calling { #[pin] fut: F },
        Failed { err: Option<BoxError> },
    }
}

pin_project! {
    /// The future of [`RateLimit`](crate::RateLimit): the decision (when
    /// it is taken in Redis), then the inner service's call.
    pub struct ResponseFuture<F, S, Req, H> {
        #[pin]
        state: State<F, S, Req>,
        decision: Option<Decision>,
        fields: H,
    }
}

impl<F, S, Req, H> ResponseFuture<F, S, Req, H> {
    pub(crate) fn calling(fut: F, decision: Option<Decision>, fields: H) -> Self {
        Self {
            state: State::Calling { fut },
            decision,
            fields,
        }
    }

    pub(crate) fn failed(err: BoxError, fields: H) -> Self {
        Self {
            state: State::Failed { err: Some(err) },
            decision: None,
            fields,
        }
    }

    pub(crate) fn deciding(decide: Deciding, svc: S, req: Req, fields: H) -> Self {
        Self {
            state: State::Deciding {
                decide,
                svc: Some(svc),
                req: Some(req),
            },
            decision: None,
            fields,
        }
    }
}

impl<F, S, Req, H> fmt::Debug for ResponseFuture<F, S, Req, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

impl<F, S, Req, H, T, E> Future for ResponseFuture<F, S, Req, H>
where
    S: Service<Req, Future = F, Response = T, Error = E>,
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    H: Fields<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Deciding { decide, svc, req } => {
                    let d = ready!(decide.as_mut().poll(cx));
                    if !d.is_allowed() {
                        this.state.set(State::Failed { err: None });
                        return Poll::Ready(Err(Box::new(d.rejection())));
                    }
                    let (Some(mut svc), Some(req)) = (svc.take(), req.take()) else {
                        return Poll::Ready(
                            Err("rate limit future polled after completion".into()),
                        );
                    };
                    *this.decision = Some(d);
                    // `svc` was polled ready by `poll_ready` before `call`
                    // swapped it out.
                    let fut = svc.call(req);
                    this.state.set(State::Calling { fut });
                }
                StateProj::Calling { fut } => {
                    let mut res = ready!(fut.poll(cx)).map_err(Into::into)?;
                    if let Some(d) = this.decision {
                        this.fields.stamp(&mut res, d);
                    }
                    return Poll::Ready(Ok(res));
                }
                StateProj::Failed { err } => {
                    return Poll::Ready(Err(err
                        .take()
                        .unwrap_or_else(|| "rate limit future polled after completion".into())));
                }
            }
        }
    }
}
