//! The cache's layer.

use std::fmt;

use tower_layer::Layer;

use crate::handle::Cache;
use crate::policy::CacheSuccesses;
use crate::service::CacheService;

/// Puts a read-through [`Cache`] in front of a service.
///
/// The two required inputs are the cache (built around a
/// [`Store`](crate::store::Store)) and a key extractor
/// ([`KeyExtractor`](buttress_core::key::KeyExtractor), a closure
/// `Fn(&Req) -> Option<K>` works): a request without a key bypasses the
/// cache. The optional [`policy`](Self::policy) decides which responses
/// are cached and for how long ([`CacheSuccesses`] by default).
///
/// ```
/// use std::sync::Arc;
/// use buttress_cache::{Cache, CacheLayer, Verdict, store::QuickCacheStore};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let cache = Cache::builder(QuickCacheStore::new(1 << 20, 1000)).build()?;
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
/// assert_eq!(cache.stats().hits, 1);
/// # Ok(())
/// # }
/// ```
///
/// # Clone
///
/// Every service this layer (or a clone) builds shares one [`Cache`]:
/// its store, its counters and its loads in flight.
pub struct CacheLayer<K, V, St, X, P = CacheSuccesses> {
    cache: Cache<K, V, St>,
    extractor: X,
    policy: P,
}

impl<K, V, St, X> CacheLayer<K, V, St, X> {
    /// A layer over `cache`, keyed by `extractor`, caching every success
    /// for the cache's TTL.
    #[must_use]
    pub fn new(cache: Cache<K, V, St>, extractor: X) -> Self {
        Self {
            cache,
            extractor,
            policy: CacheSuccesses,
        }
    }
}

impl<K, V, St, X, P> CacheLayer<K, V, St, X, P> {
    /// Decides per response whether it is cached, for how long, with which
    /// tags: a [`CachePolicy`](crate::CachePolicy), for example a closure
    /// `Fn(&Response) -> Verdict`. Default: [`CacheSuccesses`].
    #[must_use]
    pub fn policy<P2>(self, policy: P2) -> CacheLayer<K, V, St, X, P2> {
        CacheLayer {
            cache: self.cache,
            extractor: self.extractor,
            policy,
        }
    }

    /// The cache.
    #[must_use]
    pub fn cache(&self) -> &Cache<K, V, St> {
        &self.cache
    }
}

impl<K, V, St, X: Clone, P: Clone> Clone for CacheLayer<K, V, St, X, P> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            extractor: self.extractor.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<K, V, St: fmt::Debug, X, P> fmt::Debug for CacheLayer<K, V, St, X, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayer")
            .field("cache", &self.cache)
            .field("extractor", &std::any::type_name::<X>())
            .field("policy", &std::any::type_name::<P>())
            .finish()
    }
}

impl<S, K, V, St, X: Clone, P: Clone> Layer<S> for CacheLayer<K, V, St, X, P> {
    type Service = CacheService<S, K, V, St, X, P>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService::new(
            inner,
            self.cache.clone(),
            self.extractor.clone(),
            self.policy.clone(),
        )
    }
}
