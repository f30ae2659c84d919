//! [`HttpCacheLayer`].

use tower_layer::Layer;

use super::handle::HttpCache;
use super::service::HttpCacheService;

/// Caches the inner service's responses per RFC 9111, as its
/// [`HttpCache`] is configured.
///
/// # Clone
///
/// Every service this layer (or a clone) builds shares one
/// [`HttpCache`]: its store, configuration and counters.
#[derive(Debug)]
pub struct HttpCacheLayer<St> {
    cache: HttpCache<St>,
}

impl<St> Clone for HttpCacheLayer<St> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
        }
    }
}

impl<St> HttpCacheLayer<St> {
    /// A layer caching through `cache`.
    #[must_use]
    pub fn new(cache: HttpCache<St>) -> Self {
        Self { cache }
    }
}

impl<S, St> Layer<S> for HttpCacheLayer<St> {
    type Service = HttpCacheService<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpCacheService::new(inner, self.cache.clone())
    }
}
