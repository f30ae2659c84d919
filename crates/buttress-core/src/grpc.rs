//! gRPC classification by status code.
//!
//! gRPC answers with HTTP 200 and puts its status in `grpc-status`; for a
//! failed call, in the response headers ("trailers-only" responses, which is
//! how servers send an error before any message). [`GrpcClassifier`] reads it
//! with `tower-http`'s [`GrpcErrorsAsFailures`] and maps the code:
//!
//! | code | outcome | retryable |
//! |---|---|---|
//! | `OK` and the client's mistakes (`INVALID_ARGUMENT`, `NOT_FOUND`, …) | success | no |
//! | `CANCELLED` | ignored | no |
//! | `UNAVAILABLE` | failure | yes (unless the server sent a negative pushback) |
//! | `RESOURCE_EXHAUSTED` | failure | only with `grpc-retry-pushback-ms` ≥ 0 |
//! | `UNKNOWN`, `DEADLINE_EXCEEDED`, `INTERNAL`, `DATA_LOSS` | failure | no |
//! | transport error (`Err`) | failure | yes |
//!
//! `grpc-retry-pushback-ms` becomes the [retry delay](Classification::retry_after)
//! (gRPC proposal A6). A status sent only in the trailers of a streamed body
//! cannot be seen when the response head arrives and counts as a success.

use std::time::Duration;

use http::{HeaderMap, Response};
use tower_http::classify::{
    ClassifiedResponse, ClassifyResponse, GrpcErrorsAsFailures, GrpcFailureClass,
};

pub use tower_http::classify::GrpcCode;

use crate::classify::{Classification, Classify};

const PUSHBACK: &str = "grpc-retry-pushback-ms";

/// Classifies `Result<http::Response<B>, E>` carrying gRPC: see the
/// [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcClassifier {
    failures: u32,
    transport_errors_retryable: bool,
}

const fn bit(code: GrpcCode) -> u32 {
    1 << (code as i32 as u32)
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcClassifier {
    /// The default table in the [module docs](self).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            failures: bit(GrpcCode::Unknown)
                | bit(GrpcCode::DeadlineExceeded)
                | bit(GrpcCode::ResourceExhausted)
                | bit(GrpcCode::Internal)
                | bit(GrpcCode::Unavailable)
                | bit(GrpcCode::DataLoss),
            transport_errors_retryable: true,
        }
    }

    /// Counts `code` as a failure.
    #[must_use]
    pub const fn failure_on(mut self, code: GrpcCode) -> Self {
        self.failures |= bit(code);
        self
    }

    /// Counts `code` as a success.
    #[must_use]
    pub const fn success_on(mut self, code: GrpcCode) -> Self {
        self.failures &= !bit(code);
        self
    }

    /// Whether transport errors are retryable. Default: `true`.
    #[must_use]
    pub const fn transport_errors_retryable(mut self, retryable: bool) -> Self {
        self.transport_errors_retryable = retryable;
        self
    }

    /// Classifies a gRPC status code with the headers (or trailers) that
    /// carried it.
    #[must_use]
    pub fn classify_code(&self, code: GrpcCode, metadata: &HeaderMap) -> Classification {
        if code == GrpcCode::Ok {
            return Classification::success();
        }
        if code == GrpcCode::Cancelled {
            return Classification::ignored();
        }
        let mut verdict = if self.failures & bit(code) != 0 {
            Classification::failure()
        } else {
            Classification::success()
        };
        let pushback = pushback(metadata);
        let retryable = match (code, pushback) {
            (_, Some(Pushback::Stop)) => false,
            (GrpcCode::Unavailable, _) => true,
            (GrpcCode::ResourceExhausted, Some(Pushback::After(_))) => true,
            _ => false,
        };
        verdict = verdict.retryable(retryable);
        if let (true, Some(Pushback::After(d))) = (retryable, pushback) {
            verdict = verdict.with_retry_after(d);
        }
        verdict
    }
}

#[derive(Clone, Copy)]
enum Pushback {
    After(Duration),
    Stop,
}

/// gRPC A6: a non-negative integer is a delay; anything else means "do not retry".
fn pushback(metadata: &HeaderMap) -> Option<Pushback> {
    let value = metadata.get(PUSHBACK)?;
    Some(
        match value
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            Some(ms) => Pushback::After(Duration::from_millis(ms)),
            None => Pushback::Stop,
        },
    )
}

impl<B, E> Classify<Response<B>, E> for GrpcClassifier {
    fn classify(&self, result: &Result<Response<B>, E>) -> Classification {
        let res = match result {
            Ok(res) => res,
            Err(_) => {
                return Classification::failure().retryable(self.transport_errors_retryable);
            }
        };
        match GrpcErrorsAsFailures::new().classify_response(res) {
            ClassifiedResponse::Ready(Err(GrpcFailureClass::Status(status))) => {
                match status.code() {
                    Some(code) => self.classify_code(code, res.headers()),
                    // A code outside the spec: the server is not well.
                    None => Classification::failure(),
                }
            }
            ClassifiedResponse::Ready(Err(_)) => Classification::failure(),
            ClassifiedResponse::Ready(Ok(())) | ClassifiedResponse::RequiresEos(_) => {
                Classification::success()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Outcome;

    fn grpc(code: i32, pushback: Option<&str>) -> Result<Response<()>, ()> {
        let mut b = Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .header("grpc-status", code.to_string());
        if let Some(p) = pushback {
            b = b.header(PUSHBACK, p);
        }
        Ok(b.body(()).unwrap())
    }

    #[test]
    fn default_table() {
        let c = GrpcClassifier::new();
        let v = |r| Classify::classify(&c, &r);
        assert_eq!(v(grpc(0, None)), Classification::success());
        assert_eq!(v(grpc(5, None)), Classification::success(), "NOT_FOUND");
        assert_eq!(v(grpc(1, None)), Classification::ignored(), "CANCELLED");
        assert_eq!(v(grpc(14, None)), Classification::failure().retryable(true));
        assert_eq!(v(grpc(13, None)), Classification::failure(), "INTERNAL");
        assert_eq!(
            v(grpc(8, None)),
            Classification::failure(),
            "RESOURCE_EXHAUSTED without pushback"
        );
        assert_eq!(
            v(grpc(8, Some("250"))),
            Classification::failure()
                .retryable(true)
                .with_retry_after(Duration::from_millis(250))
        );
        assert_eq!(
            v(grpc(14, Some("-1"))),
            Classification::failure(),
            "negative pushback stops retries"
        );
        assert_eq!(v(grpc(99, None)).outcome(), Outcome::Failure);
        assert_eq!(v(Err(())), Classification::failure().retryable(true));
        // Streaming response: status only in trailers, unseen here.
        let streaming: Result<Response<()>, ()> = Ok(Response::new(()));
        assert_eq!(v(streaming), Classification::success());
    }

    #[test]
    fn configurable_codes() {
        let c = GrpcClassifier::new()
            .success_on(GrpcCode::DeadlineExceeded)
            .failure_on(GrpcCode::PermissionDenied);
        assert_eq!(
            Classify::classify(&c, &grpc(4, None)).outcome(),
            Outcome::Success
        );
        assert_eq!(
            Classify::classify(&c, &grpc(7, None)).outcome(),
            Outcome::Failure
        );
    }
}
