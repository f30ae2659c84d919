//! A circuit breaker for [tower] services: stop calling a dependency that
//! is failing, give it time to recover, probe it carefully, and resume.
//!
//! ```
//! use std::time::Duration;
//! use buttress_breaker::{CircuitBreaker, CircuitBreakerLayer, CircuitOpen, State};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = CircuitBreaker::builder()
//!     .name("db")
//!     .count_window(10)
//!     .minimum_calls(4)
//!     .open_duration(Duration::from_secs(5))
//!     .build()
//!     .unwrap();
//! let db = service_fn(|q: &'static str| async move {
//!     if q == "bad" { Err("connection refused") } else { Ok(q.len()) }
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(breaker.clone()))
//!     .service(db);
//!
//! for _ in 0..4 {
//!     let _ = svc.clone().oneshot("bad").await;
//! }
//! assert_eq!(breaker.state(), State::Open);
//!
//! // Rejected at once, without touching the database.
//! let err = svc.clone().oneshot("good").await.unwrap_err();
//! let open = err.downcast_ref::<CircuitOpen>().unwrap();
//! assert!(open.retry_after().unwrap() <= Duration::from_secs(5));
//!
//! // After the open duration, probes go through and close the breaker.
//! tokio::time::advance(Duration::from_secs(5)).await;
//! for _ in 0..5 {
//!     assert_eq!(svc.clone().oneshot("good").await.unwrap(), 4);
//! }
//! assert_eq!(breaker.state(), State::Closed);
//! # }
//! ```
//!
//! # How it decides
//!
//! - **Closed**: every call passes; its outcome, judged by a classifier
//!   from `buttress-core` ([`ErrorsAsFailures`] by default, or the HTTP and
//!   gRPC classifiers), goes into a sliding window: the last N calls
//!   ([`count_window`](CircuitBreakerBuilder::count_window), the default, 100 calls) or
//!   the last T seconds in buckets ([`time_window`](CircuitBreakerBuilder::time_window)).
//!   Once the window holds [`minimum_calls`](CircuitBreakerBuilder::minimum_calls), the
//!   breaker trips when the failure rate reaches
//!   [`failure_rate_threshold`](CircuitBreakerBuilder::failure_rate_threshold), when the
//!   slow-call rate reaches its threshold (if
//!   [`slow_call_duration`](CircuitBreakerBuilder::slow_call_duration) is set), or after
//!   [`consecutive_failures`](CircuitBreakerBuilder::consecutive_failures) failures in a
//!   row (if set). Ignored outcomes (a cancelled call, a status the
//!   classifier ignores) count nowhere.
//! - **Open**: calls are rejected at once with [`CircuitOpen`], which
//!   carries the time until the next probe. The open duration grows with
//!   each consecutive trip (×2 by default, capped, jittered).
//! - **Half-open**: [`half_open_probes`](CircuitBreakerBuilder::half_open_probes) calls
//!   pass; as soon as their failures reach the failure-rate threshold the
//!   breaker re-opens, and as soon as they no longer can, it closes. A
//!   probe that is cancelled (its future dropped) gives its permit back.
//!   If every probe is out and no verdict comes within
//!   [`half_open_max_wait`](CircuitBreakerBuilder::half_open_max_wait) (60 s by
//!   default), the outstanding probes count as failed and the breaker
//!   re-opens, so a hung probe cannot hold it half-open.
//!
//! The service's `poll_ready` reserves nothing: when the breaker would
//! reject, it answers ready without polling the inner service, and `call`
//! fails; otherwise it awaits the inner service. `call` takes the decision
//! against the state at that moment (a probe permit is taken there), so
//! services polled ready and left idle hold no probe, and
//! [`force_open`](CircuitBreaker::force_open) applies to the next call.
//!
//! # Where to put it
//!
//! An outcome counts when the call completes. Against a backend that hangs,
//! put a timeout *inside* the breaker (`ServiceBuilder::new()
//! .circuit_breaker(b).timeout(d)`), so hung calls fail, count and trip the
//! breaker in bounded time; slow-call tracking likewise judges a call only
//! when it ends. Put retries *outside* it, so a retry after a rejection
//! does not hammer an open breaker (and see `CircuitOpen::retry_after`).
//!
//! # Cost, and what is lock-free
//!
//! The closed path is lock-free: a closed call is admitted with one atomic
//! load and recorded with one `fetch_add` into a per-thread stripe of the
//! window; it allocates nothing and, with the default count window and no
//! slow-call tracking, reads no clock. Per-thread stripes keep threads off
//! each other's cache lines on the success path, and its metrics cost it
//! nothing: the window's counters are its totals. A half-open probe takes
//! its permit with a compare-and-swap.
//!
//! State changes are not lock-free: a trip, the move to half-open, a close,
//! and [`force_open`](CircuitBreaker::force_open),
//! [`force_closed`](CircuitBreaker::force_closed) and
//! [`reset`](CircuitBreaker::reset) take a short per-breaker mutex, so
//! concurrent changes are serialized. Only the call that causes a change
//! (the failure that trips the breaker, the first call after the open
//! duration, the probe that decides) takes it, once per change; no other
//! call waits on it. A keyed set's lookup also takes a read lock on one
//! shard of its map (a write lock when a key is created or evicted). See
//! `docs/benchmarks.md` for figures against tower-resilience and failsafe.
//!
//! # Classification
//!
//! The layer judges each result of the inner service, a
//! `Result<S::Response, S::Error>`, with a
//! [`Classify`](buttress_core::classify::Classify) classifier set by
//! [`CircuitBreakerLayer::classifier`] (and
//! `KeyedCircuitBreakerLayer::classifier`): [`ErrorsAsFailures`] by
//! default, `buttress_core::http::HttpClassifier` or
//! `buttress_core::grpc::GrpcClassifier` with the `http` and `grpc`
//! features, or a closure returning a
//! [`Classification`](buttress_core::classify::Classification). The same
//! classifier type serves every buttress layer. Only its
//! [`Outcome`](buttress_core::classify::Outcome) matters here: success,
//! failure, or ignored (counted nowhere). Outside tower,
//! [`CircuitBreaker::try_acquire`] hands a [`Permit`] to record an outcome
//! with.
//!
//! # Telemetry
//!
//! A breaker is named with [`CircuitBreakerBuilder::name`] (default: the line that
//! called [`CircuitBreaker::builder`]); two live breakers never share a
//! name (the second `"db"` is `"db#2"`). The name labels its metrics
//! (`name`), its tracing events (field `name`) and its rejections
//! ([`CircuitOpen::name`]).
//!
//! Calls never touch the `metrics` recorder. The breaker counts in its own
//! memory, mostly in its window's per-thread counters, and publishes totals
//! and current values through [`buttress_core::telemetry`]: every second in
//! the background to the global recorder, and on
//! [`flush`](buttress_core::telemetry::flush) to the recorder in force. A
//! breaker built before the recorder is installed reports all the same.
//! Every metric is in [`METRICS`]: `buttress_breaker_calls_total{outcome}`
//! (`success`, `failure`, `ignored`, `rejected`),
//! `buttress_breaker_slow_calls_total`,
//! `buttress_breaker_transitions_total{to}` (one series per state entered),
//! the gauges `buttress_breaker_state` (0 closed, 1 open, 2 half-open, 3
//! forced open, 4 forced closed), `buttress_breaker_failure_rate` and
//! `buttress_breaker_slow_call_rate` (0 to 1, over the current window), and
//! for a keyed set `buttress_breaker_keys`, `buttress_breaker_open_keys` and
//! the opt-in per-key gauges (see `KeyedCircuitBreaker`, feature `keyed`).
//!
//! Transitions are `tracing` events (`warn` when opening, `info`
//! otherwise) with the fields `name`, `key` (a keyed set's breaker),
//! `from`, `to` and `reason`.
//!
//! # Features
//!
//! - `http`: `CircuitOpen::to_response` (503 with `Retry-After`) and the
//!   HTTP classifier.
//! - `grpc`: the gRPC classifier.
//! - `keyed`: `KeyedCircuitBreaker`, a breaker per host, route or tenant,
//!   with a cap on the keys it holds and eviction of idle keys.
//!
//! [tower]: https://docs.rs/tower
//! [`ErrorsAsFailures`]: buttress_core::classify::ErrorsAsFailures
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
pub mod future;
mod handle;
mod layer;
mod service;
mod state;
mod telemetry;
mod window;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;

#[cfg(feature = "keyed")]
mod keyed;

pub use config::{
    CircuitBreakerBuilder, MAX_COUNT_WINDOW, MAX_HALF_OPEN_PROBES, MAX_TIME_BUCKETS, WindowKind,
};
pub use error::{CircuitOpen, ConfigError};
pub use handle::{CircuitBreaker, Permit};
#[cfg(feature = "keyed")]
#[cfg_attr(docsrs, doc(cfg(feature = "keyed")))]
pub use keyed::{
    DEFAULT_IDLE_TIMEOUT, KeyedCircuitBreaker, KeyedCircuitBreakerBuilder,
    KeyedCircuitBreakerLayer, KeyedCircuitBreakerService, KeyedCircuitBreakerSnapshot,
};
pub use layer::CircuitBreakerLayer;
pub use service::CircuitBreakerService;
pub use state::{CircuitBreakerSnapshot, State, StateTransition, TransitionReason};
pub use telemetry::METRICS;
