//! [`RetryService`] and the [`TowerPolicy`] it drives tower's `Retry` with.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use buttress_core::BoxError;
use buttress_core::classify::{Classify, ErrorsAsFailures};
use buttress_core::time::Instant;
use tower_service::Service;

use crate::attempt::{AttemptRequest, Attempts};
use crate::future::{Backoff, DeadlineTimer, ResponseFuture};
use crate::handle::{AttemptResult, RetryPolicy, Shared};
use crate::replay::{CloneRequest, Deadline, Replay, later};

/// The [`tower::retry::Policy`] a [`RetryService`](crate::RetryService)
/// drives tower's [`Retry`](tower::retry::Retry) with: its
/// [`RetryPolicy`], wrapped by the service itself and by nothing else, so
/// that the deadline's timer always comes with it (see
/// [`RetryPolicy`]'s docs). It appears only in the service's future type.
pub struct TowerPolicy<C, R>(pub(crate) RetryPolicy<C, R>);

/// tower's `Retry` clones its policy only to start a response future (a
/// [`RetryService`](crate::RetryService) builds its clones afresh), so a
/// clone is one request's policy: open until its last result is counted
/// in an outcome, and counted as unfinished if dropped before.
impl<C, R> Clone for TowerPolicy<C, R> {
    #[inline]
    fn clone(&self) -> Self {
        let mut policy = self.0.clone();
        policy.open();
        Self(policy)
    }
}

impl<C, R> Drop for TowerPolicy<C, R> {
    #[inline]
    fn drop(&mut self) {
        self.0.close();
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

    // Out of line, so that tower's `call` stays small enough to be inlined
    // into the caller, which then builds the response future in place
    // instead of copying it.
    #[inline(never)]
    fn clone_request(&mut self, req: &AttemptRequest<Req>) -> Option<AttemptRequest<Req>> {
        self.0.clone_request(req)
    }
}

/// Retries requests to an inner service: tower's
/// [`Retry`](tower::retry::Retry) driven by a [`RetryPolicy`], plus the
/// request's deadline.
///
/// When the policy has a [deadline](crate::RetryPolicyBuilder::deadline), `call` reads
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

    // The inner service lives inside tower's `Retry` (inside `Attempts`),
    // so the shared accessor macro, which reads a field `inner: S`, does
    // not apply.

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref().get_ref()
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        self.inner.get_mut().get_mut()
    }

    /// Consumes the service, returning the inner one.
    pub fn into_inner(self) -> S {
        self.inner.into_inner().into_inner()
    }
}

impl<S: Clone, C, R> Clone for RetryService<S, C, R> {
    fn clone(&self) -> Self {
        // Not tower's `Retry::clone`, which starts a request's policy.
        Self {
            inner: tower::retry::Retry::new(
                TowerPolicy(self.policy.clone()),
                self.inner.get_ref().clone(),
            ),
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
            return ResponseFuture::new(self.inner.call(AttemptRequest::first(req)), None);
        };
        let (timer, start) = stamp(shared, &mut req, total);
        // tower's `Retry::call` starts the policy's session before it
        // returns; the session counts its deadline from this clock read.
        let _start = Start::set(start);
        ResponseFuture::new(self.inner.call(AttemptRequest::first(req)), Some(timer))
    }
}

thread_local! {
    static START: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The instant a [`RetryService`] call read the clock for its deadline,
/// handed to the policy's session that tower starts within the same
/// `call` (so a request with a deadline reads the clock once). Set for
/// exactly that `call`: the guard clears it when `call` returns or
/// unwinds, and the session takes it, so no other request ever sees it.
pub(crate) struct Start;

impl Start {
    fn set(now: Instant) -> Self {
        START.with(|start| start.set(Some(now)));
        Self
    }

    /// The instant of the `call` in progress on this thread, if it read
    /// one; taken, so a nested retry's session cannot see it.
    pub(crate) fn take() -> Option<Instant> {
        START.with(Cell::take)
    }
}

impl Drop for Start {
    fn drop(&mut self) {
        START.with(|start| start.set(None));
    }
}

/// Writes the request's deadline, `total` from now or the one it carries
/// if that is sooner, into `req`; returns the deadline's timer (armed only
/// if the call is ever pending) and the one clock read the request's
/// deadline is counted from. Out of line, so that a call without a
/// deadline stays small enough to inline into its caller.
#[inline(never)]
fn stamp<Req, C, R: Replay<Req>>(
    shared: &Shared<C, R>,
    req: &mut Req,
    total: Duration,
) -> (DeadlineTimer, Instant) {
    let now = Instant::now();
    let mut deadline = later(now, total);
    if let Some(upstream) = shared.replay.deadline(req) {
        deadline = deadline.min(upstream);
    }
    shared.replay.stamp(req, Deadline::at(deadline), now);
    (
        DeadlineTimer::new(deadline, Arc::clone(&shared.counts)),
        now,
    )
}
