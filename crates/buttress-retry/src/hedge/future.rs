//! The hedging future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use buttress_core::time::Instant;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::HedgeShared;
use crate::replay::Replay;

pin_project! {
    /// The future of a [`HedgeService`](super::HedgeService) call: the
    /// first attempt, and the hedges sent while it is slow. Resolves to the
    /// first success (or, once every attempt has failed, to the last
    /// error); dropping it drops every attempt.
    ///
    /// The first attempt lives inline; only hedges are boxed, so a request
    /// answered before its hedge delay allocates nothing, and no timer is
    /// created for a request answered on its first poll.
    pub struct HedgeFuture<S, Req, R>
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
        last_error: Option<S::Error>,
        shared: Arc<HedgeShared<R>>,
    }
}

impl<S, Req, R> fmt::Debug for HedgeFuture<S, Req, R>
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

impl<S, Req, R> HedgeFuture<S, Req, R>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        primary: S::Future,
        service: Option<S>,
        request: Option<Req>,
        delay: Option<Duration>,
        start: Option<Instant>,
        shared: Arc<HedgeShared<R>>,
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
            last_error: None,
            shared,
        }
    }
}

impl<S, Req, R> Future for HedgeFuture<S, Req, R>
where
    S: Service<Req>,
    R: Replay<Req>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if !*this.primary_done
                && let Poll::Ready(result) = this.primary.as_mut().poll(cx)
            {
                match result {
                    Ok(response) => {
                        if let Some(start) = this.start {
                            this.shared.record(start.elapsed());
                        }
                        return Poll::Ready(Ok(response));
                    }
                    Err(e) => {
                        *this.primary_done = true;
                        *this.last_error = Some(e);
                    }
                }
            }
            let mut i = 0;
            while i < this.hedges.len() {
                match this.hedges[i].as_mut().poll(cx) {
                    Poll::Ready(Ok(response)) => {
                        this.shared.won();
                        if let Some(start) = this.start {
                            this.shared.record(start.elapsed());
                        }
                        return Poll::Ready(Ok(response));
                    }
                    Poll::Ready(Err(e)) => {
                        drop(this.hedges.swap_remove(i));
                        *this.last_error = Some(e);
                    }
                    Poll::Pending => i += 1,
                }
            }
            if *this.primary_done
                && this.hedges.is_empty()
                && let Some(e) = this.last_error.take()
            {
                return Poll::Ready(Err(e));
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
                    this.sleep.set(Some(tokio::time::sleep(delay)));
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
            this.shared.fired();
        }
    }
}
