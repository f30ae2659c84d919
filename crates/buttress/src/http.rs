//! One mapping from buttress rejections to HTTP answers, and a layer that
//! applies it so a router needs no error handler of its own.
//!
//! | rejection (found anywhere in the error's `source()` chain) | answer |
//! |---|---|
//! | `CircuitOpen` | `503 Service Unavailable`, `Retry-After` when the next probe is known |
//! | `Overloaded`, `Throttled` | `503 Service Unavailable` |
//! | `DeadlineExceeded` | `504 Gateway Timeout` |
//! | `RateLimited` | `429 Too Many Requests`, `Retry-After` (the wait until the key's next allowed request) |
//!
//! `Retry-After` is in whole seconds, rounded up, so a client never comes
//! back before the layer would let it through.
//!
//! ```
//! use buttress::ServiceBuilderExt;
//! use buttress::breaker::CircuitBreaker;
//! use buttress::http::ErrorResponseLayer;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let breaker = CircuitBreaker::builder().name("api").build().unwrap();
//! breaker.force_open();
//! let app = ServiceBuilder::new()
//!     .layer(ErrorResponseLayer::new()) // the error type is now Infallible, as axum wants
//!     .circuit_breaker(breaker)
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, std::io::Error>(Response::new(String::from("hello")))
//!     }));
//! let res = app.oneshot(Request::new(())).await.unwrap();
//! assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
//! # }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use buttress_core::BoxError;
use buttress_core::http::retry_after_value;
use buttress_core::reject::{RejectionKind, rejection};
use http::header::RETRY_AFTER;
use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// The HTTP answer for a buttress rejection anywhere in `err`'s chain
/// (see the [module docs](self)); `None` for any other error.
///
/// For axum's `HandleErrorLayer`, when the application maps its other
/// errors itself:
///
/// ```
/// use axum::response::{IntoResponse, Response};
/// use buttress::BoxError;
/// use http::StatusCode;
///
/// async fn on_error(err: BoxError) -> Response {
///     buttress::http::error_response::<axum::body::Body>(&err)
///         .map(IntoResponse::into_response)
///         .unwrap_or_else(|| (StatusCode::BAD_GATEWAY, err.to_string()).into_response())
/// }
/// ```
#[must_use]
pub fn error_response<B: Default>(err: &BoxError) -> Option<Response<B>> {
    let rejected = rejection(err)?;
    let status = match rejected.kind() {
        RejectionKind::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        RejectionKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut res = Response::new(B::default());
    *res.status_mut() = status;
    if let Some(after) = rejected.retry_after() {
        res.headers_mut()
            .insert(RETRY_AFTER, retry_after_value(after));
    }
    Some(res)
}

/// The answer for an error that is not a rejection: `500 Internal Server
/// Error` with an empty body (an error's text is for the logs, not for
/// the client).
fn internal_error<B: Default>() -> Response<B> {
    let mut res = Response::new(B::default());
    *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    res
}

fn answer<B: Default>(err: &BoxError) -> Response<B> {
    error_response(err).unwrap_or_else(|| {
        tracing::warn!(error = %err, "answered 500: the error is not a buttress rejection");
        internal_error()
    })
}

/// Answers every error of the service below with a response: a buttress
/// rejection as [`error_response`] says, anything else with `500 Internal
/// Server Error` and an empty body. The service's error type becomes
/// [`Infallible`], which is what axum's `Router` asks of a route. Put it
/// outermost, outside every buttress layer.
///
/// To map other errors your own way, use axum's `HandleErrorLayer` with
/// [`error_response`] instead.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorResponseLayer {
    _private: (),
}

impl ErrorResponseLayer {
    /// The layer.
    #[must_use]
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl<S> Layer<S> for ErrorResponseLayer {
    type Service = ErrorResponse<S>;

    fn layer(&self, inner: S) -> ErrorResponse<S> {
        ErrorResponse {
            inner,
            failed: None,
        }
    }
}

/// The service of [`ErrorResponseLayer`].
///
/// # Clone
///
/// Each clone has its own readiness; clones share nothing else.
pub struct ErrorResponse<S> {
    inner: S,
    /// An error the inner service's `poll_ready` returned: the next call
    /// is answered with it, without calling the inner service.
    failed: Option<BoxError>,
}

impl<S> ErrorResponse<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for ErrorResponse<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            failed: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for ErrorResponse<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorResponse")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, Req, B> Service<Req> for ErrorResponse<S>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Default,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = ErrorResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.failed.is_none()
            && let Err(e) = ready!(self.inner.poll_ready(cx))
        {
            self.failed = Some(e.into());
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.failed.take() {
            Some(err) => ErrorResponseFuture {
                kind: Kind::Failed { err: Some(err) },
            },
            None => ErrorResponseFuture {
                kind: Kind::Called {
                    future: self.inner.call(req),
                },
            },
        }
    }
}

pin_project! {
    /// The future of [`ErrorResponse`].
    #[derive(Debug)]
    pub struct ErrorResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Called { #[pin] future: F },
        Failed { err: Option<BoxError> },
    }
}

impl<F, B, E> Future for ErrorResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Default,
{
    type Output = Result<Response<B>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future } => Poll::Ready(Ok(match ready!(future.poll(cx)) {
                Ok(res) => res,
                Err(e) => answer(&e.into()),
            })),
            KindProj::Failed { err } => Poll::Ready(Ok(match err.take() {
                Some(err) => answer(&err),
                None => internal_error(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use buttress_core::reject::{
        CircuitOpen, DeadlineExceeded, Overloaded, RateLimited, Throttled,
    };
    use buttress_core::telemetry::Name;

    use super::*;

    #[test]
    fn each_rejection_has_its_answer() {
        let res = |err: BoxError| error_response::<()>(&err);
        let open = res(Box::new(CircuitOpen::new(
            Name::new("b"),
            Some(Duration::from_millis(1_200)),
        )))
        .unwrap();
        assert_eq!(open.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(open.headers()[RETRY_AFTER], "2");
        let forced = res(Box::new(CircuitOpen::new(Name::new("b"), None))).unwrap();
        assert!(forced.headers().get(RETRY_AFTER).is_none());
        for shed in [
            Box::new(Overloaded::new(Name::new("l"))) as BoxError,
            Box::new(Throttled::new(Name::new("t"))),
        ] {
            assert_eq!(res(shed).unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        let late = res(Box::new(DeadlineExceeded::new(Name::new("r")))).unwrap();
        assert_eq!(late.status(), StatusCode::GATEWAY_TIMEOUT);
        // Rounded up: a client that waits the whole seconds is let through.
        let limited = res(Box::new(RateLimited::new(
            Name::new("q"),
            Duration::from_millis(2_001),
        )))
        .unwrap();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[RETRY_AFTER], "3");
        let soon = res(Box::new(RateLimited::new(
            Name::new("q"),
            Duration::from_millis(10),
        )))
        .unwrap();
        assert_eq!(soon.headers()[RETRY_AFTER], "1");
        assert!(res("connection reset".into()).is_none());
    }
}
