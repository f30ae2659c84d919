//! The cache's layer.

use std::fmt;

use buttress_core::classify::ErrorsAsFailures;
use tower_layer::Layer;

use crate::handle::Cache;
use crate::policy::{CacheNoErrors, CacheSuccesses, Rules};
use crate::service::CacheService;

/// Puts a read-through [`Cache`] in front of a service.
///
/// The two required inputs are the cache (built around a
/// [`Store`](crate::store::Store)) and a key extractor
/// ([`KeyExtractor`](buttress_core::key::KeyExtractor), a closure
/// `Fn(&Req) -> Option<K>` works): a request without a key bypasses the
/// cache. The optional [`policy`](Self::policy) decides which responses
/// are cached and for how long ([`CacheSuccesses`] by default),
/// [`cache_errors`](Self::cache_errors) which errors are cached (none by
/// default), and [`classifier`](Self::classifier) which results are
/// successes, failures or ignored ([`ErrorsAsFailures`] by default).
///
/// ```
/// use std::sync::Arc;
/// use buttress_cache::{Cache, CacheLayer, Verdict, store::QuickCacheStore};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let cache = Cache::builder(QuickCacheStore::builder(1 << 20).build()?).build()?;
/// let users = ServiceBuilder::new()
///     .layer(
///         CacheLayer::new(cache.clone(), |id: &u64| Some(*id))
///             // Unknown users are cached for the short negative TTL.
///             .policy(|user: &Option<Arc<str>>| match user {
///                 Some(_) => Verdict::cache(),
///                 None => Verdict::negative(),
///             }),
///     )
///     .service(service_fn(|id: u64| async move {
///         Ok::<_, std::io::Error>((id == 1).then(|| Arc::from("ada")))
///     }));
///
/// assert_eq!(users.clone().oneshot(1).await?.as_deref(), Some("ada"));
/// assert_eq!(users.clone().oneshot(1).await?.as_deref(), Some("ada"));
/// assert_eq!(cache.snapshot().hits, 1);
/// # Ok(())
/// # }
/// ```
///
/// # Clone
///
/// Every service this layer (or a clone) builds shares one [`Cache`]:
/// its store, its counters and its loads in flight.
pub struct CacheLayer<K, V, St, X, P = CacheSuccesses, N = CacheNoErrors, C = ErrorsAsFailures> {
    cache: Cache<K, V, St>,
    extractor: X,
    rules: Rules<P, N, C>,
}

impl<K, V, St, X> CacheLayer<K, V, St, X> {
    /// A layer over `cache`, keyed by `extractor`, caching every success
    /// for the cache's TTL.
    #[must_use]
    pub fn new(cache: Cache<K, V, St>, extractor: X) -> Self {
        Self {
            cache,
            extractor,
            rules: Rules {
                policy: CacheSuccesses,
                errors: CacheNoErrors,
                classifier: ErrorsAsFailures::new(),
            },
        }
    }
}

impl<K, V, St, X, P, N, C> CacheLayer<K, V, St, X, P, N, C> {
    /// Decides per response whether it is cached, for how long, with which
    /// tags: a [`CachePolicy`](crate::CachePolicy), for example a closure
    /// `Fn(&Response) -> Verdict`. Default: [`CacheSuccesses`].
    #[must_use]
    pub fn policy<P2>(self, policy: P2) -> CacheLayer<K, V, St, X, P2, N, C> {
        CacheLayer {
            cache: self.cache,
            extractor: self.extractor,
            rules: Rules {
                policy,
                errors: self.rules.errors,
                classifier: self.rules.classifier,
            },
        }
    }

