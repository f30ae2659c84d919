//! The client / proxy side: [`HttpCacheLayer`], an RFC 9111 HTTP cache
//! in front of any HTTP service, storing through buttress-cache's
//! [`Store`](buttress_cache::store::Store).

mod config;
pub(crate) mod future;
mod handle;
mod layer;
mod service;
mod stored;
mod telemetry;

pub use config::{
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_VARIANTS, DEFAULT_RETAIN_STALE, HttpCacheBuilder,
};
pub use handle::{HttpCache, HttpCacheSnapshot};
pub use layer::HttpCacheLayer;
pub use service::HttpCacheService;
pub use stored::Variants;
pub use telemetry::HTTP_CACHE_METRICS;
