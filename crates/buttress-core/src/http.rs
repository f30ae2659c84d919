//! HTTP classification, `Retry-After` parsing and HTTP key extractors.
//!
//! [`HttpClassifier`] decides failure versus success with a `tower-http`
//! classifier ([`ServerErrorsAsFailures`] by default, any
//! [`ClassifyResponse`] on request) and adds what `tower-http` does not
//! know: which statuses are worth retrying, the server's `Retry-After`, and
//! how 4xx answers count.
//!
//! | result | outcome (breaker) | retryable |
//! |---|---|---|
//! | transport error (`Err`) | failure | yes |
//! | 5xx | failure | 502, 503, 504 (configurable) |
//! | 429 Too Many Requests | success (the server is healthy) | yes, after `Retry-After` |
//! | other 4xx | success (configurable: ignored) | no |
//! | 1xx, 2xx, 3xx | success | no |
//!
//! ```
//! use buttress_core::classify::{Classify, Outcome};
//! use buttress_core::http::HttpClassifier;
//! use http::{Response, StatusCode};
//!
//! let c = HttpClassifier::new();
//! let res: Result<Response<()>, std::io::Error> = Ok(Response::builder()
//!     .status(StatusCode::SERVICE_UNAVAILABLE)
//!     .header("retry-after", "3")
//!     .body(())
//!     .unwrap());
//! let verdict = c.classify(&res);
//! assert_eq!(verdict.outcome(), Outcome::Failure);
//! assert!(verdict.is_retryable());
//! assert_eq!(verdict.retry_after(), Some(std::time::Duration::from_secs(3)));
//! ```

use std::time::{Duration, SystemTime};

use http::header::{HOST, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, uri::Authority};
use tower_http::classify::{ClassifiedResponse, ClassifyResponse, ServerErrorsAsFailures};

pub use tower_http::classify::StatusInRangeAsFailures;

use crate::classify::{Classification, Classify, Outcome};
use crate::key::KeyExtractor;
use crate::reject::{CircuitOpen, Overloaded};

/// A set of HTTP status codes (100..=999) as a bitmap: one lookup, no allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
struct StatusSet([u64; 16]);

impl StatusSet {
    const EMPTY: Self = Self([0; 16]);

    const fn with(mut self, code: u16) -> Self {
        self.0[(code / 64) as usize] |= 1 << (code % 64);
        self
    }

    const fn without(mut self, code: u16) -> Self {
        self.0[(code / 64) as usize] &= !(1 << (code % 64));
        self
    }

    const fn contains(&self, code: u16) -> bool {
        self.0[(code / 64) as usize] & (1 << (code % 64)) != 0
    }
}

impl std::fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries((100u16..1000).filter(|c| self.contains(*c)))
            .finish()
    }
}

/// Classifies `Result<http::Response<B>, E>`: see the [module docs](self) for
/// the default table.
///
/// `C` is the `tower-http` classifier that decides which responses are
/// failures ([`ServerErrorsAsFailures`] by default; for instance
/// [`StatusInRangeAsFailures::new(500..=599)`](StatusInRangeAsFailures::new)
/// or a classifier of your own). A response it wants to judge at the end of
/// the stream (`RequiresEos`) counts as a success here: a layer cannot wait
/// for the body's trailers.
#[derive(Clone, Debug)]
pub struct HttpClassifier<C = ServerErrorsAsFailures> {
    failures: C,
    retryable: StatusSet,
    client_errors: Outcome,
    transport_errors_retryable: bool,
}

impl Default for HttpClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClassifier {
    /// 5xx and transport errors fail; 429, 502, 503, 504 and transport
    /// errors are retryable; 4xx count as successes.
    #[must_use]
    pub fn new() -> Self {
        Self::with_failures(ServerErrorsAsFailures::new())
    }
}

impl<C> HttpClassifier<C> {
    /// Uses `failures` (any `tower-http` [`ClassifyResponse`]) to decide
    /// which responses fail; everything else as in [`HttpClassifier::new`].
    #[must_use]
    pub fn with_failures(failures: C) -> Self {
        Self {
            failures,
            retryable: StatusSet::EMPTY.with(429).with(502).with(503).with(504),
            client_errors: Outcome::Success,
            transport_errors_retryable: true,
        }
    }

