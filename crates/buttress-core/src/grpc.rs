//! gRPC classification by status code.
//!
//! gRPC answers with HTTP 200 and puts its status in `grpc-status`; for a
//! failed call, in the response headers ("trailers-only" responses, which is
//! how servers send an error before any message). [`GrpcClassifier`] reads it
//! ([`parse_grpc_status`]; not with `tower-http`'s `GrpcErrorsAsFailures`,
//! which takes a malformed status, and an HTTP error without one, for a
//! success) and maps the code:
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
//! (gRPC proposal A6). A `grpc-status` that is not a number is treated as
//! `UNKNOWN`, a number outside the spec too.
//!
//! A response without `grpc-status`:
//! - HTTP 200: the status comes in the trailers of a streamed body, which
//!   cannot be seen when the response head arrives; it counts as a success.
//! - any other HTTP status: the answer of something in front of the server
//!   (a proxy, a load balancer), mapped as gRPC's
//!   `http-grpc-status-mapping.md` says and then judged by the table above:
//!
//! | HTTP status | gRPC code | default outcome |
//! |---|---|---|
//! | 400 | `INTERNAL` | failure |
//! | 401 | `UNAUTHENTICATED` | success (the client's mistake) |
//! | 403 | `PERMISSION_DENIED` | success |
//! | 404 | `UNIMPLEMENTED` | success |
//! | 429, 502, 503, 504 | `UNAVAILABLE` | failure, retryable (after the HTTP `Retry-After`, when sent) |
//! | anything else | `UNKNOWN` | failure |

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Response, StatusCode};

pub use tower_http::classify::GrpcCode;

use crate::classify::{Classification, Classify};
use crate::reject::Overloaded;

const PUSHBACK: &str = "grpc-retry-pushback-ms";
const STATUS: &str = "grpc-status";

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
        if let Some(value) = res.headers().get(STATUS) {
            return self.classify_code(parse_grpc_status(value.as_bytes()), res.headers());
        }
        if res.status() == StatusCode::OK {
            // The status will come in the trailers, unseen here.
            return Classification::success();
        }
        let code = code_for_http_status(res.status());
        let verdict = self.classify_code(code, res.headers());
        if verdict.is_retryable()
            && verdict.retry_after().is_none()
            && let Some(delay) = crate::http::retry_after(res.headers(), SystemTime::now())
        {
            return verdict.with_retry_after(delay);
        }
        verdict
    }
}

/// Reads a `grpc-status` value: `1*DIGIT` (surrounding spaces allowed).
/// Anything else, and any number outside the spec, is `UNKNOWN`.
#[must_use]
pub fn parse_grpc_status(value: &[u8]) -> GrpcCode {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return GrpcCode::Unknown;
    }
    // Leading zeros are digits too; a number too long for `i32` is out of spec.
    let n = digits.iter().try_fold(0i32, |n, d| {
        n.checked_mul(10)?.checked_add(i32::from(d - b'0'))
    });
    n.map_or(GrpcCode::Unknown, GrpcCode::from)
}

/// The gRPC code for an HTTP response without `grpc-status` (gRPC's
/// `http-grpc-status-mapping.md`).
#[must_use]
pub fn code_for_http_status(status: StatusCode) -> GrpcCode {
    match status.as_u16() {
        400 => GrpcCode::Internal,
        401 => GrpcCode::Unauthenticated,
        403 => GrpcCode::PermissionDenied,
        404 => GrpcCode::Unimplemented,
        429 | 502 | 503 | 504 => GrpcCode::Unavailable,
        _ => GrpcCode::Unknown,
    }
}

impl Overloaded {
    /// A gRPC "trailers-only" error response: HTTP 200,
    /// `content-type: application/grpc`, `grpc-status: 8`
    /// (RESOURCE_EXHAUSTED) and a `grpc-message`; with `pushback`, also
    /// `grpc-retry-pushback-ms` (gRPC proposal A6, which [`GrpcClassifier`]
    /// reads as the retry delay). Needs no tonic.
    #[must_use]
    pub fn to_grpc_response<B: Default>(&self, pushback: Option<Duration>) -> Response<B> {
        trailers_only(
            GrpcCode::ResourceExhausted,
            "overloaded%3A concurrency limit reached",
            pushback,
        )
    }
}

