//! The limiter's service.

use std::fmt;
use std::task::{Context, Poll};

use buttress_core::BoxError;
use buttress_core::classify::{Classify, ErrorsAsFailures};
use buttress_core::key::KeyExtractor;
use tower_service::Service;

use crate::future::{ResponseFuture, WaitGuard};
use crate::handle::{AdaptiveLimit, NO_PARTITION};

/// The partition extractor of a layer without partitions: every call is
/// outside every partition.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPartition;

impl<Req> KeyExtractor<Req> for NoPartition {
    type Key = &'static str;

    #[inline]
    fn extract(&self, _: &Req) -> Option<&'static str> {
        None
    }
}

/// Limits the calls in flight to an inner service with an
/// [`AdaptiveLimit`].
///
/// `poll_ready` only asks the inner service: an idle connection holds no
/// permit. `call` takes a permit, or (at the limit) queues the call when a
/// queue is configured, or fails at once with [`Overloaded`](crate::Overloaded) without
/// calling the inner service. The permit is released when the response
/// future completes or is dropped; a completed call feeds its round-trip
/// time and outcome (judged by `C`) to the limiter.
///
/// As a `Service` it needs `S: Clone + Send + 'static` and
/// `Req: Send + 'static`, even without a queue: a queued call carries the
/// ready inner service (swapped for a clone, tower's `mem::replace`
/// pattern) and its request until a permit comes free.
///
/// # Clone
///
/// Clones share the limiter (one limit for all of them).
pub struct AdaptiveLimitService<S, C = ErrorsAsFailures, P = NoPartition> {
    inner: S,
    limit: AdaptiveLimit,
    classifier: C,
    partitioner: P,
}

impl<S, C, P> AdaptiveLimitService<S, C, P> {
    /// Wraps `inner`, sharing `limit`, judging results with `classifier`
    /// and putting calls in partitions with `partitioner`.
    pub fn new(inner: S, limit: AdaptiveLimit, classifier: C, partitioner: P) -> Self {
        Self {
            inner,
            limit,
            classifier,
            partitioner,
        }
    }

    /// The limiter.
    pub fn limit(&self) -> &AdaptiveLimit {
        &self.limit
    }

    buttress_core::define_inner_service_accessors!();
}

impl<S: Clone, C: Clone, P: Clone> Clone for AdaptiveLimitService<S, C, P> {
    fn clone(&self) -> Self {
        Self::new(
            self.inner.clone(),
            self.limit.clone(),
            self.classifier.clone(),
            self.partitioner.clone(),
        )
    }
}

impl<S: fmt::Debug, C: fmt::Debug, P: fmt::Debug> fmt::Debug for AdaptiveLimitService<S, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitService")
            .field("inner", &self.inner)
            .field("limit", &self.limit)
            .field("classifier", &self.classifier)
            .field("partitioner", &self.partitioner)
            .finish()
    }
}

impl<S, C, P, Req> Service<Req> for AdaptiveLimitService<S, C, P>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    Req: Send + 'static,
    C: Classify<S::Response, S::Error> + Clone,
    P: KeyExtractor<Req>,
    P::Key: AsRef<str>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let inner = self.limit.inner();
        let partition = if inner.has_partitions() {
            self.partitioner
                .extract(&req)
                .and_then(|key| inner.partition_index(key.as_ref()))
                .unwrap_or(NO_PARTITION)
        } else {
            NO_PARTITION
        };
        match self.limit.acquire_slot(partition) {
            Some(permit) => {
                ResponseFuture::called(self.inner.call(req), permit, self.classifier.clone())
            }
            // Shedding at once stays inline: no queue to consult.
            None if !inner.has_queue() => ResponseFuture::rejected(inner.reject(partition)),
            None => self.at_limit(req, partition),
        }
    }
}

impl<S, C: Clone, P> AdaptiveLimitService<S, C, P> {
    #[cold]
    fn at_limit<Req>(&mut self, req: Req, partition: usize) -> ResponseFuture<S::Future, C>
    where
        S: Service<Req> + Clone + Send + 'static,
        Req: Send + 'static,
    {
        let inner = self.limit.inner();
        let queue = match inner.max_wait() {
            Some(wait) if tokio::runtime::Handle::try_current().is_ok() => Some(wait),
            _ => None,
        };
        let Some(max_wait) = queue else {
            return ResponseFuture::rejected(inner.reject(partition));
        };
        match inner.enqueue(partition) {
            Ok(waiter) => {
                let clone = self.inner.clone();
                let mut ready = std::mem::replace(&mut self.inner, clone);
                let guard = WaitGuard {
                    waiter,
                    limit: self.limit.clone(),
                    done: false,
                };
                ResponseFuture::waiting(
                    Box::new(move || ready.call(req)),
                    guard,
                    tokio::time::sleep(max_wait),
                    self.classifier.clone(),
                )
            }
            Err(shed) => ResponseFuture::rejected(shed),
        }
    }
}
