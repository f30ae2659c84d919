//! The cache's service.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};

use buttress_core::BoxError;
use buttress_core::classify::{Classify, ErrorsAsFailures};
use buttress_core::key::KeyExtractor;
use buttress_core::time::Instant;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::handle::{Cache, Found};
use crate::policy::{CacheNoErrors, CachePolicy, CacheSuccesses, ErrorPolicy, Rules};
use crate::store::Store;

/// A read-through cache in front of `S`; built by
/// [`CacheLayer`](crate::CacheLayer).
///
/// # Readiness
///
/// `poll_ready` is always ready and never polls the inner service: a hit
/// must not wait for (or reserve) capacity it does not use, which is what
/// goes wrong when a cache in front of a rate limit or a pool polls the
/// inner service first. A miss, a bypass and a background refresh each
/// clone the inner service (hence `S: Clone`, as for tower's `Buffer` or
/// `Steer` users) and await the clone's readiness inside their own
/// future, so back-pressure still reaches callers that miss.
///
/// # Clone
///
/// Clones share the [`Cache`]; each holds its own clone of the inner
/// service.
pub struct CacheService<S, K, V, St, X, P = CacheSuccesses, N = CacheNoErrors, C = ErrorsAsFailures>
{
    inner: S,
    cache: Cache<K, V, St>,
    extractor: X,
    rules: Rules<P, N, C>,
}

impl<S, K, V, St, X, P> CacheService<S, K, V, St, X, P> {
    /// Wraps `inner` with `cache`, keyed by `extractor`, judged by `policy`;
    /// no error is cached (see
    /// [`CacheLayer::cache_errors`](crate::CacheLayer::cache_errors)).
    pub fn new(inner: S, cache: Cache<K, V, St>, extractor: X, policy: P) -> Self {
        Self::with_error_policy(inner, cache, extractor, policy, CacheNoErrors)
    }
}

impl<S, K, V, St, X, P, N> CacheService<S, K, V, St, X, P, N> {
    /// Wraps `inner` with `cache`, keyed by `extractor`, judged by `policy`
    /// for responses and by `errors` for errors (see
    /// [`CacheLayer::cache_errors`](crate::CacheLayer::cache_errors)),
    /// with results classified by [`ErrorsAsFailures`] (for another
    /// classifier, build the service with
    /// [`CacheLayer::classifier`](crate::CacheLayer::classifier)).
    pub fn with_error_policy(
        inner: S,
        cache: Cache<K, V, St>,
        extractor: X,
        policy: P,
        errors: N,
    ) -> Self {
        Self::from_rules(
            inner,
            cache,
            extractor,
            Rules {
                policy,
                errors,
                classifier: ErrorsAsFailures::new(),
            },
        )
    }
}

impl<S, K, V, St, X, P, N, C> CacheService<S, K, V, St, X, P, N, C> {
    pub(crate) fn from_rules(
        inner: S,
        cache: Cache<K, V, St>,
        extractor: X,
        rules: Rules<P, N, C>,
    ) -> Self {
        Self {
            inner,
            cache,
            extractor,
            rules,
        }
    }

    /// The cache.
    pub fn cache(&self) -> &Cache<K, V, St> {
        &self.cache
    }

    buttress_core::define_inner_service_accessors!();
}

impl<S: Clone, K, V, St, X: Clone, P: Clone, N: Clone, C: Clone> Clone
    for CacheService<S, K, V, St, X, P, N, C>
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            cache: self.cache.clone(),
            extractor: self.extractor.clone(),
            rules: self.rules.clone(),
        }
    }
}

impl<S: fmt::Debug, K, V, St: fmt::Debug, X, P, N, C> fmt::Debug
    for CacheService<S, K, V, St, X, P, N, C>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheService")
            .field("inner", &self.inner)
            .field("cache", &self.cache)
            .field("extractor", &std::any::type_name::<X>())
            .field("policy", &std::any::type_name::<P>())
            .field("errors", &std::any::type_name::<N>())
            .field("classifier", &std::any::type_name::<C>())
            .finish()
    }
}

impl<S, K, V, St, X, P, N, C, Req> Service<Req> for CacheService<S, K, V, St, X, P, N, C>
where
    S: Service<Req, Response = V> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    V: Clone + Send + Sync + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    St: Store<K, V>,
    X: KeyExtractor<Req, Key = K>,
    P: CachePolicy<V> + Clone + Send + Sync + 'static,
    N: ErrorPolicy<S::Error> + Clone + Send + Sync + 'static,
    C: Classify<V, S::Error> + Clone + Send + Sync + 'static,
    Req: Send + 'static,
{
    type Response = V;
    type Error = BoxError;
    type Future = ResponseFuture<V>;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // See "Readiness": the inner service is readied on a miss only.
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &self.cache.shared;
        let Some(key) = self.extractor.extract(&req) else {
            shared.count_bypass();
            let mut svc = self.inner.clone();
            return ResponseFuture::load(Box::pin(async move {
                std::future::poll_fn(|cx| svc.poll_ready(cx))
                    .await
                    .map_err(Into::into)?;
                svc.call(req).await.map_err(Into::into)
            }));
        };
        let (req, stale, looked_up) = match shared.store.try_get(&key) {
            Some(Some(entry)) => {
                let at = Instant::now();
                // The common hit, inline: fresh, and too far from expiry
                // for an XFetch draw (one comparison of instants).
                if entry.settled_at(at) {
                    shared.count_hit();
                    return ResponseFuture::ready(entry.into_value());
                }
                match shared.judge(entry, at, &key, req, &self.inner, &self.rules) {
                    Found::Served(value) => return ResponseFuture::ready(value),
                    Found::Load(req, stale) => (req, stale, true),
                }
            }
            Some(None) => (req, None, true),
            None => (req, None, false),
        };
        ResponseFuture::load(Box::pin(Arc::clone(shared).read_through(
            key,
            req,
            self.inner.clone(),
            self.rules.clone(),
            stale,
            looked_up,
        )))
    }
}

/// What [`CacheService::warm`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WarmReport {
    /// Requests answered (from the backend, or already cached).
    pub loaded: u64,
    /// Requests whose load failed.
    pub failed: u64,
}

impl<S, K, V, St, X, P, N, C> CacheService<S, K, V, St, X, P, N, C> {
    /// Loads `requests` through the cache ahead of traffic, at most
    /// `concurrency` at a time (at least one): each is an ordinary request
    /// (a hit if already cached, a coalesced load otherwise).
    pub async fn warm<Req, I>(&self, requests: I, concurrency: usize) -> WarmReport
    where
        Self: Service<Req, Error = BoxError> + Clone,
        I: IntoIterator<Item = Req>,
    {
        let concurrency = concurrency.max(1);
        let mut report = WarmReport::default();
        let mut running = FuturesUnordered::new();
        let mut record = |result: Result<_, BoxError>| match result {
            Ok(_) => report.loaded += 1,
            Err(_) => report.failed += 1,
        };
        for req in requests {
            if running.len() >= concurrency
                && let Some(result) = running.next().await
            {
                record(result);
            }
            let mut svc = self.clone();
            running.push(async move {
                std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
                svc.call(req).await
            });
        }
        while let Some(result) = running.next().await {
            record(result);
        }
        report
    }
}
