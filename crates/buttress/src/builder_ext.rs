//! `ServiceBuilder` methods for every buttress layer.

#[cfg(any(
    feature = "breaker",
    feature = "cache",
    feature = "limit",
    feature = "retry"
))]
use tower_layer::Stack;

#[cfg(feature = "breaker")]
use buttress_breaker::CircuitBreakerLayer;
#[cfg(feature = "limit")]
use buttress_limit::{AdaptiveLimitLayer, throttle::AdaptiveThrottleLayer};

#[cfg(feature = "cache")]
use buttress_cache::CacheLayer;
#[cfg(feature = "retry")]
use buttress_retry::{HedgeLayer, RetryLayer};

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

/// Adds one method per buttress layer to [`tower::ServiceBuilder`].
///
/// Each method takes the layer itself, configured as you like (a
/// classifier, partitions, a cache policy), or anything that converts into
/// it: a breaker, limit or throttle handle, or a retry or hedge policy,
/// which then gets the layer's defaults.
///
/// ```
/// use buttress::ServiceBuilderExt;
/// use buttress::breaker::{CircuitBreaker, CircuitBreakerLayer};
/// use buttress::core::classify::{Classification, ErrorsAsFailures};
/// use tower::ServiceBuilder;
///
/// # fn main() -> Result<(), buttress::BoxError> {
/// let breaker = CircuitBreaker::builder().name("backend").build()?;
/// // The handle: `Err` counts as a failure.
/// let _plain = ServiceBuilder::new().circuit_breaker(breaker.clone());
/// // A configured layer: here, only 5xx-like answers count.
/// let _custom = ServiceBuilder::new().circuit_breaker(
///     CircuitBreakerLayer::new(breaker).classifier(|r: &Result<u16, std::io::Error>| match r {
///         Ok(code) if *code >= 500 => Classification::failure(),
///         Ok(_) => Classification::success(),
///         Err(_) => Classification::failure(),
///     }),
/// );
/// # let _ = ErrorsAsFailures::new();
/// # Ok(())
/// # }
/// ```
///
/// Sealed: implemented for `ServiceBuilder` only, so new methods can be
/// added without breaking anyone.
pub trait ServiceBuilderExt<L>: sealed::Sealed + Sized {
    /// Adds a [`CircuitBreakerLayer`]: a configured one, or a
    /// [`CircuitBreaker`](buttress_breaker::CircuitBreaker) (counting `Err` as failure).
    #[cfg(feature = "breaker")]
    #[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
    fn circuit_breaker<C>(
        self,
        layer: impl Into<CircuitBreakerLayer<C>>,
    ) -> tower::ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>>;

    /// Adds a read-through [`CacheLayer`] (built with
    /// [`CacheLayer::new`]`(cache, key_extractor)`, where the extractor is
    /// a closure `Fn(&Req) -> Option<K>` and `None` bypasses the cache).
    ///
    /// ```
    /// use buttress::ServiceBuilderExt;
    /// use buttress::cache::{Cache, CacheLayer, store::QuickCacheStore};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// let cache = Cache::builder(QuickCacheStore::builder(1 << 20).estimated_entries(1000).build()?).build()?;
    /// let svc = ServiceBuilder::new()
    ///     .cache(CacheLayer::new(cache.clone(), |id: &u32| Some(*id)))
    ///     .service(service_fn(|id: u32| async move { Ok::<_, std::io::Error>(id * 2) }));
    /// assert_eq!(svc.clone().oneshot(21).await?, 42);
    /// assert_eq!(svc.oneshot(21).await?, 42);
    /// assert_eq!(cache.snapshot().hits, 1);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "cache")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
    #[allow(clippy::type_complexity)]
    fn cache<K, V, St, X, P, N, C>(
        self,
        layer: impl Into<CacheLayer<K, V, St, X, P, N, C>>,
    ) -> tower::ServiceBuilder<Stack<CacheLayer<K, V, St, X, P, N, C>, L>>;

