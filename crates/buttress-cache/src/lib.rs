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
//! let store = QuickCacheStore::builder(64 << 20) // bytes
//!     .estimated_entries(10_000)
//!     .build()?;
//! let cache = Cache::builder(store)
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
//! let counts = cache.snapshot();
//! assert_eq!((counts.hits, counts.misses, counts.loads), (1, 1, 1));
//! assert_eq!(counts.hit_ratio(), 0.5);
//! # Ok(())
//! # }
//! ```
//!
//! # What it does
//!
//! - **Store**: entries live in a [`Store`](store::Store): by default a
//!   [`QuickCacheStore`](store::QuickCacheStore) (quick_cache 0.7), or a
//!   [`MokaStore`](store::MokaStore) (feature `moka`). Both are bounded by
//!   bytes through a weigher ([`CacheBuilder::weigher`]), which by default
//!   measures `Bytes`, `String`, `Vec<u8>`, `Arc<str>`, `Arc`s of those
//!   and `http::Response<Bytes>` (feature `http`), so a large response
//!   weighs what it holds; for types of your own, implement [`Weigh`].
//!   Each [`Entry`]
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
//!   dropped after [`CacheBuilder::load_timeout`] (30 s by default); its key is
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
//! - **Classification**: [`CacheLayer::classifier`] takes the
//!   classifier every buttress layer takes
//!   ([`Classify`](buttress_core::classify::Classify)): a result it calls
//!   a failure (an HTTP 503 response, say) is returned but never cached,
//!   and stale-if-error may answer in its place; an ignored one is never
//!   cached. The default (`Ok` succeeds, `Err` fails) caches what the
//!   policies choose.
//! - **Invalidation**: by key, by tag, by predicate on the [`Cache`]
//!   handle, and [`InvalidateLayer`] for write paths. Once an invalidation
//!   returns, the dropped value is never served: a load that started
//!   before it does not write, later requests do not join it, and a
//!   background refresh of a dropped key is cancelled.
//! - **Warming**: [`CacheService::warm`] loads a list of requests ahead of
//!   traffic with bounded concurrency.
//! - **Bad input**: a key extractor returning `None` sends the request
//!   straight to the backend (counted as `bypassed`); a response weighing
//!   more than [`CacheBuilder::max_entry_bytes`] (1 MiB by default) is
//!   returned but not cached (counted as `oversized`); a store's size or
//!   a setting that makes no sense is a [`ConfigError`] naming it.
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
//! Every cache has a name ([`CacheBuilder::name`]; by default the source line
//! of its [`Cache::builder`] call, and `name#2` while another live cache
//! has the same one). Its metrics, listed in [`METRICS`], carry it as the
//! `name` label: `buttress_cache_requests_total` (with `outcome` = `hit`,
//! `stale`, `miss`, `bypass`), the gauges `buttress_cache_entries`,
//! `buttress_cache_weighted_size` and `buttress_cache_loads_in_flight`,
//! `buttress_cache_evictions_total` (with `cause` = `size`, `expired`),
//! the load counters and the histogram `buttress_cache_load_seconds`.
//!
//! A request never touches the `metrics` recorder: the cache counts in
//! its own memory (a hit adds to a cell of its thread's own) and
//! `buttress_core::telemetry` publishes the totals, every second to the
//! global recorder and on [`flush`](buttress_core::telemetry::flush), to
//! the recorder in force then. So a cache built before the application
//! installs its recorder reports into it all the same. Only the load
//! time is recorded where it happens, once per load.
//!
//! Each load runs in a `tracing` span `buttress.cache.load` (debug level,
//! fields `name` and `refresh`); failed loads, timeouts, dropped refreshes
//! and invalidations are debug events with the field `name`; hits emit
//! nothing. [`Cache::snapshot`] gives the same counters and the hit ratio.
//!
//! [tower]: https://docs.rs/tower
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cached_errors;
mod config;
mod counters;
mod entry;
mod error;
pub mod future;
mod handle;
mod invalidate;
mod layer;
mod policy;
mod service;
pub mod store;
mod tags;
mod telemetry;
mod weigh;

pub use config::{CacheBuilder, ENTRY_OVERHEAD_BYTES};
pub use counters::CacheSnapshot;
pub use entry::{Entry, Tag};
pub use error::{CoalescedError, ConfigError, LoadTimedOut};
pub use handle::Cache;
pub use invalidate::{InvalidateLayer, InvalidateService, Invalidation};
pub use layer::CacheLayer;
pub use policy::{CacheNoErrors, CachePolicy, CacheSuccesses, ErrorPolicy, ErrorVerdict, Verdict};
pub use service::{CacheService, WarmReport};
pub use store::Evictions;
pub use telemetry::METRICS;
pub use weigh::Weigh;

/// The redis-rs crate the [`RedisStore`](store::RedisStore) is built on,
/// re-exported so that its `Client` is the version the store takes.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use store::REDIS_METRICS;
