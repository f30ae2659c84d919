//! Client-side adaptive throttling, from Google's *Site Reliability
//! Engineering*, chapter 21 ("Handling Overload").
//!
//! The client counts, over a sliding window (2 minutes), the `requests` its
//! application attempted and the `accepts` the backend accepted, and
//! rejects each new request locally, before it leaves the process, with
//! probability
//!
//! `p = max(0, (requests − K · accepts) / (requests + 1))`.
//!
//! While the backend accepts everything, `p = 0`. When it starts rejecting,
//! the client sheds the excess itself, so an overloaded backend is not also
//! busy saying no. `K = 2` (the book's default) lets through twice what
//! the backend accepts: enough to notice when it recovers. Locally rejected
//! requests count as requests, which is what makes `p` grow.
//!
//! A result counts as accepted when its classification is a success (or
//! ignored) that is not retryable: with the HTTP classifier, a 2xx or a 404
//! is accepted, while a 429, a 5xx or a transport error is not.
//!
//! ```
//! use buttress_limit::throttle::{AdaptiveThrottle, AdaptiveThrottleLayer, Throttled};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let throttle = AdaptiveThrottle::builder().name("search").seed(1).build()?;
//! let overloaded_backend = ServiceBuilder::new()
//!     .layer(AdaptiveThrottleLayer::new(throttle.clone()))
//!     .service(service_fn(|_: ()| async { Err::<(), _>("503 overloaded") }));
//! let mut local = 0;
//! for _ in 0..1000 {
//!     if let Err(e) = overloaded_backend.clone().oneshot(()).await
//!         && let Some(throttled) = e.downcast_ref::<Throttled>()
//!     {
//!         assert_eq!(throttled.name(), "search", "the rejection names the throttle");
//!         local += 1;
//!     }
//! }
//! // Nothing is accepted, so p = requests / (requests + 1) → almost all are shed locally.
//! assert!(local > 950, "{local}");
//! let counts = throttle.snapshot();
//! assert_eq!(counts.rejected, local);
//! assert!(counts.reject_probability > 0.99);
//! # Ok(())
//! # }
//! ```
//!
//! # Telemetry
//!
//! Labelled `name` with the throttle's [name](AdaptiveThrottleBuilder::name):
//! `buttress_throttle_calls_total` (`outcome` = `sent`, `rejected`) and the
//! gauge `buttress_throttle_reject_probability`, kept in the throttle's own
//! memory and published off the call path (see the crate's
//! [telemetry section](crate#telemetry) and [`METRICS`](crate::METRICS)).

mod config;
pub(crate) mod future;
mod handle;
mod layer;
mod service;

pub use config::{AdaptiveThrottleBuilder, MAX_BUCKETS};
pub use handle::{AdaptiveThrottle, AdaptiveThrottleSnapshot};
pub use layer::AdaptiveThrottleLayer;
pub use service::AdaptiveThrottleService;

/// The throttle's rejection, from the shared vocabulary in
/// [`buttress_core::reject`].
pub use buttress_core::reject::Throttled;
