//! Shared vocabulary for the [buttress] tower layers.
//!
//! Nothing in here is a middleware. It is what the middlewares agree on, so
//! that a circuit breaker, a retry layer and a cache judge the same response
//! the same way:
//!
//! - [`classify`]: is a `Result<Response, Error>` a success, a failure, or
//!   ignored, and is it worth retrying (and after how long)? Ready-made
//!   classifiers for plain `Result`s, for HTTP responses (feature `http`,
//!   reusing `tower-http`'s classifiers) and for gRPC statuses (feature
//!   `grpc`).
//! - [`key`]: how a keyed layer (a per-host breaker, a cache) extracts its
//!   key from a request.
//! - [`time`] and [`rng`]: a cheap monotonic origin driven by tokio's clock
//!   (so paused-time tests drive every layer), and a small, seedable,
//!   lock-free random number generator for jitter.
//! - [`stripe`]: per-thread stripes that keep threads sharing a layer off
//!   each other's cache lines.
//! - [`ConfigError`]: what every builder's `build()` returns for a bad
//!   setting, naming the setter; [`error::find`]: an error of a given type
//!   anywhere in a chain of wrappers (a rejection inside another layer's
//!   error).
//!
//! ```
//! use buttress_core::classify::{Classify, ErrorsAsFailures, Outcome};
//!
//! let classifier = ErrorsAsFailures::new();
//! let ok: Result<u32, &str> = Ok(1);
//! let err: Result<u32, &str> = Err("connection reset");
//! assert_eq!(classifier.classify(&ok).outcome(), Outcome::Success);
//! assert_eq!(classifier.classify(&err).outcome(), Outcome::Failure);
//! assert!(classifier.classify(&err).is_retryable());
//! ```
//!
//! [buttress]: https://docs.rs/buttress
#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod macros;

pub mod classify;
pub mod error;
pub mod histogram;
pub mod key;
pub mod reject;
pub mod rng;
pub mod stripe;
pub mod sync;
pub mod telemetry;
pub mod time;

pub use error::ConfigError;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;

#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub mod grpc;

/// Re-exports for the macros (not public API).
#[doc(hidden)]
pub mod __private {
    pub use pin_project_lite::pin_project;
}

/// The boxed error type every buttress layer that adds a failure returns,
/// the same as [`tower::BoxError`](https://docs.rs/tower/latest/tower/type.BoxError.html).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
