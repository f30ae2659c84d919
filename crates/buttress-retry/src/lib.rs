//! Retries for [tower] services that make the safe thing the default:
//! backoff with jitter, a retry budget so an outage does not multiply the
//! load on a failing dependency, the server's `Retry-After` honoured,
//! a total deadline per request, requests that must not be repeated sent
//! once, and hedging for tail latency.
//!
//! Built on tower's own [`Retry`](tower::retry::Retry): [`RetryLayer`]
//! wraps tower's service, driven by the [`RetryPolicy`], with the
//! deadline. The policy is deliberately not a `tower::retry::Policy`
//! itself, so tower's `ServiceBuilder::retry(policy)`, which would leave
//! the deadline's timer out, cannot be used by mistake.
//!
//! ```
//! use std::time::Duration;
//! use buttress_retry::{BudgetExhausted, RetryLayer, RetryPolicy};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let policy = RetryPolicy::builder()
//!     .name("backend")
//!     .max_attempts(3)
//!     .base_delay(Duration::from_millis(10))
//!     .deadline(Duration::from_secs(1))
//!     .build()
//!     .unwrap();
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let counter = calls.clone();
//! let flaky = service_fn(move |_: ()| {
//!     let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//!     async move { if n == 0 { Err("connection reset") } else { Ok("hello") } }
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(RetryLayer::new(policy.clone()))
//!     .service(flaky);
//!
//! // The first attempt fails, the retry succeeds.
//! assert_eq!(svc.clone().oneshot(()).await.unwrap(), "hello");
//! assert_eq!(policy.snapshot().retries, 1);
//! # let _ = |e: tower::BoxError| e.is::<BudgetExhausted>();
//! # }
//! ```
//!
//! # What is retried
//!
//! A failed attempt is retried when all of these hold:
//!
//! 1. its result is retryable by the [classifier](RetryPolicyBuilder::classifier)
//!    from `buttress-core`, which judges the inner service's own
//!    `Result<S::Response, S::Error>` (the same classifier serves the
//!    breaker, the limit and hedging): every `Err` by default; with the HTTP
//!    classifier, 429, 502, 503, 504 and transport errors; with the gRPC
//!    classifier, `UNAVAILABLE`, and `RESOURCE_EXHAUSTED` with a pushback;
//! 2. the request could be copied: [`Replay`] decides, so requests need not
//!    be `Clone`. For HTTP, [`http::HttpReplay`] copies only idempotent
//!    methods (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) and requests with an
//!    `Idempotency-Key`: a `POST` is sent exactly once. A body wrapped in
//!    [`http::ReplayBody`] is buffered up to 64 KiB while the first attempt
//!    streams it; a larger one is sent once, whole, and not retried;
//! 3. attempts remain ([`max_attempts`](RetryPolicyBuilder::max_attempts), 3);
//! 4. the deadline, if any, leaves time for the wait and another attempt;
//! 5. the [`RetryBudget`] has a retry to give (Finagle's: 20 % of recent
//!    requests plus 10 per second; optionally one per host or tenant, see
//!    [`RetryPolicyBuilder::budget_per_key`]). When it does not, an error is wrapped in
//!    [`BudgetExhausted`]; a retryable response is returned as it is.
//!
//! The wait is the server's `Retry-After` or `grpc-retry-pushback-ms` when
//! it sent one (capped by [`max_retry_after`](RetryPolicyBuilder::max_retry_after),
//! never jittered), and the [backoff](BackoffKind) with [`Jitter`]
//! otherwise.
//!
//! # Deadlines
//!
//! With [`deadline`](RetryPolicyBuilder::deadline), a request gets a total time
//! budget: the layer never sleeps past it, never starts an attempt that
//! cannot finish in it (judged by the previous attempt's duration and
//! [`min_attempt_time`](RetryPolicyBuilder::min_attempt_time)), and fails with
//! [`DeadlineExceeded`] when it passes. HTTP requests carry the
//! [`Deadline`] as an extension (and as `grpc-timeout` with
//! [`HttpReplay::grpc`](http::HttpReplay::grpc)), so the service below
//! knows the time left.
//!
//! # Where to put it
//!
//! Outside a circuit breaker (`ServiceBuilder::new().retries(p)
//! .circuit_breaker(b)`); a per-attempt timeout goes *inside* the retry,
//! the total deadline is the retry's own. One policy (one budget) per
//! dependency.
//!
//! Whatever the classifier says, a buttress rejection
//! ([`buttress_core::reject`]: an open breaker, a shed or throttled call,
//! found anywhere in the error's `source()` chain) is never retried before
//! its `retry_after`: an open breaker's rejection is retried once its next
//! probe is due (that retry is the probe), if that wait is within
//! [`max_retry_after`](RetryPolicyBuilder::max_retry_after) and the deadline; a
//! rejection with no known wait (a forced-open breaker, `Overloaded`,
//! `Throttled`) is not retried at all.
//!
//! # Hedging
//!
//! [`HedgeLayer`] sends extra copies of a slow request after a delay
//! taken from the latency distribution (the 95th percentile by default),
//! within its own budget (5 % extra load), and returns the first success.
//!
//! # Telemetry
//!
//! Every policy has a name ([`RetryPolicyBuilder::name`]; by default the source line
//! that built it), the `name` label of its metrics. The retry counts its
//! requests by outcome (`buttress_retry_requests_total{outcome=
//! succeeded_first_try|succeeded_after_retry|failed_not_retried|failed_after_retry}`),
//! its attempts, retries, budget refusals, deadline stops and deadline
//! failures, and publishes its budget's level; hedging counts its requests
//! by which attempt answered, the hedges it sent and refused, and
//! publishes its current delay. [`METRICS`] lists them all. Counts are kept
//! in the layer (per-thread stripes, no call touches the recorder) and
//! published by `buttress_core::telemetry::flush` and its background
//! thread, to the recorder in force then: a policy built before the
//! recorder was installed reports into it. [`RetryPolicy::snapshot`] and
//! [`HedgePolicy::snapshot`] read the same counts.
//!
//! Each attempt runs in a `buttress.retry.attempt` tracing span (fields
//! `name` and `attempt`); decisions (retrying, and why not) are `debug`
//! events with the field `name`.
//!
//! # Cost
//!
//! A request that succeeds first time costs tower's `Retry` (a clone of
//! the inner service and of the policy, an `Arc`), one deposit into the
//! budget (a load and a store; a clock read every 16 deposits), one count
//! into this thread's stripe (its outcome, which also counts its first
//! attempt), one load and compare to learn that nobody traces at `debug`
//! (no span is built then), and the request copy made by [`Replay`]; no
//! allocation and no lock. A deadline adds a clock read, a
//! timer and an `Arc` clone. See `docs/benchmarks.md`.
//!
//! # Features
//!
//! - `http`: [`http::HttpReplay`], [`http::ReplayBody`], `Deadline` as a
//!   request extension, and the HTTP classifier in `buttress-core`.
//! - `grpc`: `grpc-timeout` stamping and the gRPC classifier.
//!
//! [tower]: https://docs.rs/tower
#![cfg_attr(docsrs, feature(doc_cfg))]

mod attempt;
mod backoff;
mod budget;
mod config;
mod error;
pub mod future;
mod handle;
pub mod hedge;
mod layer;
mod replay;
mod service;
mod telemetry;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;

pub use attempt::{AttemptRequest, Attempts};
pub use backoff::{BackoffKind, Jitter, Random};
pub use budget::{MAX_BUDGET_PERCENT, RetryBudget, RetryBudgetBuilder};
pub use config::{MAX_ATTEMPTS, RetryPolicyBuilder};
pub use error::{BudgetExhausted, ConfigError, DeadlineExceeded};
pub use handle::{RetryPolicy, RetryPolicySnapshot};
pub use hedge::{
    HedgeDelay, HedgeLayer, HedgePolicy, HedgePolicyBuilder, HedgePolicySnapshot, HedgeService,
    MAX_HEDGES,
};
pub use layer::RetryLayer;
pub use replay::{CloneRequest, Deadline, KeyedReplay, Replay};
pub use service::{RetryService, TowerPolicy};
pub use telemetry::METRICS;
