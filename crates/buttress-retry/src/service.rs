//! [`RetryService`] and the [`TowerPolicy`] it drives tower's `Retry` with.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use buttress_core::BoxError;
use buttress_core::classify::{Classify, ErrorsAsFailures};
use buttress_core::time::Instant;
use tower_service::Service;

use crate::attempt::{AttemptRequest, Attempts};
use crate::future::{Backoff, ResponseFuture};
use crate::policy::{AttemptResult, RetryPolicy};
use crate::replay::{CloneRequest, Deadline, Replay, later};

/// The [`tower::retry::Policy`] a [`RetryService`](crate::RetryService)
/// drives tower's [`Retry`](tower::retry::Retry) with: its
/// [`RetryPolicy`], wrapped by the service itself and by nothing else, so
/// that the deadline's timer always comes with it (see
/// [`RetryPolicy`]'s docs). It appears only in the service's future type.
pub struct TowerPolicy<C, R>(pub(crate) RetryPolicy<C, R>);

impl<C, R> Clone for TowerPolicy<C, R> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<C: fmt::Debug, R: fmt::Debug> fmt::Debug for TowerPolicy<C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TowerPolicy").field(&self.0).finish()
    }
}

/// tower's `Retry` sees each attempt's result as the inner service's own
/// `Result` (inside [`Attempts`]' `Ok`), so the classifier judges exactly
/// what the inner service returned, as the breaker's and the limit's do.
impl<Req, Res, E, C, R> tower::retry::Policy<AttemptRequest<Req>, Result<Res, E>, BoxError>
    for TowerPolicy<C, R>
where
    C: Classify<Res, E>,
    R: Replay<Req>,
    E: Into<BoxError>,
{
    type Future = Backoff;

    #[inline]
    fn retry(
        &mut self,
        req: &mut AttemptRequest<Req>,
        result: &mut AttemptResult<Res, E>,
    ) -> Option<Backoff> {
        self.0.retry(req, result)
    }

    #[inline]
    fn clone_request(&mut self, req: &AttemptRequest<Req>) -> Option<AttemptRequest<Req>> {
        self.0.clone_request(req)
    }
}

/// Retries requests to an inner service: tower's
/// [`Retry`](tower::retry::Retry) driven by a [`RetryPolicy`], plus the
/// request's deadline.
///
/// When the policy has a [deadline](crate::Builder::deadline), `call` reads
/// the clock, writes the [`Deadline`] into the request (for request types
/// whose [`Replay`] can carry one) and bounds the whole response future by
/// it: past it, the attempt in flight is dropped and the call fails with
/// [`DeadlineExceeded`](crate::DeadlineExceeded). Without one, the service
/// adds nothing to tower's `Retry` but the policy's bookkeeping.
///
/// # Panics
///
/// Never by itself. Waits and deadlines use tokio's timer: outside a tokio
/// runtime the layer does not wait (a retry that needs a wait is not made,
/// and the deadline is enforced only between attempts), but inside a
/// runtime built without `enable_time` tokio itself panics, as it does for
/// tower's `Retry`.
///
/// # Clone
///
/// Like tower's `Retry`, it needs a `Clone` inner service (each response
/// future keeps a clone to retry on; put a `Buffer` under it otherwise).
/// Clones share the policy: its budget, random source and counts.
pub struct RetryService<S, C = ErrorsAsFailures, R = CloneRequest> {
    inner: tower::retry::Retry<TowerPolicy<C, R>, Attempts<S>>,
    policy: RetryPolicy<C, R>,
}

impl<S, C, R> RetryService<S, C, R> {
    /// Wraps `inner`, retrying by `policy`.
    pub fn new(inner: S, policy: RetryPolicy<C, R>) -> Self {
        Self {
            inner: tower::retry::Retry::new(
                TowerPolicy(policy.clone()),
                Attempts::new(inner, policy.name()),
            ),
            policy,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy<C, R> {
        &self.policy
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref().get_ref()
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        self.inner.get_mut().get_mut()
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner.into_inner().into_inner()
    }
}

impl<S: Clone, C, R> Clone for RetryService<S, C, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug, R: fmt::Debug> fmt::Debug for RetryService<S, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryService")
            .field("inner", self.get_ref())
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S, C, R, Req> Service<Req> for RetryService<S, C, R>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
    R: Replay<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<
        tower::retry::future::ResponseFuture<TowerPolicy<C, R>, Attempts<S>, AttemptRequest<Req>>,
    >;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut req: Req) -> Self::Future {
        let shared = &*self.policy.shared;
        let Some(total) = shared.deadline else {
            return ResponseFuture::plain(self.inner.call(AttemptRequest::first(req)));
        };
        let now = Instant::now();
        let mut deadline = later(now, total);
        if let Some(upstream) = shared.replay.deadline(&req) {
            deadline = deadline.min(upstream);
        }
        shared.replay.stamp(&mut req, Deadline::at(deadline), now);
        let future = self.inner.call(AttemptRequest::first(req));
        if tokio::runtime::Handle::try_current().is_err() {
            // No timer to arm: the policy still stops retrying in time.
            return ResponseFuture::plain(future);
        }
        ResponseFuture::deadline(
            future,
            tokio::time::sleep_until(deadline),
            Arc::clone(&shared.counts),
        )
    }
}
