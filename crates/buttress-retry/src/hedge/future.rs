//! The hedging future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use buttress_core::classify::{Classify, Outcome};
use buttress_core::time::Instant;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::handle::HedgeShared;
use crate::replay::Replay;
use crate::telemetry::HedgeOutcome;

pin_project! {
    /// The future of a [`HedgeService`](crate::HedgeService) call: the
    /// first attempt, and the hedges sent while it is slow. Resolves to the
    /// first result the classifier does not call a failure (or, once every
    /// attempt has failed, to the last failure, response or error);
    /// dropping it drops every attempt.
    ///
    /// The first attempt lives inline; only hedges are boxed, so a request
    /// answered before its hedge delay allocates nothing, and no timer is
    /// created for a request answered on its first poll.
    pub struct HedgeFuture<S, Req, C, R>
    where
        S: Service<Req>,
    {
        #[pin]
        primary: S::Future,
        primary_done: bool,
        hedges: Vec<Pin<Box<S::Future>>>,
        service: Option<S>,
        request: Option<Req>,
        delay: Option<Duration>,
        #[pin]
        sleep: Option<Sleep>,
        firing: bool,
        fired: u32,
        start: Option<Instant>,
        last: Option<Result<S::Response, S::Error>>,
        shared: Arc<HedgeShared<C, R>>,
    }
}

impl<S, Req, C, R> fmt::Debug for HedgeFuture<S, Req, C, R>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeFuture")
            .field("primary_done", &self.primary_done)
            .field("hedges", &self.hedges.len())
            .field("fired", &self.fired)
            .field("delay", &self.delay)
            .finish_non_exhaustive()
    }
}

impl<S, Req, C, R> HedgeFuture<S, Req, C, R>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        primary: S::Future,
        service: Option<S>,
        request: Option<Req>,
        delay: Option<Duration>,
        start: Option<Instant>,
        shared: Arc<HedgeShared<C, R>>,
    ) -> Self {
        Self {
            primary,
            primary_done: false,
            hedges: Vec::new(),
            service,
            request,
            delay,
            sleep: None,
            firing: false,
            fired: 0,
            start,
            last: None,
            shared,
        }
    }
}

impl<S, Req, C, R> Future for HedgeFuture<S, Req, C, R>
where
    S: Service<Req>,
    R: Replay<Req>,
    C: Classify<S::Response, S::Error>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if !*this.primary_done
                && let Poll::Ready(result) = this.primary.as_mut().poll(cx)
            {
                if wins(&this.shared.classifier, &result) {
                    if let Some(start) = this.start {
                        this.shared.record(start.elapsed());
                    }
                    this.shared.finished(HedgeOutcome::PrimaryWon);
                    return Poll::Ready(result);
                }
                *this.primary_done = true;
                *this.last = Some(result);
            }
            let mut i = 0;
            while i < this.hedges.len() {
                match this.hedges[i].as_mut().poll(cx) {
                    Poll::Ready(result) if wins(&this.shared.classifier, &result) => {
                        this.shared.finished(HedgeOutcome::HedgeWon);
                        if let Some(start) = this.start {
                            this.shared.record(start.elapsed());
                        }
                        return Poll::Ready(result);
                    }
                    Poll::Ready(result) => {
                        drop(this.hedges.swap_remove(i));
                        *this.last = Some(result);
                    }
                    Poll::Pending => i += 1,
                }
            }
            if *this.primary_done
                && this.hedges.is_empty()
                && let Some(last) = this.last.take()
            {
                this.shared.finished(HedgeOutcome::AllFailed);
                return Poll::Ready(last);
            }
            // Every attempt in flight has been polled (and will wake us).
            let (Some(delay), true) = (*this.delay, this.request.is_some()) else {
                return Poll::Pending;
            };
            if !*this.firing {
                if this.sleep.is_none() {
                    if tokio::runtime::Handle::try_current().is_err() {
                        *this.request = None; // no timer, no hedging
                        return Poll::Pending;
                    }
                    // Timed from the request's start, when it was read.
                    this.sleep.set(Some(match *this.start {
                        Some(start) => tokio::time::sleep_until(start + delay),
                        None => tokio::time::sleep(delay),
                    }));
                }
                if let Some(sleep) = this.sleep.as_mut().as_pin_mut()
                    && sleep.poll(cx).is_pending()
                {
                    return Poll::Pending;
                }
                this.sleep.set(None);
                *this.firing = true;
            }
            let Some(service) = this.service.as_mut() else {
                *this.request = None;
                return Poll::Pending;
            };
            match service.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => {
                    // The service cannot take a hedge: carry on without.
                    *this.request = None;
                    *this.firing = false;
                    return Poll::Pending;
                }
                Poll::Ready(Ok(())) => {}
            }
            *this.firing = false;
            if !this.shared.budget.withdraw() {
                this.shared.exhausted();
                *this.request = None;
                return Poll::Pending;
            }
            let Some(request) = this.request.take() else {
                return Poll::Pending;
            };
            *this.fired += 1;
            if *this.fired < this.shared.max_hedges {
                *this.request = this.shared.replay.replay(&request);
            }
            this.hedges.push(Box::pin(service.call(request)));
            this.shared.fired(*this.fired);
        }
    }
}

/// Whether `result` may end the race: anything the classifier does not
/// call a failure.
#[inline]
fn wins<C: Classify<T, E>, T, E>(classifier: &C, result: &Result<T, E>) -> bool {
    classifier.classify(result).outcome() != Outcome::Failure
}
