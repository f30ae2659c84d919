//! The layer.

use std::fmt;

use tower_layer::Layer;

use crate::fields::NoFields;
use crate::handle::RateLimiter;
use crate::service::RateLimit;

/// Applies a per-key [`RateLimiter`] to a service: each request's key
/// comes from the extractor `X` (a
/// [`KeyExtractor`](buttress_core::key::KeyExtractor), e.g. a closure
/// `Fn(&Req) -> Option<K>`).
///
/// # Clone
///
/// Clones (and the services they make) share the limiter: one quota per
/// key across all of them.
pub struct RateLimitLayer<K, X, H = NoFields> {
    limiter: RateLimiter<K>,
    extractor: X,
    fields: H,
}

impl<K, X> RateLimitLayer<K, X> {
    /// A layer drawing on `limiter`, keyed by `extractor`.
    #[must_use]
    pub fn new(limiter: RateLimiter<K>, extractor: X) -> Self {
        Self {
            limiter,
            extractor,
            fields: NoFields,
        }
    }

    /// Adds the `RateLimit` / `RateLimit-Policy` fields (IETF httpapi
    /// draft) to every admitted `http::Response`. Default: off.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    #[must_use]
    pub fn with_headers(self) -> RateLimitLayer<K, X, crate::http::HttpFields> {
        RateLimitLayer {
            limiter: self.limiter,
            extractor: self.extractor,
            fields: crate::http::HttpFields,
        }
    }
}

impl<K, X, H> RateLimitLayer<K, X, H> {
    /// The limiter.
    #[must_use]
    pub fn limiter(&self) -> &RateLimiter<K> {
        &self.limiter
    }
}

impl<K, X: Clone, H: Clone> Clone for RateLimitLayer<K, X, H> {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
            extractor: self.extractor.clone(),
            fields: self.fields.clone(),
        }
    }
}

impl<K, X, H> fmt::Debug for RateLimitLayer<K, X, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, K, X: Clone, H: Clone> Layer<S> for RateLimitLayer<K, X, H> {
    type Service = RateLimit<S, K, X, H>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(
            inner,
            self.limiter.clone(),
            self.extractor.clone(),
            self.fields.clone(),
        )
    }
}