    /// Marks `status` as retryable (for example 500 for a backend known to
    /// fail transiently). Default: 429, 502, 503 and 504, the statuses RFC
    /// 9110 and the gRPC/Envoy retry policies treat as transient.
    #[must_use]
    pub fn retry_on(mut self, status: StatusCode) -> Self {
        self.retryable = self.retryable.with(status.as_u16());
        self
    }

    /// Marks `status` as not retryable.
    #[must_use]
    pub fn no_retry_on(mut self, status: StatusCode) -> Self {
        self.retryable = self.retryable.without(status.as_u16());
        self
    }

    /// How 4xx responses the failure classifier accepts count: `Success`
    /// (default: the server is up and answering) or `Ignored` (counted
    /// nowhere: useful when clients' mistakes would otherwise dilute a
    /// breaker's failure rate).
    #[must_use]
    pub fn client_errors(mut self, outcome: Outcome) -> Self {
        self.client_errors = outcome;
        self
    }

    /// Whether transport errors (the `Err` side) are retryable. Default: `true`.
    #[must_use]
    pub fn transport_errors_retryable(mut self, retryable: bool) -> Self {
        self.transport_errors_retryable = retryable;
        self
    }
}

impl<C, B, E> Classify<Response<B>, E> for HttpClassifier<C>
where
    C: ClassifyResponse + Clone,
{
    fn classify(&self, result: &Result<Response<B>, E>) -> Classification {
        let res = match result {
            Ok(res) => res,
            Err(_) => {
                return Classification::failure().retryable(self.transport_errors_retryable);
            }
        };
        let status = res.status();
        let code = status.as_u16();
        let failed = matches!(
            self.failures.clone().classify_response(res),
            ClassifiedResponse::Ready(Err(_))
        );
        let outcome = if failed {
            Outcome::Failure
        } else if status.is_client_error() {
            self.client_errors
        } else {
            Outcome::Success
        };
        let mut verdict = Classification::new(outcome).retryable(self.retryable.contains(code));
        if (code == 429 || code == 503)
            && let Some(delay) = retry_after(res.headers(), SystemTime::now())
        {
            verdict = verdict.with_retry_after(delay);
        }
        verdict
    }
}

/// Reads a `Retry-After` header (RFC 9110 §10.2.3): delta-seconds or an
/// HTTP-date, relative to `now`. A date in the past gives zero; a malformed
/// value gives `None`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderMap;
/// use buttress_core::http::retry_after;
///
/// let mut h = HeaderMap::new();
/// h.insert("retry-after", "120".parse().unwrap());
/// assert_eq!(retry_after(&h, SystemTime::now()), Some(Duration::from_secs(120)));
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
/// h.insert("retry-after", "Sun, 06 Nov 1994 08:49:47 GMT".parse().unwrap());
/// assert_eq!(retry_after(&h, now), Some(Duration::from_secs(10)));
/// ```
#[must_use]
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?, now)
}

/// Parses one `Retry-After` value: see [`retry_after`].
#[must_use]
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Delta-seconds; absurdly long values saturate rather than fail.
        return Some(Duration::from_secs(text.parse::<u64>().unwrap_or(u64::MAX)));
    }
    match httpdate::parse_http_date(text) {
        Ok(at) => Some(at.duration_since(now).unwrap_or(Duration::ZERO)),
        // `httpdate` knows only 1970..=9999; a valid earlier date is in the past.
        Err(_) => before_1970(text).then_some(Duration::ZERO),
    }
}

