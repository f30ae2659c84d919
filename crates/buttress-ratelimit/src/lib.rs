//! A per-key rate limit for [tower] services: GCRA (a rate and a burst,
//! one stored time per key, no background refill), exact in one process
//! over a bounded map, and shared across instances through Redis (feature
//! `redis`) without making Redis a way for the service to fail.
//!
//! ```
//! use std::time::Duration;
//! use buttress_ratelimit::{Quota, RateLimitLayer, RateLimited, RateLimiter};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // Two requests per second per tenant, at most two back to back.
//! let limiter = RateLimiter::builder(Quota::per_second(2).unwrap())
//!     .name("api")
//!     .build()
//!     .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(limiter, |req: &(&'static str, u32)| Some(req.0)))
//!     .service(service_fn(|req: (&'static str, u32)| async move { Ok::<_, std::io::Error>(req.1) }));
//!
//! assert_eq!(svc.clone().oneshot(("acme", 1)).await.unwrap(), 1);
//! assert_eq!(svc.clone().oneshot(("acme", 2)).await.unwrap(), 2);
//! let err = svc.clone().oneshot(("acme", 3)).await.unwrap_err();
//! assert_eq!(err.downcast_ref::<RateLimited>().unwrap().retry_after(), Duration::from_millis(500));
//! // Another tenant has its own quota.
//! assert_eq!(svc.clone().oneshot(("globex", 4)).await.unwrap(), 4);
//! tokio::time::advance(Duration::from_millis(500)).await;
//! assert_eq!(svc.clone().oneshot(("acme", 5)).await.unwrap(), 5);
//! # }
//! ```
//!
//! See the guide (`docs/ratelimit.md`) for plans, the Redis tier and its
//! fallback.
//!
//! [tower]: https://docs.rs/tower
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod decision;
mod error;
mod fields;
mod handle;
mod layer;
mod local;
mod quota;
#[cfg(feature = "redis")]
mod redis;
mod service;
mod telemetry;

pub mod future;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;

pub use config::{Fallback, OnMissingKey, RateLimitBuilder};
pub use decision::Decision;
pub use error::{MissingKey, RateLimited};
pub use fields::{Fields, NoFields};
pub use handle::{RateLimiter, RateLimiterSnapshot};
pub use layer::RateLimitLayer;
pub use quota::Quota;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::REDIS_SCRIPT;
pub use service::RateLimit;
pub use telemetry::METRICS;

/// The snippets of `docs/ratelimit.md`, compiled and run as doc tests
/// (they use the `http` and `redis` features).
#[cfg(all(doctest, feature = "http", feature = "redis"))]
#[doc = include_str!("../../../docs/ratelimit.md")]
struct Guide;
