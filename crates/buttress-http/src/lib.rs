//! HTTP caching for tower services, the server side: caching headers,
//! ETags and conditional requests, for `http::Request` / `http::Response`
//! with any body (axum, hyper, tonic's HTTP layer).
//!
//! - [`CachePolicy`]: the caching fields a route gets: `Cache-Control`
//!   ([`CacheDirectives`]: max-age, s-maxage, public/private, no-store,
//!   no-cache, must-revalidate, immutable, stale-while-revalidate,
//!   stale-if-error), RFC 9213 `CDN-Cache-Control` or another named
//!   target (`Surrogate-Control`), `Vary`, and `Expires` if asked. A field
//!   the handler set is kept unless the policy says to overwrite it.
//! - `ETag`: a strong validator hashed from the body (XXH3-128) for bodies
//!   up to a cap, buffered; a weak one from `Last-Modified` and
//!   `Content-Length`, or none, for larger and streamed bodies.
//!   `Last-Modified` passes through.
//! - Conditional requests (RFC 9110 §13.2.2, in its order of precedence:
//!   `If-Match`, `If-Unmodified-Since`, `If-None-Match`,
//!   `If-Modified-Since`): `304 Not Modified` for GET and HEAD, `412
//!   Precondition Failed` for failed preconditions; before the handler
//!   runs where a [`ValidatorLookup`] knows the current validators, so a
//!   `PUT` with a stale `If-Match` never runs (optimistic concurrency).
//! - [`HttpCacheLayer`]: the client / proxy side, an RFC 9111 cache in
//!   front of any HTTP service (shared or private), storing through
//!   buttress-cache's `Store`: `Vary` variants, freshness and `Age`,
//!   revalidation with 304 freshening, stale-while-revalidate and
//!   stale-if-error, invalidation by unsafe methods, a body cap, an
//!   RFC 9213 target field.
//! - [`semantics`]: RFC 9111's storability, freshness, age and reuse
//!   rules as functions, which [`HttpCacheLayer`] applies.
//! - [`header`]: the parsers (Cache-Control, HTTP dates, entity tags),
//!   which never panic on any bytes.
//!
//! ```
//! use std::time::Duration;
//! use buttress_http::{CacheDirectives, CacheHeaders, CachePolicy};
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode, header};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let headers = CacheHeaders::builder()
//!     .name("api")
//!     .policy(CachePolicy::builder()
//!         .cache_control(CacheDirectives::new().public().max_age(Duration::from_secs(60)))
//!         .build()?)
//!     .route("/assets", CachePolicy::builder()
//!         .cache_control(CacheDirectives::new().public().max_age(Duration::from_secs(31_536_000)).immutable())
//!         .build()?)
//!     .build()?;
//! let svc = ServiceBuilder::new()
//!     .layer(headers.layer())
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
//!     }));
//!
//! let first = svc.clone().oneshot(Request::get("/greeting").body(())?).await?;
//! assert_eq!(first.headers()[header::CACHE_CONTROL], "public, max-age=60");
//! let etag = first.headers()[header::ETAG].clone();
//!
//! // The client revalidates with the tag it got: 304, no body.
//! let again = Request::get("/greeting").header(header::IF_NONE_MATCH, etag).body(())?;
//! let second = svc.oneshot(again).await?;
//! assert_eq!(second.status(), StatusCode::NOT_MODIFIED);
//! assert_eq!(headers.snapshot().not_modified, 1);
//! # Ok(())
//! # }
//! ```
//!
//! The guide, with the order of layers and what is not there yet, is
//! `docs/http-caching.md`.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod cache;
mod conditional;
mod config;
mod error;
pub mod future;
mod handle;
pub mod header;
mod layer;
mod policy;
mod respond;
pub mod semantics;
mod service;
mod telemetry;
mod validators;

pub use body::ResponseBody;
pub use cache::{
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_VARIANTS, DEFAULT_RETAIN_STALE, HTTP_CACHE_METRICS,
    HttpCache, HttpCacheBuilder, HttpCacheLayer, HttpCacheService, HttpCacheSnapshot, Variants,
};
pub use conditional::{Conditions, Precondition};
pub use config::{CacheHeadersBuilder, DEFAULT_ETAG_MAX_BYTES};
pub use error::{ConfigError, InvalidETag};
pub use handle::{CacheHeaders, CacheHeadersSnapshot};
pub use layer::CacheHeadersLayer;
pub use policy::{CacheDirectives, CachePolicy, CachePolicyBuilder};
pub use service::CacheHeadersService;
pub use telemetry::METRICS;
pub use validators::{Lookup, ValidatorLookup, Validators};

/// The snippets of `docs/http-caching.md`, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/http-caching.md")]
struct Guide;
