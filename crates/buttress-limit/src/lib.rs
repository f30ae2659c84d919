//! Adaptive concurrency limits and load shedding for [tower] services: find
//! the concurrency a backend can take from the latency it shows, admit that
//! much, and shed the rest at once, so a service under 2× overload still
//! answers most requests fast instead of all of them slowly.
//!
//! ```
//! use std::time::Duration;
//! use buttress_limit::{AdaptiveLimit, AdaptiveLimitLayer, Overloaded, algorithm::Knee};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let limit = AdaptiveLimit::builder(Knee::builder().initial_limit(2).build()?)
//!     .name("backend")
//!     .build()?;
//! let mut svc = ServiceBuilder::new()
//!     .layer(AdaptiveLimitLayer::new(limit.clone()))
//!     .service(service_fn(|ms: u64| async move {
//!         tokio::time::sleep(Duration::from_millis(ms)).await;
//!         Ok::<_, std::io::Error>(ms)
//!     }));
//!
//! // Two calls in flight take the whole limit of 2…
//! let a = svc.ready().await?.call(10);
//! let b = svc.ready().await?.call(10);
//! assert_eq!(limit.in_flight(), 2);
//! // …so a third is shed at once, without reaching the backend.
//! let err = svc.ready().await?.call(10).await.unwrap_err();
//! assert_eq!(err.downcast_ref::<Overloaded>().unwrap().name(), "backend");
//! assert_eq!((a.await?, b.await?), (10, 10));
//! assert_eq!(limit.in_flight(), 0);
//! assert_eq!(limit.snapshot().rejected, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! - **Permits** are taken in `call`, not `poll_ready` (an idle connection
//!   holds none), and released when the response future completes or is
//!   dropped. Admission is one atomic read-modify-write on the shared
//!   in-flight count (and one on the thread's own stripe, which counts it
//!   and picks the calls to time); a
//!   rejection at the limit is two loads and a striped counter, and its
//!   error, an [`Overloaded`] naming the limiter (two words), is one small
//!   allocation when boxed.
//! - **Samples**: each completed call's round-trip time (from `call` to
//!   completion, so a queued call's wait counts) and outcome, judged by a `buttress-core` classifier
//!   ([`ErrorsAsFailures`] by default): a success feeds its RTT, a failure
//!   counts as a drop, an ignored result (a cancelled call) only releases.
//!   Calls faster than [`min_rtt`](AdaptiveLimitBuilder::min_rtt) (100 µs)
//!   are not sampled. An RTT costs two clock reads, so above about 2,000
//!   calls per second of window only one call in 2^k (counted per thread
//!   stripe, and per limiter) is timed, the least k that keeps about 1,024
//!   RTTs per second of window (at least 128 per window): the mean of a
//!   uniform subsample is the window's mean, and an admitted call then
//!   reads no clock at all.
//! - **Windows**: samples are aggregated per window into one
//!   [`Sample`](algorithm::Sample) (mean RTT, or the percentile the
//!   algorithm asks for; most calls in flight; whether any call dropped).
//!   By default a window lasts 4 times the last window's RTT (within 10 ms
//!   and 1 s) and stays open until it holds
//!   [`window_samples`](AdaptiveLimitBuilder::window_samples) calls (10), up
//!   to 1 s, so the limit moves a few times per second and follows a
//!   capacity change within seconds; a fixed
//!   [`window`](AdaptiveLimitBuilder::window) discards a window with fewer
//!   calls instead. While the algorithm pins its limit for a measurement
//!   ([`Limit::is_pinned`](algorithm::Limit::is_pinned)) every window with
//!   a call is fed.
//!   The call that closes the window feeds the [`algorithm`] under
//!   a lock taken once per window, never on the per-call path.
//! - **At the limit**: [`Overloaded`] at once (default), or a bounded
//!   [FIFO or LIFO queue](AdaptiveLimitBuilder::queue) with a maximum wait.
//! - **Partitions**: named [partitions](AdaptiveLimitBuilder::partition) with guaranteed
//!   shares that apply only while the whole limit is in use, and not while
//!   the algorithm pins the limit.
//!
//! The algorithms ([`algorithm`]) are pure: [`Knee`](algorithm::Knee) (the
//! recommended one: its defaults meet the targets of the crate's
//! simulation, see `docs/limit.md`), [`Fixed`](algorithm::Fixed),
//! [`Aimd`](algorithm::Aimd), [`Vegas`](algorithm::Vegas),
//! [`Gradient2`](algorithm::Gradient2) (all three as in Netflix
//! concurrency-limits, with its defaults) and Envoy's gradient controller
//! ([`EnvoyGradient`](algorithm::EnvoyGradient)), or your own [`Limit`](algorithm::Limit).
//!
//! [`throttle`] is a separate, client-side layer: Google SRE's adaptive
//! throttling, which rejects locally when the backend has been rejecting.
//!
//! # Where to put it
//!
//! Server side, put it outermost (before timeouts, so a shed request costs
//! nothing). Client side, put it around the client, inside retries, so a
//! retry after [`Overloaded`] is counted by the retry budget.
//!
//! # Telemetry
//!
//! Every series is labelled `name` with the limiter's
//! [name](AdaptiveLimitBuilder::name) (by default the line that built it; a second live
//! limiter of the same name gets `name#2`). A call never touches the
//! recorder: the limiter counts in its own per-thread stripes, and
//! `buttress_core::telemetry` publishes the totals and gauges to the
//! recorder in force, every second and on
//! [`flush`](buttress_core::telemetry::flush), so a limiter built before
//! the recorder was installed reports into it all the same.
//!
//! - `buttress_limit_calls_total` (`outcome` = `admitted`, `rejected`),
//!   `buttress_limit_failures_total`, `buttress_limit_changes_total`,
//!   `buttress_limit_queued_total`, `buttress_limit_queue_timeouts_total`;
//! - gauges `buttress_limit_limit`, `buttress_limit_in_flight`,
//!   `buttress_limit_queue_length`, `buttress_limit_rtt_seconds` (the last
//!   window's RTT) and `buttress_limit_min_rtt_seconds` (the algorithm's
//!   no-load RTT, [`Limit::no_load_rtt`](algorithm::Limit::no_load_rtt));
//! - per [partition](AdaptiveLimitBuilder::partition) (label `partition`):
//!   `buttress_limit_partition_in_flight`,
//!   `buttress_limit_partition_rejected_total`;
//! - the [`throttle`]'s `buttress_throttle_calls_total` (`outcome` =
//!   `sent`, `rejected`) and `buttress_throttle_reject_probability`.
//!
//! [`METRICS`] lists them with their units and meanings. Limit changes are
//! also `tracing` debug events (field `name`) and
//! [listener](AdaptiveLimitBuilder::on_limit_change) calls. The same counts
//! are one [`AdaptiveLimit::snapshot`] away in code.
//!
//! # Features
//!
//! - `http`: [`Overloaded::to_response`] (503, optionally with `Retry-After`) and the
//!   HTTP classifier.
//! - `grpc`: [`Overloaded::to_grpc_response`] (`grpc-status: 8`,
//!   RESOURCE_EXHAUSTED) and the gRPC classifier.
//!
//! [tower]: https://docs.rs/tower
//! [`ErrorsAsFailures`]: buttress_core::classify::ErrorsAsFailures
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod algorithm;
mod change;
mod config;
mod error;
pub mod future;
mod handle;
mod layer;
mod service;
mod telemetry;
pub mod throttle;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;

pub use change::LimitChange;
pub use config::{AdaptiveLimitBuilder, MAX_PARTITIONS, QueueOrder};
pub use error::{ConfigError, Overloaded};
pub use handle::{AdaptiveLimit, AdaptiveLimitSnapshot, PartitionSnapshot, Permit};
pub use layer::AdaptiveLimitLayer;
pub use service::{AdaptiveLimitService, NoPartition};
pub use telemetry::METRICS;