    /// Negative caching of chosen errors: `policy` is asked about every
    /// error the inner service's `call` returns (but those the
    /// [`classifier`](Self::classifier) ignores), and the ones it gives a
    /// TTL are cached for it (jittered like every TTL). Until the TTL
    /// ends, a request for that key is answered with the same error,
    /// without calling the backend. Default: [`CacheNoErrors`], no error
    /// is cached.
    ///
    /// `policy` is an [`ErrorPolicy`](crate::ErrorPolicy), for example a
    /// closure `Fn(&S::Error) -> Option<Duration>` (`None`: not cached):
    ///
    /// ```
    /// use std::time::Duration;
    /// use buttress_cache::{Cache, CacheLayer, store::QuickCacheStore};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// #[derive(Clone, Debug, PartialEq)]
    /// enum DbError { NotFound, Timeout }
    /// impl std::fmt::Display for DbError {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         write!(f, "{self:?}")
    ///     }
    /// }
    /// impl std::error::Error for DbError {}
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// let cache = Cache::builder(QuickCacheStore::builder(1 << 20).build()?).build()?;
    /// let users = ServiceBuilder::new()
    ///     .layer(
    ///         CacheLayer::new(cache.clone(), |id: &u64| Some(*id)).cache_errors(|e: &DbError| {
    ///             (*e == DbError::NotFound).then_some(Duration::from_secs(5))
    ///         }),
    ///     )
    ///     .service(service_fn(|_id: u64| async { Err::<u64, _>(DbError::NotFound) }));
    ///
    /// for _ in 0..2 {
    ///     let err = users.clone().oneshot(9).await.unwrap_err();
    ///     assert_eq!(err.downcast_ref::<DbError>(), Some(&DbError::NotFound));
    /// }
    /// let stats = cache.snapshot();
    /// assert_eq!((stats.loads, stats.errors_served), (1, 1)); // one backend call
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Why it works this way:
    ///
    /// - **The same error, typed.** The cache keeps a clone of the
    ///   backend's error (hence `S::Error: Clone` for a closure policy,
    ///   and only when this is used: the default asks nothing of the
    ///   error type). Every request it answers, and every caller that
    ///   waited on the failed load, gets its own copy converted into a
    ///   [`BoxError`](buttress_core::BoxError) as the original was, so
    ///   `downcast_ref::<S::Error>()` and `Display` behave as on the
    ///   backend's answer (not wrapped in a
    ///   [`CoalescedError`](crate::CoalescedError), which stays for errors
    ///   not cached). An `Arc` inside the error makes the copy cheap.
    /// - **Only `call`'s errors.** An error from `poll_ready` is about the
    ///   service (overload, an open breaker), not about the key, and is
    ///   never cached.
    /// - **Stale-if-error first.** A cached error stands for the key's
    ///   answer, so it is cached only when the load ends in that error: if
    ///   stale-if-error answers with a stale value instead, the error is
    ///   not cached and the stale value stays. When it is cached, the
    ///   key's entry (if any, not servable) is dropped.
    /// - **The same guarantees as values.** Written under the rules of a
    ///   value (not after an invalidation of the key that came while it
    ///   loaded; for a background refresh, not if the entry changed);
    ///   never served past its TTL; dropped by
    ///   [`Cache::invalidate`](crate::Cache::invalidate) of its key, by
    ///   [`invalidate_where`](crate::Cache::invalidate_where) and
    ///   [`invalidate_all`](crate::Cache::invalidate_all) (it declares no
    ///   tags, so tag invalidation leaves it); replaced by the next value
    ///   written for the key.
    /// - **Off the hit path.** Cached errors live in a table of their own
    ///   that only the miss path reads, so a hit on a value costs the same
    ///   as without this. The table holds at most 10,000 errors (a
    ///   constant); when it is full after dropping expired ones, a new
    ///   error is not cached. A served error counts as a hit and in
    ///   [`CacheSnapshot::errors_served`](crate::CacheSnapshot::errors_served).
    #[must_use]
    pub fn cache_errors<N2>(self, policy: N2) -> CacheLayer<K, V, St, X, P, N2, C> {
        CacheLayer {
            cache: self.cache,
            extractor: self.extractor,
            rules: Rules {
                policy: self.rules.policy,
                errors: policy,
                classifier: self.rules.classifier,
            },
        }
    }

