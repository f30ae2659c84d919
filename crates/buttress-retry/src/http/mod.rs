//! HTTP: which requests may be sent twice, how they are copied, and the
//! replayable body.
//!
//! ```
//! use std::time::Duration;
//! use buttress_core::http::HttpClassifier;
//! use buttress_retry::http::{HttpReplay, ReplayBody};
//! use buttress_retry::{RetryLayer, RetryPolicy};
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let policy = RetryPolicy::builder()
//!     .classifier(HttpClassifier::new())
//!     .replay(HttpReplay::new())
//!     .build()
//!     .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(RetryLayer::new(policy.clone()))
//!     .service(service_fn(|_req: Request<ReplayBody<String>>| async {
//!         Ok::<_, std::io::Error>(Response::builder().status(503).body(()).unwrap())
//!     }));
//!
//! // A POST is sent once: no retry, the 503 comes back.
//! let post = Request::post("http://svc/orders").body(ReplayBody::new("{}".to_string())).unwrap();
//! assert_eq!(svc.clone().oneshot(post).await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(policy.snapshot().retries, 0);
//!
//! // A GET is retried (3 attempts by default).
//! let get = Request::get("http://svc/orders/7").body(ReplayBody::new(String::new())).unwrap();
//! let _ = svc.clone().oneshot(get).await.unwrap();
//! assert_eq!(policy.snapshot().retries, 2);
//! # }
//! ```

mod body;

use std::time::Duration;

use buttress_core::time::Instant;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};

pub use self::body::{DEFAULT_REPLAY_CAP, ReplayBody, ReplayError};
use crate::replay::{Deadline, Replay, later};

/// The `Idempotency-Key` header (IETF draft
/// `draft-ietf-httpapi-idempotency-key-header`).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The `grpc-timeout` header.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Whether `req` may be sent more than once: an idempotent method (RFC
/// 9110 §9.2.2: GET, HEAD, OPTIONS, PUT, DELETE, TRACE) or an
/// `Idempotency-Key` header.
#[must_use]
pub fn is_idempotent<B>(req: &Request<B>) -> bool {
    matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    ) || req.headers().contains_key(IDEMPOTENCY_KEY)
}

/// A body that can be copied for another attempt.
///
/// Implemented for [`ReplayBody`] (any body, buffered up to a cap) and for
/// bodies that are plain values (`()`, `String`, `Vec<u8>`, `Bytes`,
/// `&'static str`).
pub trait TryCloneBody: Sized {
    /// A copy, or `None` if the body cannot be sent again.
    fn try_clone_body(&self) -> Option<Self>;

    /// Whether a copy made earlier can still be sent (asked before each
    /// retry). Default: `true`.
    fn can_replay(&self) -> bool {
        true
    }
}

macro_rules! clone_bodies {
    ($($t:ty),*) => {$(
        impl TryCloneBody for $t {
            #[inline]
            fn try_clone_body(&self) -> Option<Self> {
                Some(self.clone())
            }
        }
    )*};
}

clone_bodies!((), String, Vec<u8>, Bytes, &'static str);

/// [`Replay`] for `http::Request<B>`: copies method, URI, version, headers,
/// extensions and (with [`TryCloneBody`]) the body, for idempotent requests
/// only (see [`is_idempotent`]) unless told otherwise; carries the
/// [`Deadline`] as a request extension and, for gRPC, as `grpc-timeout`.
///
/// Copying a request clones its header map (an allocation) and its
/// extensions (another, when there are any).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpReplay {
    non_idempotent: bool,
    grpc_timeout: bool,
}

impl HttpReplay {
    /// Idempotent requests only; the deadline as an extension.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            non_idempotent: false,
            grpc_timeout: false,
        }
    }

    /// For gRPC: every request (gRPC calls are all POSTs; which *statuses*
    /// are safe to retry is the gRPC classifier's business, `UNAVAILABLE`
    /// meaning the call was not processed, as in gRPC's retry design A6),
    /// and the deadline also as `grpc-timeout`.
    #[must_use]
    pub const fn grpc() -> Self {
        Self {
            non_idempotent: true,
            grpc_timeout: true,
        }
    }

    /// Also copies (so retries and hedges) non-idempotent requests. Default:
    /// `false`. Only for a backend known to deduplicate.
    #[must_use]
    pub const fn retry_non_idempotent(mut self, yes: bool) -> Self {
        self.non_idempotent = yes;
        self
    }

    /// Writes the time left as `grpc-timeout` before each attempt.
    /// Default: `false` (`true` for [`grpc`](Self::grpc)).
    #[must_use]
    pub const fn grpc_timeout(mut self, yes: bool) -> Self {
        self.grpc_timeout = yes;
        self
    }
}

impl<B: TryCloneBody> Replay<Request<B>> for HttpReplay {
    fn replay(&self, req: &Request<B>) -> Option<Request<B>> {
        if !self.non_idempotent && !is_idempotent(req) {
            return None;
        }
        let body = req.body().try_clone_body()?;
        let mut copy = Request::new(body);
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }

