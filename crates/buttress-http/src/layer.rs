//! [`CacheHeadersLayer`].

use tower_layer::Layer;

use crate::handle::CacheHeaders;
use crate::service::CacheHeadersService;

/// Sets caching headers, tags bodies with ETags and answers conditional
/// requests, as its [`CacheHeaders`] is configured.
///
/// # Clone
///
/// Every service this layer (or a clone) builds shares one
/// [`CacheHeaders`]: its configuration and its counters.
#[derive(Clone, Debug)]
pub struct CacheHeadersLayer {
    handle: CacheHeaders,
}

impl CacheHeadersLayer {
    /// A layer applying `handle`'s configuration.
    #[must_use]
    pub fn new(handle: CacheHeaders) -> Self {
        Self { handle }
    }
}

impl<S> Layer<S> for CacheHeadersLayer {
    type Service = CacheHeadersService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheHeadersService::new(inner, self.handle.clone())
    }
}