/// A gRPC "trailers-only" response: HTTP 200, `content-type:
/// application/grpc`, `grpc-status: code`, `grpc-message: message`
/// (percent-encoded by the caller), and, with `pushback`,
/// `grpc-retry-pushback-ms` rounded up to whole milliseconds so a client
/// never comes back early. Needs no tonic.
#[must_use]
pub fn trailers_only<B: Default>(
    code: GrpcCode,
    message: &'static str,
    pushback: Option<Duration>,
) -> Response<B> {
    let mut res = Response::new(B::default());
    let h = res.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(STATUS, HeaderValue::from(code as i32));
    h.insert("grpc-message", HeaderValue::from_static(message));
    if let Some(after) = pushback {
        let ms = after
            .as_millis()
            .saturating_add(u128::from(after.subsec_nanos() % 1_000_000 > 0));
        h.insert(
            PUSHBACK,
            HeaderValue::from(u64::try_from(ms).unwrap_or(u64::MAX)),
        );
    }
    res
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

    fn http(status: u16, retry_after: Option<&str>) -> Result<Response<()>, ()> {
        let mut b = Response::builder().status(status);
        if let Some(r) = retry_after {
            b = b.header("retry-after", r);
        }
        Ok(b.body(()).unwrap())
    }

    /// A proxy's 502/503/504/429 in front of a gRPC server (no
    /// `grpc-status`) is UNAVAILABLE: a retryable failure, not a success.
    #[test]
    fn http_answers_without_grpc_status_use_the_spec_mapping() {
        let c = GrpcClassifier::new();
        let v = |r| Classify::classify(&c, &r);
        for status in [429, 502, 503, 504] {
            assert_eq!(
                v(http(status, None)),
                Classification::failure().retryable(true),
                "{status}"
            );
        }
        assert_eq!(
            v(http(503, Some("3"))),
            Classification::failure()
                .retryable(true)
                .with_retry_after(Duration::from_secs(3))
        );
        assert_eq!(v(http(400, None)), Classification::failure(), "INTERNAL");
        assert_eq!(v(http(500, None)), Classification::failure(), "UNKNOWN");
        assert_eq!(v(http(302, None)), Classification::failure(), "UNKNOWN");
        for status in [401, 403, 404] {
            assert_eq!(v(http(status, None)), Classification::success(), "{status}");
        }
        // With grpc-status, the gRPC status decides whatever the HTTP one.
        let mut res = http(503, None).unwrap();
        res.headers_mut().insert(STATUS, "0".parse().unwrap());
        assert_eq!(v(Ok(res)), Classification::success());
        // The user's table applies to mapped codes too.
        let lenient = GrpcClassifier::new().success_on(GrpcCode::Unavailable);
        assert_eq!(
            Classify::classify(&lenient, &http(503, None)).outcome(),
            Outcome::Success
        );
    }

    #[test]
    fn grpc_status_values() {
        assert_eq!(parse_grpc_status(b"14"), GrpcCode::Unavailable);
        assert_eq!(parse_grpc_status(b" 014 "), GrpcCode::Unavailable);
        assert_eq!(parse_grpc_status(b"0"), GrpcCode::Ok);
        for bad in [
            &b""[..],
            b"+5",
            b"-1",
            b"5x",
            b"99999999999999",
            b"17",
            b"\xff",
        ] {
            assert_eq!(parse_grpc_status(bad), GrpcCode::Unknown, "{bad:?}");
        }
        // A malformed status is a failure, never a success.
        let mut res = Response::new(());
        res.headers_mut().insert(STATUS, "ok".parse().unwrap());
        assert_eq!(
            Classify::<_, ()>::classify(&GrpcClassifier::new(), &Ok(res)),
            Classification::failure()
        );
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
