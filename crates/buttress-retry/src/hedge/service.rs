//! [`HedgeService`].

use std::sync::Arc;
use std::task::{Context, Poll};

use buttress_core::classify::{Classify, ErrorsAsFailures};
use buttress_core::time::Instant;
use tower_service::Service;

use super::future::HedgeFuture;
use super::handle::HedgePolicy;
use crate::replay::{CloneRequest, Replay};

/// Sends hedges of slow requests to the inner service; see the
/// [module docs](super).
///
/// # Clone
///
/// Each response future keeps a clone of the inner service to send its
/// hedges on, so the inner service must be `Clone`. Clones share the policy.
#[derive(Debug)]
pub struct HedgeService<S, C = ErrorsAsFailures, R = CloneRequest> {
    inner: S,
    policy: HedgePolicy<C, R>,
}

impl<S: Clone, C, R> Clone for HedgeService<S, C, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<S, C, R> HedgeService<S, C, R> {
    /// Wraps `inner`, hedging by `policy`.
    pub fn new(inner: S, policy: HedgePolicy<C, R>) -> Self {
        Self { inner, policy }
    }

    /// The policy.
    pub fn policy(&self) -> &HedgePolicy<C, R> {
        &self.policy
    }

    buttress_core::define_inner_service_accessors!();
}

impl<S, C, R, Req> Service<Req> for HedgeService<S, C, R>
where
    S: Service<Req> + Clone,
    C: Classify<S::Response, S::Error>,
    R: Replay<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = HedgeFuture<S, Req, C, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &self.policy.shared;
        shared.budget.deposit();
        let delay = shared.current_delay();
        let copy = match delay {
            Some(_) => shared.replay.replay(&req),
            None => None,
        };
        let start = shared.measures().then(Instant::now);
        let primary = self.inner.call(req);
        let service = copy.is_some().then(|| self.inner.clone());
        HedgeFuture::new(
            primary,
            service,
            copy,
            delay,
            start,
            Arc::clone(&self.policy.shared),
        )
    }
}