    /// Adds a [`RetryLayer`]: a [`RetryPolicy`](buttress_retry::RetryPolicy) (its classifier, request
    /// replay, budget and deadline come with it) or the layer itself.
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
        layer: impl Into<RetryLayer<C, R>>,
    ) -> tower::ServiceBuilder<Stack<RetryLayer<C, R>, L>>;

    /// Adds a [`HedgeLayer`]: a [`HedgePolicy`](buttress_retry::HedgePolicy) (with its classifier) or
    /// the layer itself.
    #[cfg(feature = "retry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
    fn hedge<R, C>(
        self,
        layer: impl Into<HedgeLayer<R, C>>,
    ) -> tower::ServiceBuilder<Stack<HedgeLayer<R, C>, L>>;

    /// Adds an [`AdaptiveLimitLayer`]: a configured one (a classifier,
    /// partitions), or an [`AdaptiveLimit`](buttress_limit::AdaptiveLimit) (counting `Err` as a drop).
    ///
    /// ```
    /// use buttress::ServiceBuilderExt;
    /// use buttress::limit::{AdaptiveLimit, algorithm::Knee};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// let limit = AdaptiveLimit::builder(Knee::builder().build()?).name("db").build()?;
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
    fn adaptive_limit<C, P>(
        self,
        layer: impl Into<AdaptiveLimitLayer<C, P>>,
    ) -> tower::ServiceBuilder<Stack<AdaptiveLimitLayer<C, P>, L>>;

    /// Adds a client-side [`AdaptiveThrottleLayer`]: a configured one, or an
    /// [`AdaptiveThrottle`](buttress_limit::throttle::AdaptiveThrottle) (counting `Ok` as accepted).
    #[cfg(feature = "limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
    fn adaptive_throttle<C>(
        self,
        layer: impl Into<AdaptiveThrottleLayer<C>>,
    ) -> tower::ServiceBuilder<Stack<AdaptiveThrottleLayer<C>, L>>;
}

impl<L> ServiceBuilderExt<L> for tower::ServiceBuilder<L> {
    #[cfg(feature = "breaker")]
    fn circuit_breaker<C>(
        self,
        layer: impl Into<CircuitBreakerLayer<C>>,
    ) -> tower::ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>> {
        self.layer(layer.into())
    }

    #[cfg(feature = "cache")]
    fn cache<K, V, St, X, P, N, C>(
        self,
        layer: impl Into<CacheLayer<K, V, St, X, P, N, C>>,
    ) -> tower::ServiceBuilder<Stack<CacheLayer<K, V, St, X, P, N, C>, L>> {
        self.layer(layer.into())
    }

    #[cfg(feature = "retry")]
    fn retries<C, R>(
        self,
        layer: impl Into<RetryLayer<C, R>>,
    ) -> tower::ServiceBuilder<Stack<RetryLayer<C, R>, L>> {
        self.layer(layer.into())
    }

    #[cfg(feature = "retry")]
    fn hedge<R, C>(
        self,
        layer: impl Into<HedgeLayer<R, C>>,
    ) -> tower::ServiceBuilder<Stack<HedgeLayer<R, C>, L>> {
        self.layer(layer.into())
    }

    #[cfg(feature = "limit")]
    fn adaptive_limit<C, P>(
        self,
        layer: impl Into<AdaptiveLimitLayer<C, P>>,
    ) -> tower::ServiceBuilder<Stack<AdaptiveLimitLayer<C, P>, L>> {
        self.layer(layer.into())
    }

    #[cfg(feature = "limit")]
    fn adaptive_throttle<C>(
        self,
        layer: impl Into<AdaptiveThrottleLayer<C>>,
    ) -> tower::ServiceBuilder<Stack<AdaptiveThrottleLayer<C>, L>> {
        self.layer(layer.into())
    }
}
