//! `InvalidateLayer`: drop cache entries when a write succeeds.

use std::fmt;
use std::hash::Hash;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::entry::Tag;
use crate::future::{InvalidateFuture, Pending};
use crate::handle::Cache;
use crate::store::Store;

/// The keys and tags a successful write makes stale.
///
/// ```
/// use buttress_cache::Invalidation;
///
/// let inv = Invalidation::new().key(7u64).tag("users");
/// assert!(!inv.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Invalidation<K> {
    keys: Vec<K>,
    tags: Vec<Tag>,
}

impl<K> Invalidation<K> {
    /// Nothing to drop.
    pub fn new() -> Self {
        Self {
            keys: Vec::new(),
            tags: Vec::new(),
        }
    }

    /// Drops `key`.
    pub fn key(mut self, key: K) -> Self {
        self.keys.push(key);
        self
    }

    /// Drops every entry tagged `tag`.
    pub fn tag(mut self, tag: impl Into<Tag>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Whether there is nothing to drop.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.tags.is_empty()
    }
}

/// For write paths: after the inner service answers `Ok`, drops the keys
/// and tags that `map(&request)` named (computed before the call, since
/// the request is consumed by it), and only then completes. A failed write
/// invalidates nothing.
///
/// ```
/// use buttress_cache::{Cache, CacheLayer, Invalidation, InvalidateLayer, store::QuickCacheStore};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let cache = Cache::builder(QuickCacheStore::builder(1 << 20).build()?).build()?;
/// let read = CacheLayer::new(cache.clone(), |id: &u64| Some(*id))
///     .layer(service_fn(|id: u64| async move { Ok::<_, std::io::Error>(id) }));
/// let write = InvalidateLayer::new(cache.clone(), |(id, _): &(u64, String)| {
///     Invalidation::new().key(*id)
/// })
/// .layer(service_fn(|_: (u64, String)| async { Ok::<_, std::io::Error>(()) }));
///
/// read.clone().oneshot(1).await?;
/// assert!(cache.peek(&1).is_some());
/// write.oneshot((1, "new name".into())).await?;
/// assert!(cache.peek(&1).is_none());
/// # Ok(())
/// # }
/// ```
pub struct InvalidateLayer<K, V, St, F> {
    cache: Cache<K, V, St>,
    map: F,
}

impl<K, V, St, F> InvalidateLayer<K, V, St, F> {
    /// A layer dropping what `map(&request)` names from `cache` after each
    /// successful call.
    #[must_use]
    pub fn new(cache: Cache<K, V, St>, map: F) -> Self {
        Self { cache, map }
    }
}

impl<K, V, St, F: Clone> Clone for InvalidateLayer<K, V, St, F> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            map: self.map.clone(),
        }
    }
}

impl<K, V, St: fmt::Debug, F> fmt::Debug for InvalidateLayer<K, V, St, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvalidateLayer")
            .field("cache", &self.cache)
            .field("map", &std::any::type_name::<F>())
            .finish()
    }
}

impl<S, K, V, St, F: Clone> Layer<S> for InvalidateLayer<K, V, St, F> {
    type Service = InvalidateService<S, K, V, St, F>;

    fn layer(&self, inner: S) -> Self::Service {
        InvalidateService {
            inner,
            cache: self.cache.clone(),
            map: self.map.clone(),
        }
    }
}

/// The service of an [`InvalidateLayer`]. Its errors are the inner
/// service's: it adds no failure.
pub struct InvalidateService<S, K, V, St, F> {
    inner: S,
    cache: Cache<K, V, St>,
    map: F,
}

impl<S, K, V, St, F> InvalidateService<S, K, V, St, F> {
    buttress_core::define_inner_service_accessors!();
}

impl<S: Clone, K, V, St, F: Clone> Clone for InvalidateService<S, K, V, St, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            cache: self.cache.clone(),
            map: self.map.clone(),
        }
    }
}

impl<S: fmt::Debug, K, V, St: fmt::Debug, F> fmt::Debug for InvalidateService<S, K, V, St, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvalidateService")
            .field("inner", &self.inner)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl<S, K, V, St, F, Req> Service<Req> for InvalidateService<S, K, V, St, F>
where
    S: Service<Req>,
    F: Fn(&Req) -> Invalidation<K>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    St: Store<K, V>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = InvalidateFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let todo = (self.map)(&req);
        let cache = self.cache.clone();
        let invalidate: Option<Pending> = if todo.is_empty() {
            None
        } else {
            Some(Box::pin(async move {
                for key in &todo.keys {
                    cache.invalidate(key).await;
                }
                for tag in &todo.tags {
                    cache.invalidate_tag(tag).await;
                }
            }))
        };
        InvalidateFuture::new(self.inner.call(req), invalidate)
    }
}
