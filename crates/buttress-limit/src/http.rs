//! HTTP and gRPC answers for a shed call: `503 Service Unavailable` with
//! `Retry-After` (feature `http`), or a gRPC `RESOURCE_EXHAUSTED` (feature
//! `grpc`).
//!
//! With axum, put a `HandleErrorLayer` outside the limit:
//!
//! ```
//! use axum::{Router, routing::get, error_handling::HandleErrorLayer, response::IntoResponse};
//! use buttress_limit::{AdaptiveLimit, AdaptiveLimitLayer, algorithm::Vegas, http::error_response};
//! use http::StatusCode;
//! use tower::{BoxError, ServiceBuilder};
//!
//! async fn handle(err: BoxError) -> axum::response::Response {
//!     error_response::<axum::body::Body>(&err)
//!         .map(IntoResponse::into_response)
//!         .unwrap_or_else(|| (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response())
//! }
//!
//! let limit = AdaptiveLimit::builder(Vegas::builder().build().unwrap()).build().unwrap();
//! let app: Router = Router::new().route("/", get(|| async { "hello" })).layer(
//!     ServiceBuilder::new()
//!         .layer(HandleErrorLayer::new(handle))
//!         .layer(AdaptiveLimitLayer::new(limit)),
//! );
//! ```

#[cfg(feature = "grpc")]
use std::time::Duration;

use http::Response;

use crate::error::Overloaded;

/// The `503` response for a boxed error that is an [`Overloaded`], or
/// wraps one anywhere in its `source()` chain (another layer's wrapper);
/// `None` for any other error.
#[must_use]
pub fn error_response<B: Default>(err: &buttress_core::BoxError) -> Option<Response<B>> {
    buttress_core::error::find::<Overloaded>(err).map(Overloaded::to_response)
}

/// The gRPC RESOURCE_EXHAUSTED response for a boxed error that is (or
/// wraps) an [`Overloaded`], with an optional pushback; `None` for any
/// other error.
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
#[must_use]
pub fn grpc_error_response<B: Default>(
    err: &buttress_core::BoxError,
    pushback: Option<Duration>,
) -> Option<Response<B>> {
    buttress_core::error::find::<Overloaded>(err).map(|o| o.to_grpc_response(pushback))
}

#[cfg(test)]
mod tests {
    use super::*;
    use buttress_core::telemetry::Name;
    use http::StatusCode;
    use http::header::RETRY_AFTER;
    use std::time::Duration;

    fn api() -> Name {
        Name::new("api")
    }

    #[test]
    fn overloaded_becomes_503_with_retry_after_rounded_up() {
        let err: buttress_core::BoxError = Box::new(Overloaded::new(api()));
        let res: Response<()> = error_response(&err).unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.headers().get(RETRY_AFTER).is_none());
        let hinted: Response<()> =
            Overloaded::new(api()).to_response_with_retry_after(Duration::from_millis(1_200));
        assert_eq!(hinted.headers()[RETRY_AFTER], "2");
        let other: buttress_core::BoxError = "boom".into();
        assert!(error_response::<()>(&other).is_none());
    }

    /// Another layer's wrapper (here a plain one whose `source()` is the
    /// rejection) does not hide the rejection.
    #[test]
    fn a_wrapped_overloaded_is_still_a_503() {
        #[derive(Debug)]
        struct Wrapped(buttress_core::BoxError);
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "wrapped: {}", self.0)
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&*self.0)
            }
        }
        let err: buttress_core::BoxError = Box::new(Wrapped(Box::new(Overloaded::new(api()))));
        let res: Response<()> = error_response(&err).expect("found through the wrapper");
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        let found = buttress_core::error::find::<Overloaded>(&err).unwrap();
        assert_eq!(found.name(), "api", "the limiter that shed is named");
    }

    #[test]
    fn retry_after_saturates_at_the_largest_duration() {
        let header = |d: Duration| {
            let res: Response<()> = Overloaded::new(api()).to_response_with_retry_after(d);
            res.headers()[RETRY_AFTER].to_str().unwrap().to_owned()
        };
        assert_eq!(header(Duration::MAX), u64::MAX.to_string());
        assert_eq!(header(Duration::from_secs(u64::MAX)), u64::MAX.to_string());
        assert_eq!(header(Duration::new(u64::MAX - 1, 1)), u64::MAX.to_string());
        assert_eq!(header(Duration::ZERO), "0");
        assert_eq!(header(Duration::from_nanos(1)), "1");
    }

    #[cfg(feature = "grpc")]
    #[test]
    fn overloaded_becomes_resource_exhausted() {
        use buttress_core::classify::{Classify, Outcome};
        use buttress_core::grpc::GrpcClassifier;

        let err: buttress_core::BoxError = Box::new(Overloaded::new(api()));
        let res: Response<()> =
            grpc_error_response(&err, Some(Duration::from_millis(250))).unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["grpc-status"], "8");
        assert_eq!(res.headers()["grpc-retry-pushback-ms"], "250");
        // The core gRPC classifier reads it back as RESOURCE_EXHAUSTED, retryable after 250 ms.
        let verdict = GrpcClassifier::new().classify(&Ok::<_, ()>(res));
        assert_eq!(verdict.outcome(), Outcome::Failure);
        assert_eq!(verdict.retry_after(), Some(Duration::from_millis(250)));
    }
}