    /// How the inner service's results are classified
    /// ([`Classify<S::Response, S::Error>`](buttress_core::classify::Classify),
    /// the classifier every buttress layer takes), which decides whether
    /// a load's result may be cached. Default: [`ErrorsAsFailures`]
    /// (`Ok` is a success, `Err` a failure), which caches exactly what the
    /// [`policy`](Self::policy) and [`cache_errors`](Self::cache_errors)
    /// choose.
    ///
    /// | result | classified | cached | stale-if-error |
    /// |---|---|---|---|
    /// | `Ok` | success | as the [`policy`](Self::policy) says | no |
    /// | `Ok` | failure | never (the response is returned) | yes |
    /// | `Ok` | ignored | never (the response is returned) | no |
    /// | `Err` | failure | as [`cache_errors`](Self::cache_errors) says | yes |
    /// | `Err` | success | as [`cache_errors`](Self::cache_errors) says | no |
    /// | `Err` | ignored | never | no |
    ///
    /// A failure counts in [`CacheSnapshot::load_failures`](crate::CacheSnapshot::load_failures).
    /// An error from the inner service's `poll_ready` is not classified:
    /// it is always a failure that is never cached. The classifier sees
    /// loads only: a hit never calls it.
    ///
    /// So one classifier serves the cache and the breaker: with an HTTP
    /// classifier a 503 response is not cached, and a stale entry answers
    /// in its place while stale-if-error allows:
    ///
    /// ```
    /// use std::time::Duration;
    /// use buttress_cache::{Cache, CacheLayer, store::QuickCacheStore};
    /// use buttress_core::classify::Classification;
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), tower::BoxError> {
    /// let cache = Cache::builder(QuickCacheStore::builder(1 << 20).build()?).build()?;
    /// let svc = ServiceBuilder::new()
    ///     .layer(
    ///         CacheLayer::new(cache.clone(), |id: &u64| Some(*id)).classifier(
    ///             |r: &Result<u16, std::io::Error>| match r {
    ///                 Ok(status) if *status >= 500 => Classification::failure(),
    ///                 Ok(_) => Classification::success(),
    ///                 Err(_) => Classification::failure(),
    ///             },
    ///         ),
    ///     )
    ///     .service(service_fn(|id: u64| async move {
    ///         Ok::<u16, std::io::Error>(if id == 1 { 503 } else { 200 })
    ///     }));
    ///
    /// assert_eq!(svc.clone().oneshot(1).await?, 503);
    /// assert_eq!(svc.clone().oneshot(1).await?, 503);
    /// assert_eq!(cache.snapshot().loads, 2, "a 503 is not cached");
    /// assert_eq!(cache.snapshot().load_failures, 2);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn classifier<C2>(self, classifier: C2) -> CacheLayer<K, V, St, X, P, N, C2> {
        CacheLayer {
            cache: self.cache,
            extractor: self.extractor,
            rules: Rules {
                policy: self.rules.policy,
                errors: self.rules.errors,
                classifier,
            },
        }
    }

    /// The cache.
    #[must_use]
    pub fn cache(&self) -> &Cache<K, V, St> {
        &self.cache
    }
}

impl<K, V, St, X: Clone, P: Clone, N: Clone, C: Clone> Clone for CacheLayer<K, V, St, X, P, N, C> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            extractor: self.extractor.clone(),
            rules: self.rules.clone(),
        }
    }
}

impl<K, V, St: fmt::Debug, X, P, N, C> fmt::Debug for CacheLayer<K, V, St, X, P, N, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayer")
            .field("cache", &self.cache)
            .field("extractor", &std::any::type_name::<X>())
            .field("policy", &std::any::type_name::<P>())
            .field("errors", &std::any::type_name::<N>())
            .field("classifier", &std::any::type_name::<C>())
            .finish()
    }
}

impl<S, K, V, St, X: Clone, P: Clone, N: Clone, C: Clone> Layer<S>
    for CacheLayer<K, V, St, X, P, N, C>
{
    type Service = CacheService<S, K, V, St, X, P, N, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService::from_rules(
            inner,
            self.cache.clone(),
            self.extractor.clone(),
            self.rules.clone(),
        )
    }
}
