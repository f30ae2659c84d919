//! `ServiceBuilder` methods for every buttress layer.

#[cfg(any(
    feature = "breaker",
    feature = "cache",
    feature = "limit",
    feature = "retry"
))]
use tower_layer::Stack;

#[cfg(feature = "breaker")]
use buttress_breaker::{CircuitBreaker, CircuitBreakerLayer};
#[cfg(feature = "limit")]
use buttress_limit::{
    AdaptiveLimit, AdaptiveLimitLayer,
    throttle::{AdaptiveThrottle, ThrottleLayer},
};

#[cfg(feature = "cache")]
use buttress_cache::{Cache, CacheLayer};
#[cfg(feature = "retry")]
use buttress_retry::{HedgeLayer, HedgePolicy, RetryLayer, RetryPolicy};

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

/// Adds one method per buttress layer to [`tower::ServiceBuilder`].
///
/// Sealed: implemented for `ServiceBuilder` only, so new methods can be
/// added without breaking anyone.
pub trait ServiceBuilderExt<L>: sealed::Sealed + Sized {
    /// Adds a [`CircuitBreakerLayer`] around `breaker`, counting `Err` as
    /// failure. For another classifier, use
    /// `.layer(CircuitBreakerLayer::new(breaker).classifier(..))`.
    #[cfg(feature = "breaker")]
    #[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
    fn circuit_breaker(
        self,
        breaker: CircuitBreaker,
    ) -> tower::ServiceBuilder<Stack<CircuitBreakerLayer, L>>;

    /// Adds a read-through [`CacheLayer`] over `cache`, keyed by
    /// `key_extractor` (a closure `Fn(&Req) -> Option<K>`; `None` bypasses
    /// the cache), caching every success for the cache's TTL. For another
    /// policy, use `.layer(CacheLayer::new(cache, key).policy(..))`.
    ///
    /// ```
    /// use buttress::ServiceBuilderExt;
    /// use buttress::cache::{Cache, store::QuickCacheStore};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// let cache = Cache::builder(QuickCacheStore::new(1 << 20, 1000)).build()?;
    /// let svc = ServiceBuilder::new()
    ///     .cache(cache.clone(), |id: &u32| Some(*id))
    ///     .service(service_fn(|id: u32| async move { Ok::<_, std::io::Error>(id * 2) }));
    /// assert_eq!(svc.clone().oneshot(21).await?, 42);
    /// assert_eq!(svc.oneshot(21).await?, 42);
    /// assert_eq!(cache.stats().hits, 1);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "cache")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
    fn cache<K, V, St, X>(
        self,
        cache: Cache<K, V, St>,
        key_extractor: X,
    ) -> tower::ServiceBuilder<Stack<CacheLayer<K, V, St, X>, L>>;

    /// Adds a [`RetryLayer`] driven by `policy` (its classifier, request
    /// replay, budget and deadline come with it).
    ///
    /// Named `retries` because tower's `ServiceBuilder` already has an
    /// inherent `retry` (tower's own layer, which would win the call). A
    /// buttress policy passed to tower's `retry` makes a service that does
    /// not compile when called: the policy is not a `tower::retry::Policy`,
    /// so the deadline's timer cannot be left out by mistake.
    ///
    /// ```
    /// use buttress::ServiceBuilderExt;
    /// use buttress::retry::RetryPolicy;
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// let policy = RetryPolicy::builder().name("backend").build()?;
    /// let svc = ServiceBuilder::new()
    ///     .retries(policy)
    ///     .service(service_fn(|x: u64| async move { Ok::<_, std::io::Error>(x + 1) }));
    /// assert_eq!(svc.oneshot(1).await?, 2);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "retry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
    fn retries<C, R>(
        self,
        policy: RetryPolicy<C, R>,
    ) -> tower::ServiceBuilder<Stack<RetryLayer<C, R>, L>>;

    /// Adds a [`HedgeLayer`] driven by `policy`.
    #[cfg(feature = "retry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
    fn hedge<R>(self, policy: HedgePolicy<R>) -> tower::ServiceBuilder<Stack<HedgeLayer<R>, L>>;

    /// Adds an [`AdaptiveLimitLayer`] around `limit`, counting `Err` as a
    /// drop. For another classifier or partitions, use
    /// `.layer(AdaptiveLimitLayer::new(limit).classifier(..).partition_by(..))`.
    ///
    /// ```
    /// use buttress::ServiceBuilderExt;
    /// use buttress::limit::{AdaptiveLimit, algorithm::Vegas};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// let limit = AdaptiveLimit::builder(Vegas::builder().build()?).name("db").build()?;
    /// let svc = ServiceBuilder::new()
    ///     .adaptive_limit(limit.clone())
    ///     .service(service_fn(|x: u64| async move { Ok::<_, std::io::Error>(x + 1) }));
    /// assert_eq!(svc.oneshot(1).await?, 2);
    /// assert_eq!(limit.in_flight(), 0);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
    fn adaptive_limit(
        self,
        limit: AdaptiveLimit,
    ) -> tower::ServiceBuilder<Stack<AdaptiveLimitLayer, L>>;

    /// Adds a client-side [`ThrottleLayer`] around `throttle`, counting
    /// `Ok` as accepted.
    #[cfg(feature = "limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
    fn adaptive_throttle(
        self,
        throttle: AdaptiveThrottle,
    ) -> tower::ServiceBuilder<Stack<ThrottleLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for tower::ServiceBuilder<L> {
    #[cfg(feature = "breaker")]
    fn circuit_breaker(
        self,
        breaker: CircuitBreaker,
    ) -> tower::ServiceBuilder<Stack<CircuitBreakerLayer, L>> {
        self.layer(CircuitBreakerLayer::new(breaker))
    }

    #[cfg(feature = "cache")]
    fn cache<K, V, St, X>(
        self,
        cache: Cache<K, V, St>,
        key_extractor: X,
    ) -> tower::ServiceBuilder<Stack<CacheLayer<K, V, St, X>, L>> {
        self.layer(CacheLayer::new(cache, key_extractor))
    }

    #[cfg(feature = "retry")]
    fn retries<C, R>(
        self,
        policy: RetryPolicy<C, R>,
    ) -> tower::ServiceBuilder<Stack<RetryLayer<C, R>, L>> {
        self.layer(RetryLayer::new(policy))
    }

    #[cfg(feature = "retry")]
    fn hedge<R>(self, policy: HedgePolicy<R>) -> tower::ServiceBuilder<Stack<HedgeLayer<R>, L>> {
        self.layer(HedgeLayer::new(policy))
    }

    #[cfg(feature = "limit")]
    fn adaptive_limit(
        self,
        limit: AdaptiveLimit,
    ) -> tower::ServiceBuilder<Stack<AdaptiveLimitLayer, L>> {
        self.layer(AdaptiveLimitLayer::new(limit))
    }

    #[cfg(feature = "limit")]
    fn adaptive_throttle(
        self,
        throttle: AdaptiveThrottle,
    ) -> tower::ServiceBuilder<Stack<ThrottleLayer, L>> {
        self.layer(ThrottleLayer::new(throttle))
    }
}
