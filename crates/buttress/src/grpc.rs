//! One mapping from buttress rejections to gRPC statuses.
//!
//! | rejection (found anywhere in the error's `source()` chain) | status | `grpc-retry-pushback-ms` |
//! |---|---|---|
//! | `CircuitOpen` | `UNAVAILABLE` | the time to the next probe, when known |
//! | `Overloaded` | `RESOURCE_EXHAUSTED` | none (gRFC A6: the client does not retry it) |
//! | `Throttled` | `UNAVAILABLE` | none |
//! | `DeadlineExceeded` | `DEADLINE_EXCEEDED` | none |
//! | `RateLimited` | `RESOURCE_EXHAUSTED` | the wait until the key's next allowed request (so a gRFC A6 client retries it then) |
//!
//! The codes are gRPC's, numbered as tonic's `Code`:
//! `tonic::Status::new(tonic::Code::from(status.code() as i32), status.message())`.
//!
//! ```
//! use std::time::Duration;
//! use buttress::BoxError;
//! use buttress::core::grpc::GrpcCode;
//! use buttress::core::reject::CircuitOpen;
//! use buttress::core::telemetry::Name;
//!
//! let err: BoxError = Box::new(CircuitOpen::new(Name::new("b"), Some(Duration::from_millis(1_500))));
//! let status = buttress::grpc::status(&err).unwrap();
//! assert_eq!(status.code(), GrpcCode::Unavailable);
//! assert_eq!(status.pushback(), Some(Duration::from_millis(1_500)));
//! let res: http::Response<()> = status.to_response();
//! assert_eq!(res.headers()["grpc-status"], "14");
//! assert_eq!(res.headers()["grpc-retry-pushback-ms"], "1500");
//! ```

use std::time::Duration;

use buttress_core::BoxError;
use buttress_core::grpc::{GrpcCode, trailers_only};
use buttress_core::reject::{RejectionKind, rejection};
use http::Response;

/// The gRPC status for a rejection: see [`status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcStatus {
    code: GrpcCode,
    pushback: Option<Duration>,
    message: &'static str,
}

impl GrpcStatus {
    /// The status code.
    #[must_use]
    pub const fn code(&self) -> GrpcCode {
        self.code
    }

    /// The wait to send as `grpc-retry-pushback-ms`, when one is known.
    #[must_use]
    pub const fn pushback(&self) -> Option<Duration> {
        self.pushback
    }

    /// A short message naming the rejection.
    #[must_use]
    pub const fn message(&self) -> &'static str {
        self.message
    }

    /// A gRPC "trailers-only" response: HTTP 200, `content-type:
    /// application/grpc`, `grpc-status`, `grpc-message` and, when a wait
    /// is known, `grpc-retry-pushback-ms` (rounded up to whole
    /// milliseconds). Needs no tonic.
    #[must_use]
    pub fn to_response<B: Default>(&self) -> Response<B> {
        trailers_only(self.code, self.message, self.pushback)
    }
}

/// The gRPC status for a buttress rejection anywhere in `err`'s chain
/// (see the [module docs](self)); `None` for any other error.
#[must_use]
pub fn status(err: &BoxError) -> Option<GrpcStatus> {
    let rejected = rejection(err)?;
    let (code, message) = match rejected.kind() {
        RejectionKind::CircuitOpen => (GrpcCode::Unavailable, "circuit breaker open"),
        RejectionKind::Overloaded => (GrpcCode::ResourceExhausted, "overloaded"),
        RejectionKind::DeadlineExceeded => (GrpcCode::DeadlineExceeded, "deadline exceeded"),
        RejectionKind::RateLimited => (GrpcCode::ResourceExhausted, "rate limited"),
        _ => (GrpcCode::Unavailable, "throttled"),
    };
    Some(GrpcStatus {
        code,
        pushback: rejected.retry_after(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use buttress_core::classify::{Classify, Outcome};
    use buttress_core::grpc::GrpcClassifier;
    use buttress_core::reject::{
        CircuitOpen, DeadlineExceeded, Overloaded, RateLimited, Throttled,
    };
    use buttress_core::telemetry::Name;

    use super::*;

    #[test]
    fn each_rejection_has_its_status_and_a_client_reads_it_back() {
        let cases: [(BoxError, GrpcCode, bool); 6] = [
            (
                Box::new(CircuitOpen::new(
                    Name::new("b"),
                    Some(Duration::from_micros(2_500)),
                )),
                GrpcCode::Unavailable,
                true,
            ),
            (
                Box::new(CircuitOpen::new(Name::new("b"), None)),
                GrpcCode::Unavailable,
                true,
            ),
            (
                Box::new(Overloaded::new(Name::new("l"))),
                GrpcCode::ResourceExhausted,
                false,
            ),
            (
                Box::new(Throttled::new(Name::new("t"))),
                GrpcCode::Unavailable,
                true,
            ),
            (
                Box::new(DeadlineExceeded::new(Name::new("r"))),
                GrpcCode::DeadlineExceeded,
                false,
            ),
            // With its pushback, a rate limit's RESOURCE_EXHAUSTED is retryable.
            (
                Box::new(RateLimited::new(Name::new("q"), Duration::from_millis(700))),
                GrpcCode::ResourceExhausted,
                true,
            ),
        ];
        for (err, code, retryable) in cases {
            let s = status(&err).unwrap();
            assert_eq!(s.code(), code, "{err}");
            let res: Response<()> = s.to_response();
            let verdict = Classify::<_, ()>::classify(&GrpcClassifier::new(), &Ok(res));
            assert_eq!(verdict.outcome(), Outcome::Failure, "{err}");
            assert_eq!(verdict.is_retryable(), retryable, "{err}");
        }
        // A pushback is rounded up to whole milliseconds.
        let err: BoxError = Box::new(CircuitOpen::new(
            Name::new("b"),
            Some(Duration::from_micros(2_500)),
        ));
        let res: Response<()> = status(&err).unwrap().to_response();
        assert_eq!(res.headers()["grpc-retry-pushback-ms"], "3");
        let err: BoxError = Box::new(RateLimited::new(Name::new("q"), Duration::from_millis(700)));
        let s = status(&err).unwrap();
        assert_eq!(s.pushback(), Some(Duration::from_millis(700)));
        assert_eq!(s.message(), "rate limited");
        assert!(status(&"refused".into()).is_none());
    }
}