/// Whether `text` is a valid IMF-fixdate or asctime date (RFC 9110 §5.6.7)
/// before 1970. The Gregorian calendar repeats every 400 years, so the date
/// is checked (day of month, weekday, leap day) by moving its year forward
/// by whole 400-year cycles into the range `httpdate` parses. (RFC 850's
/// two-digit years always read as 1970..=2069.)
fn before_1970(text: &str) -> bool {
    let year_at = match text.len() {
        29 => 12, // Sun, 06 Nov 1994 08:49:37 GMT
        24 => 20, // Sun Nov  6 08:49:37 1994
        _ => return false,
    };
    let Some(year) = text
        .get(year_at..year_at + 4)
        .filter(|y| y.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|y| y.parse::<u16>().ok())
    else {
        return false;
    };
    if year >= 1970 {
        return false;
    }
    let moved = year + 400 * (1970 - year).div_ceil(400);
    let shifted = format!("{}{moved}{}", &text[..year_at], &text[year_at + 4..]);
    httpdate::parse_http_date(&shifted).is_ok()
}

/// Keys a request by its target host: the URI's authority, or the `Host`
/// header when the URI has none (server side). For a breaker per upstream.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostKey;

impl<B> KeyExtractor<Request<B>> for HostKey {
    type Key = Authority;

    fn extract(&self, req: &Request<B>) -> Option<Authority> {
        if let Some(a) = req.uri().authority() {
            return Some(a.clone());
        }
        let host = req.headers().get(HOST)?;
        Authority::try_from(host.as_bytes()).ok()
    }
}

/// Keys a request by its path (for a breaker or a limit per route).
///
/// The key is the raw path: route templates (`/users/{id}`) are a router's
/// knowledge; with axum, key by `MatchedPath` with a closure instead.
#[derive(Clone, Copy, Debug, Default)]
pub struct PathKey;

impl<B> KeyExtractor<Request<B>> for PathKey {
    type Key = String;

    fn extract(&self, req: &Request<B>) -> Option<String> {
        Some(req.uri().path().to_owned())
    }
}

/// `Retry-After` for a wait of `after`: whole seconds, rounded up so a
/// client never comes back early, saturating at `u64::MAX` seconds.
#[must_use]
pub fn retry_after_value(after: Duration) -> HeaderValue {
    HeaderValue::from(
        after
            .as_secs()
            .saturating_add(u64::from(after.subsec_nanos() > 0)),
    )
}

/// `503 Service Unavailable`, with `Retry-After` when the wait is known.
fn unavailable<B: Default>(retry_after: Option<Duration>) -> Response<B> {
    let mut res = Response::new(B::default());
    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    if let Some(after) = retry_after {
        res.headers_mut()
            .insert(RETRY_AFTER, retry_after_value(after));
    }
    res
}

impl CircuitOpen {
    /// `503 Service Unavailable` with `Retry-After` in whole seconds
    /// (rounded up, so a client never comes back before the probe, and
    /// saturating at `u64::MAX` for the longest durations), or without it
    /// when the next probe time is unknown.
    #[must_use]
    pub fn to_response<B: Default>(&self) -> Response<B> {
        unavailable(self.retry_after())
    }
}

impl Overloaded {
    /// `503 Service Unavailable` (Envoy's answer for a shed request).
    #[must_use]
    pub fn to_response<B: Default>(&self) -> Response<B> {
        unavailable(None)
    }

