//! A read-through cache for [tower] services: put it in front of a
//! database call, an HTTP client or a gRPC client, and repeated requests
//! are answered from memory, with the stampede and staleness controls
//! production caches need.
//!
//! ```
//! use std::time::Duration;
//! use buttress_cache::{Cache, CacheLayer, store::QuickCacheStore};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let cache = Cache::builder(QuickCacheStore::new(64 << 20, 10_000))
//!     .name("prices")
//!     .ttl(Duration::from_secs(30))
//!     .stale_while_revalidate(Duration::from_secs(10))
//!     .stale_if_error(Duration::from_secs(600))
//!     .build()?;
//! let prices = ServiceBuilder::new()
//!     .layer(CacheLayer::new(cache.clone(), |sku: &u32| Some(*sku)))
//!     .service(service_fn(|sku: u32| async move {
//!         Ok::<_, std::io::Error>(u64::from(sku) * 100)
//!     }));
//!
//! assert_eq!(prices.clone().oneshot(7).await?, 700); // miss: backend
//! assert_eq!(prices.clone().oneshot(7).await?, 700); // hit
//! let stats = cache.stats();
//! assert_eq!((stats.hits, stats.misses, stats.loads), (1, 1, 1));
//! assert_eq!(stats.hit_ratio(), 0.5);
//! # Ok(())
//! # }
//! ```
//!
//! # What it does
//!
//! - **Store**: entries live in a [`Store`](store::Store): by default a
//!   [`QuickCacheStore`](store::QuickCacheStore) (quick_cache 0.7), or a
//!   [`MokaStore`](store::MokaStore) (feature `moka`). Both are bounded by
//!   bytes through a weigher ([`Builder::weigher`]). Each [`Entry`]
//!   carries its own fresh-until, revalidate-until and stale-until
//!   instants (tokio's clock, so paused-time tests drive them) and its
//!   measured load time. `docs/cache.md` explains why quick_cache is the
//!   default, with figures.
//! - **Hits** are answered in `call`, without polling the inner service
//!   (see [`CacheService`]'s *Readiness*) and without boxing; on
//!   `QuickCacheStore` a hit allocates nothing (moka's read path allocates
//!   now and then). The value is cloned, so make responses cheap to clone
//!   (`Arc<T>`, `Bytes`). A hit reads tokio's clock once to judge
//!   freshness.
//! - **Coalescing**: concurrent misses on one key make one backend call;
//!   every waiter gets its result. An error goes to every waiter (as a
//!   [`CoalescedError`] when several waited) and is not cached, unless
//!   the layer's error policy chose it. If the
//!   leading caller's future is dropped, a waiter takes over with its own
//!   request.
//! - **Bounded loads**: every load, background refreshes included, is
//!   dropped after [`Builder::load_timeout`] (30 s by default); its key is
//!   freed for the next request and its callers get [`LoadTimedOut`] (or
//!   a stale value under stale-if-error). No caller waits longer than the
//!   bound for a load, and an invalidation cancels a refresh of the keys
//!   it drops.
//! - **Freshness**: TTL with jitter (±10 % by default), a policy per
//!   response ([`CachePolicy`], [`Verdict`]), stale-while-revalidate
//!   (one background refresh, Caffeine's refresh-after-write: a refresh
//!   result is dropped if the entry changed meanwhile), stale-if-error (a
//!   failed load, including an open breaker inside, is answered with the
//!   stale value up to its bound) and XFetch probabilistic early refresh.
//! - **Negative caching**: [`Verdict::negative`] caches a "not found"
//!   response for its own short TTL, and
//!   [`CacheLayer::cache_errors`] caches chosen errors (a typed clone,
//!   served as the backend's own error) for theirs.
//! - **Invalidation**: by key, by tag, by predicate on the [`Cache`]
//!   handle, and [`InvalidateLayer`] for write paths. Once an invalidation
//!   returns, the dropped value is never served: a load that started
//!   before it does not write, later requests do not join it, and a
//!   background refresh of a dropped key is cancelled.
//! - **Warming**: [`CacheService::warm`] loads a list of requests ahead of
//!   traffic with bounded concurrency.
//! - **Bad input**: a key extractor returning `None` sends the request
//!   straight to the backend (counted as `bypassed`); a response weighing
//!   more than [`Builder::max_entry_bytes`] is returned but not cached
//!   (counted as `oversized`).
//!
//! # Background work needs a runtime
//!
//! Refreshes (stale-while-revalidate, XFetch) are spawned on the current
//! tokio runtime, and the load timeout runs on its timer. Outside one, a
//! stale read becomes a synchronous load, no early refresh happens, and
//! loads are not bounded. [`MokaStore`](store::MokaStore) spawns its
//! maintenance task only when built inside a runtime.
//!
//! # Telemetry
//!
//! Through the [`metrics`] facade, labelled `cache = name`:
//! `buttress_cache_requests_total` (with `result` = `hit`, `stale`,
//! `miss`, `bypass`), `buttress_cache_coalesced_waiters_total`,
//! `buttress_cache_refreshes_total`, `buttress_cache_load_failures_total`,
//! `buttress_cache_stale_if_error_total`, `buttress_cache_oversized_total`,
//! `buttress_cache_invalidations_total`, the histogram
//! `buttress_cache_load_seconds`; stores add
//! `buttress_cache_evictions_total` (labelled `store`, `cause` = `size`,
//! `expired`). Handles are registered when the cache is built: install the
//! recorder first. Failed loads, dropped refreshes and invalidations are
//! `tracing` debug events; hits emit nothing. [`Cache::stats`] gives the
//! same counters and the hit ratio.
//!
//! [tower]: https://docs.rs/tower
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cached_errors;
mod config;
mod entry;
mod error;
pub mod future;
mod handle;
mod invalidate;
mod layer;
mod policy;
mod service;
mod stats;
pub mod store;
mod tags;

pub use config::{Builder, ENTRY_OVERHEAD_BYTES};
pub use entry::{Entry, Tag};
pub use error::{CoalescedError, ConfigError, LoadTimedOut};
pub use handle::Cache;
pub use invalidate::{InvalidateFuture, InvalidateLayer, InvalidateService, Invalidation};
pub use layer::CacheLayer;
pub use policy::{CacheNoErrors, CachePolicy, CacheSuccesses, ErrorPolicy, ErrorVerdict, Verdict};
pub use service::{CacheService, WarmReport};
pub use stats::Stats;
pub use store::Evictions;