    fn can_replay(&self, req: &Request<B>) -> bool {
        req.body().can_replay()
    }

    /// The request's [`Deadline`] extension and, for gRPC, its
    /// `grpc-timeout` counted from now; the earlier of the two. A malformed
    /// `grpc-timeout` is not a deadline (see [`parse_grpc_timeout`]).
    fn deadline(&self, req: &Request<B>) -> Option<Instant> {
        let carried = req.extensions().get::<Deadline>().map(|d| d.instant());
        if !self.grpc_timeout {
            return carried;
        }
        let Some(left) = req.headers().get(GRPC_TIMEOUT).and_then(parse_grpc_timeout) else {
            return carried;
        };
        let from_header = later(Instant::now(), left);
        Some(carried.map_or(from_header, |c| c.min(from_header)))
    }

    fn stamp(&self, req: &mut Request<B>, deadline: Deadline, now: Instant) {
        req.extensions_mut().insert(deadline);
        if self.grpc_timeout {
            let left = deadline.instant().saturating_duration_since(now);
            req.headers_mut()
                .insert(GRPC_TIMEOUT, grpc_timeout_value(left));
        }
    }
}

/// Reads a `grpc-timeout` value as gRPC's PROTOCOL-HTTP2.md defines it:
/// 1 to 8 ASCII digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`), nothing
/// else (no sign, no spaces). `None` for anything malformed: such a value
/// is no deadline, and when the retry layer stamps a deadline it replaces
/// the malformed header with a well-formed one (a gRPC server would
/// otherwise fail the call with `INTERNAL`).
///
/// ```
/// use std::time::Duration;
/// use buttress_retry::http::parse_grpc_timeout;
/// use http::HeaderValue;
///
/// let v = |s| parse_grpc_timeout(&HeaderValue::from_static(s));
/// assert_eq!(v("100m"), Some(Duration::from_millis(100)));
/// assert_eq!(v("99999999H"), Some(Duration::from_secs(99_999_999 * 3600)));
/// assert_eq!(v("1n"), Some(Duration::from_nanos(1)));
/// for bad in ["", "5X", "m", "123456789S", "-1S", "1 S"] {
///     assert_eq!(v(bad), None, "{bad}");
/// }
/// ```
#[must_use]
pub fn parse_grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    let (unit, digits) = value.as_bytes().split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most 8 digits: fits in a u64, and so does any unit's product.
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `grpc-timeout`: at most 8 digits and a unit, rounded down (so the
/// server never thinks it has more time than it has).
#[must_use]
pub fn grpc_timeout_value(left: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = left.as_nanos();
    let units: [(u128, &str); 6] = [
        (1, "n"),
        (1_000, "u"),
        (1_000_000, "m"),
        (1_000_000_000, "S"),
        (60_000_000_000, "M"),
        (3_600_000_000_000, "H"),
    ];
    for (per, unit) in units {
        let v = nanos / per;
        if v <= MAX {
            return HeaderValue::from_str(&format!("{v}{unit}"))
                .unwrap_or(HeaderValue::from_static("0n"));
        }
    }
    HeaderValue::from_static("99999999H")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency() {
        for m in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"] {
            let r = Request::builder().method(m).body(()).unwrap();
            assert!(is_idempotent(&r), "{m}");
        }
        for m in ["POST", "PATCH", "CONNECT"] {
            let r = Request::builder().method(m).body(()).unwrap();
            assert!(!is_idempotent(&r), "{m}");
        }
        let keyed = Request::post("/")
            .header("Idempotency-Key", "k1")
            .body(())
            .unwrap();
        assert!(is_idempotent(&keyed));
    }

    #[test]
    fn copies_everything_and_refuses_posts() {
        let mut req = Request::put("http://a/b?c")
            .header("x-h", "1")
            .version(http::Version::HTTP_2)
            .body("payload")
            .unwrap();
        req.extensions_mut().insert(7u8);
        let copy = HttpReplay::new().replay(&req).unwrap();
        assert_eq!(copy.method(), Method::PUT);
        assert_eq!(copy.uri(), "http://a/b?c");
        assert_eq!(copy.version(), http::Version::HTTP_2);
        assert_eq!(copy.headers()["x-h"], "1");
        assert_eq!(copy.extensions().get::<u8>(), Some(&7));
        assert_eq!(*copy.body(), "payload");
        let post = Request::post("/").body(()).unwrap();
        assert!(HttpReplay::new().replay(&post).is_none());
        assert!(HttpReplay::grpc().replay(&post).is_some());
    }

    #[test]
    fn grpc_timeout_format() {
        let v = |d| grpc_timeout_value(d).to_str().unwrap().to_string();
        assert_eq!(v(Duration::from_millis(250)), "250000u");
        assert_eq!(v(Duration::from_nanos(5)), "5n");
        assert_eq!(v(Duration::from_secs(3)), "3000000u");
        assert_eq!(v(Duration::from_secs(200_000)), "200000S");
        assert_eq!(v(Duration::from_secs(10_000_000_000)), "2777777H");
    }
}
