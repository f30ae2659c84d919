//! [`Attempts`] and [`AttemptRequest`]: the service and the request type
//! tower's `Retry` drives inside a [`RetryService`](crate::RetryService).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use buttress_core::BoxError;
use buttress_core::telemetry::Name;
use tower_service::Service;
use tracing::instrument::{Instrument, Instrumented};

use crate::future::AttemptFuture;

/// One attempt's request, as tower's `Retry` carries it inside a
/// [`RetryService`](crate::RetryService): the request (`None` once there
/// is no copy left to send: the request could not be copied, or this is
/// the last attempt) and the attempt's number.
///
/// The policy always hands tower one, so that tower shows it every
/// attempt's result, the last included; it appears only in the service's
/// future type.
pub struct AttemptRequest<Req> {
    pub(crate) request: Option<Req>,
    pub(crate) attempt: u32,
}

impl<Req> AttemptRequest<Req> {
    /// The first attempt of `request`.
    #[inline]
    pub(crate) const fn first(request: Req) -> Self {
        Self {
            request: Some(request),
            attempt: 1,
        }
    }

    /// The attempt number `attempt` of `request` (`None`: nothing to send).
    #[inline]
    pub(crate) const fn new(request: Option<Req>, attempt: u32) -> Self {
        Self { request, attempt }
    }

    /// The attempt's number, from 1.
    #[must_use]
    pub const fn attempt(&self) -> u32 {
        self.attempt
    }
}

impl<Req> fmt::Debug for AttemptRequest<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttemptRequest")
            .field("attempt", &self.attempt)
            .field("has_request", &self.request.is_some())
            .finish()
    }
}

/// The inner service as tower's `Retry` drives it inside a
/// [`RetryService`](crate::RetryService): each attempt runs in a
/// `buttress.retry.attempt` tracing span (fields `name` and `attempt`),
/// and its result comes back as the inner service's own `Result`, which
/// the policy classifies as it is; errors of `poll_ready` are boxed.
#[derive(Clone, Debug)]
pub struct Attempts<S> {
    inner: S,
    name: Name,
}

impl<S> Attempts<S> {
    /// Wraps `inner`, naming its attempts' spans after the retry policy `name`.
    pub(crate) const fn new(inner: S, name: Name) -> Self {
        Self { inner, name }
    }

    buttress_core::define_inner_service_accessors!();
}

impl<S, Req> Service<AttemptRequest<Req>> for Attempts<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = Result<S::Response, S::Error>;
    type Error = BoxError;
    type Future = AttemptFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: AttemptRequest<Req>) -> Self::Future {
        let Some(request) = req.request else {
            return AttemptFuture::empty();
        };
        // One load and compare when nobody listens at `debug`: no span is
        // built, entered or dropped.
        if tracing::level_enabled!(tracing::Level::DEBUG)
            && let Some(span) = attempt_span(self.name, req.attempt)
        {
            return AttemptFuture::traced(traced(span, &mut self.inner, request));
        }
        AttemptFuture::plain(self.inner.call(request))
    }
}

/// The span of attempt number `attempt` of the retry `name`, if a
/// subscriber wants it.
#[cold]
#[inline(never)]
fn attempt_span(name: Name, attempt: u32) -> Option<tracing::Span> {
    let span = tracing::debug_span!("buttress.retry.attempt", name = %name, attempt);
    (!span.is_disabled()).then_some(span)
}

/// `inner.call(request)` inside `span`, its future to be polled inside it
/// too: boxed with its span, so that only a traced attempt pays for it, and
/// returned as one pointer, so that an attempt nobody traces is built in
/// place. Out of line, so that an untraced attempt stays small enough to
/// inline.
#[cold]
#[inline(never)]
fn traced<S: Service<Req>, Req>(
    span: tracing::Span,
    inner: &mut S,
    request: Req,
) -> Pin<Box<Instrumented<S::Future>>> {
    let future = span.in_scope(|| inner.call(request));
    Box::pin(future.instrument(span))
}
