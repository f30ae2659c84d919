//! HTTP answers for a rejected call: `503 Service Unavailable` with
//! `Retry-After`.
//!
//! With axum, put a `HandleErrorLayer` outside the breaker:
//!
//! ```
//! use axum::{Router, routing::get, error_handling::HandleErrorLayer, response::IntoResponse};
//! use buttress_breaker::{CircuitBreaker, CircuitBreakerLayer, http::error_response};
//! use http::StatusCode;
//! use tower::{BoxError, ServiceBuilder};
//!
//! async fn handle(err: BoxError) -> axum::response::Response {
//!     error_response::<axum::body::Body>(&err)
//!         .map(IntoResponse::into_response)
//!         .unwrap_or_else(|| (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response())
//! }
//!
//! let breaker = CircuitBreaker::builder().name("api").build().unwrap();
//! let app: Router = Router::new().route("/", get(|| async { "hello" })).layer(
//!     ServiceBuilder::new()
//!         .layer(HandleErrorLayer::new(handle))
//!         .layer(CircuitBreakerLayer::new(breaker)),
//! );
//! ```

use http::Response;

use crate::error::CircuitOpen;

/// The `503` response for a boxed error that is a [`CircuitOpen`], or
/// wraps one anywhere in its `source()` chain (a retry's
/// `BudgetExhausted`, a cache's coalesced error); `None` for any other
/// error (map those as your service sees fit).
#[must_use]
pub fn error_response<B: Default>(err: &buttress_core::BoxError) -> Option<Response<B>> {
    buttress_core::error::find::<CircuitOpen>(err).map(CircuitOpen::to_response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use buttress_core::telemetry::Name;
    use http::StatusCode;
    use http::header::RETRY_AFTER;
    use std::time::Duration;

    fn open(retry_after: Option<Duration>) -> CircuitOpen {
        CircuitOpen::new(Name::new("http-test"), retry_after)
    }

    #[test]
    fn open_becomes_503_with_retry_after_rounded_up() {
        let err: buttress_core::BoxError = Box::new(open(Some(Duration::from_millis(2_100))));
        let res: Response<()> = error_response(&err).unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[RETRY_AFTER], "3");
        let unknown: Response<()> = open(None).to_response();
        assert!(unknown.headers().get(RETRY_AFTER).is_none());
        let other: buttress_core::BoxError = "boom".into();
        assert!(error_response::<()>(&other).is_none());
    }

    #[test]
    fn retry_after_saturates_for_the_longest_duration() {
        // Rounding up must not overflow at the longest durations.
        let res: Response<()> = open(Some(Duration::MAX)).to_response();
        assert_eq!(res.headers()[RETRY_AFTER], u64::MAX.to_string().as_str());
        let whole: Response<()> = open(Some(Duration::from_secs(u64::MAX))).to_response();
        assert_eq!(whole.headers()[RETRY_AFTER], u64::MAX.to_string().as_str());
    }
}