    /// `503 Service Unavailable` with `Retry-After: retry_after` in whole
    /// seconds, rounded up (saturating: `Duration::MAX` is `u64::MAX`
    /// seconds).
    #[must_use]
    pub fn to_response_with_retry_after<B: Default>(&self, retry_after: Duration) -> Response<B> {
        unavailable(Some(retry_after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(status: u16) -> Result<Response<()>, &'static str> {
        Ok(Response::builder().status(status).body(()).unwrap())
    }

    #[test]
    fn default_table() {
        let c = HttpClassifier::new();
        let v = |r| Classify::classify(&c, &r);
        assert_eq!(v(res(200)), Classification::success());
        assert_eq!(v(res(304)), Classification::success());
        assert_eq!(v(res(404)), Classification::success());
        assert_eq!(v(res(429)), Classification::success().retryable(true));
        assert_eq!(v(res(500)), Classification::failure());
        assert_eq!(v(res(501)), Classification::failure());
        for code in [502, 503, 504] {
            assert_eq!(v(res(code)), Classification::failure().retryable(true));
        }
        assert_eq!(v(Err("reset")), Classification::failure().retryable(true));
    }

    #[test]
    fn configurable() {
        let c = HttpClassifier::with_failures(StatusInRangeAsFailures::new(400..=599))
            .retry_on(StatusCode::INTERNAL_SERVER_ERROR)
            .no_retry_on(StatusCode::GATEWAY_TIMEOUT)
            .transport_errors_retryable(false);
        let v = |r| Classify::classify(&c, &r);
        assert_eq!(v(res(404)), Classification::failure());
        assert_eq!(v(res(500)), Classification::failure().retryable(true));
        assert_eq!(v(res(504)), Classification::failure());
        assert_eq!(v(Err("reset")), Classification::failure());

        let ignore_4xx = HttpClassifier::new().client_errors(Outcome::Ignored);
        assert_eq!(
            Classify::classify(&ignore_4xx, &res(404)).outcome(),
            Outcome::Ignored
        );
        assert_eq!(
            Classify::classify(&ignore_4xx, &res(200)).outcome(),
            Outcome::Success
        );
    }

    #[test]
    fn retry_after_on_429_and_503_only() {
        let c = HttpClassifier::new();
        let with = |code: u16| -> Result<Response<()>, ()> {
            Ok(Response::builder()
                .status(code)
                .header(RETRY_AFTER, "7")
                .body(())
                .unwrap())
        };
        let seven = Some(Duration::from_secs(7));
        assert_eq!(Classify::classify(&c, &with(429)).retry_after(), seven);
        assert_eq!(Classify::classify(&c, &with(503)).retry_after(), seven);
        assert_eq!(Classify::classify(&c, &with(502)).retry_after(), None);
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let p = |s: &str| parse_retry_after(&HeaderValue::from_str(s).unwrap(), now);
        assert_eq!(p("0"), Some(Duration::ZERO));
        assert_eq!(p(" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(
            p("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(p("-1"), None);
        assert_eq!(p("soon"), None);
        assert_eq!(p(""), None);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(p(&later), Some(Duration::from_secs(90)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(p(&earlier), Some(Duration::ZERO));
    }

    /// A date before 1970 is in the past: zero, as the docs promise, in
    /// both four-digit-year formats; an impossible one is still malformed.
    #[test]
    fn retry_after_before_1970_is_zero() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let p = |s: &str| parse_retry_after(&HeaderValue::from_str(s).unwrap(), now);
        assert_eq!(p("Fri, 01 Jan 1960 00:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(p("Wed, 31 Dec 1969 23:59:59 GMT"), Some(Duration::ZERO));
        assert_eq!(p("Sun, 29 Feb 1920 12:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(p("Fri Jan  1 00:00:00 1960"), Some(Duration::ZERO));
        assert_eq!(p("Sat, 01 Jan 0000 00:00:00 GMT"), Some(Duration::ZERO));
        // Wrong weekday, no 29 February in 1900, a bad hour: malformed.
        assert_eq!(p("Thu, 01 Jan 1960 00:00:00 GMT"), None);
        assert_eq!(p("Thu, 29 Feb 1900 00:00:00 GMT"), None);
        assert_eq!(p("Fri, 01 Jan 1960 24:00:00 GMT"), None);
    }

    #[test]
    fn host_and_path_keys() {
        let client = Request::get("http://api.example.com:8080/a?b=1")
            .body(())
            .unwrap();
        assert_eq!(
            HostKey.extract(&client).unwrap().as_str(),
            "api.example.com:8080"
        );
        let server = Request::get("/users/7")
            .header(HOST, "svc.local")
            .body(())
            .unwrap();
        assert_eq!(HostKey.extract(&server).unwrap().as_str(), "svc.local");
        assert_eq!(PathKey.extract(&server).unwrap(), "/users/7");
        let none = Request::get("/x").body(()).unwrap();
        assert_eq!(HostKey.extract(&none), None);
    }
}
