//! **buttress**: small, composable, framework-agnostic [tower] layers that
//! keep a backend fast and standing under load.
//!
//! This umbrella crate re-exports each layer's crate behind a feature and
//! adds [`ServiceBuilderExt`], one method per layer, for
//! `tower::ServiceBuilder`:
//!
//! ```
//! use buttress::ServiceBuilderExt;
//! use buttress::breaker::CircuitBreaker;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let breaker = CircuitBreaker::builder().name("backend").build()?;
//! let svc = ServiceBuilder::new()
//!     .circuit_breaker(breaker.clone())
//!     .service(service_fn(|x: u64| async move { Ok::<_, std::io::Error>(x + 1) }));
//! assert_eq!(svc.oneshot(1).await?, 2);
//! # Ok(())
//! # }
//! ```
//!
//! | feature | what it brings |
//! |---|---|
//! | `breaker` (default) | [`breaker`]: the circuit breaker |
//! | `retry` | [`retry`]: retries with backoff, jitter, a retry budget, deadlines and hedging |
//! | `limit` | [`limit`]: adaptive concurrency limits, load shedding, client-side throttling |
//! | `http` | HTTP classification (5xx fail, 429/503 retryable, `Retry-After`), and [`http`]: every rejection mapped to its HTTP answer, with a layer that does it |
//! | `grpc` | gRPC status classification, and [`grpc`]: every rejection mapped to its gRPC status |
//! | `keyed` | a breaker per host, route or tenant |
//! | `cache` | [`cache`]: the read-through cache (quick_cache store) |
//! | `moka` | the cache's `MokaStore` |
//! | `redis` | the cache's `RedisStore` (a shared L2 tier) |
//! | `http-cache` | [`http_cache`]: Cache-Control / CDN-Cache-Control policies, ETags, 304 / 412, and an RFC 9111 cache for clients and proxies |
//! | `ratelimit` | [`ratelimit`]: a per-key GCRA rate limit (quotas per tenant, API key, client) |
//! | `ratelimit-redis` | the rate limit's quota shared across instances through Redis |
//! | `full` | all of the above |
//!
//! [tower]: https://docs.rs/tower
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use buttress_core as core;
pub use buttress_core::BoxError;

/// Instance names and metric publication shared by every layer: see
/// [`buttress_core::telemetry`] and `docs/observability.md`. Call
/// [`telemetry::flush`] in your `/metrics` handler before rendering.
pub use buttress_core::telemetry;

/// The circuit breaker: see [`buttress_breaker`].
#[cfg(feature = "breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
pub use buttress_breaker as breaker;

/// The read-through cache: see [`buttress_cache`].
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use buttress_cache as cache;

/// Retries, retry budgets, deadlines and hedging: see [`buttress_retry`].
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub use buttress_retry as retry;

/// Adaptive concurrency limits and client-side throttling: see [`buttress_limit`].
#[cfg(feature = "limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
pub use buttress_limit as limit;

/// HTTP caching: response cache headers, conditional requests and an
/// RFC 9111 cache: see [`buttress_http`].
#[cfg(feature = "http-cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-cache")))]
pub use buttress_http as http_cache;

/// Per-key rate limits, in process or shared through Redis: see
/// [`buttress_ratelimit`].
#[cfg(feature = "ratelimit")]
#[cfg_attr(docsrs, doc(cfg(feature = "ratelimit")))]
pub use buttress_ratelimit as ratelimit;

mod builder_ext;
pub use builder_ext::ServiceBuilderExt;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;

#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub mod grpc;

/// The guides in `docs/`, compiled as doctests so that every snippet in
/// them builds (fences tagged `text`, `sh` or `ignore` are not compiled).
#[cfg(doctest)]
mod guides {
    #[cfg(feature = "breaker")]
    #[doc = include_str!("../../../docs/breaker.md")]
    struct Breaker;

    #[cfg(feature = "cache")]
    #[doc = include_str!("../../../docs/cache.md")]
    struct Cache;

    #[cfg(feature = "redis")]
    #[doc = include_str!("../../../docs/redis.md")]
    struct Redis;

    #[cfg(all(feature = "retry", feature = "http"))]
    #[doc = include_str!("../../../docs/retry.md")]
    struct Retry;

    #[cfg(feature = "limit")]
    #[doc = include_str!("../../../docs/limit.md")]
    struct Limit;

    #[doc = include_str!("../../../docs/benchmarks.md")]
    struct Benchmarks;

    #[cfg(all(
        feature = "breaker",
        feature = "cache",
        feature = "retry",
        feature = "limit",
        feature = "http"
    ))]
    #[doc = include_str!("../../../docs/ordering.md")]
    struct Ordering;

    #[cfg(all(
        feature = "breaker",
        feature = "cache",
        feature = "retry",
        feature = "limit"
    ))]
    #[doc = include_str!("../../../docs/observability.md")]
    struct Observability;
}
