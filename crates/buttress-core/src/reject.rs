//! The rejections every buttress layer returns: one vocabulary, so that any
//! layer (a retry, a cache, the HTTP mapping) recognises another's refusal
//! however many wrappers it went through.
//!
//! | type | layer | retry after |
//! |---|---|---|
//! | [`CircuitOpen`] | circuit breaker | the time to the next probe, when known |
//! | [`Overloaded`] | concurrency limit | unknown |
//! | [`Throttled`] | client-side throttle | unknown |
//! | [`DeadlineExceeded`] | a retry's deadline, a cache's load timeout | never (the time is spent) |
//! | [`RateLimited`] | rate limit | the wait until the key's next allowed request |
//!
//! [`rejection`] finds one anywhere in an error's `source()` chain and
//! says what it is and when the caller may try again. Each layer crate
//! re-exports its own type.
//!
//! ```
//! use std::time::Duration;
//! use buttress_core::BoxError;
//! use buttress_core::reject::{CircuitOpen, RejectionKind, rejection};
//! use buttress_core::telemetry::Name;
//!
//! let err: BoxError = Box::new(CircuitOpen::new(Name::new("payments"), Some(Duration::from_secs(5))));
//! let r = rejection(&err).unwrap();
//! assert_eq!(r.kind(), RejectionKind::CircuitOpen);
//! assert_eq!(r.name().as_str(), "payments");
//! assert_eq!(r.retry_after(), Some(Duration::from_secs(5)));
//! assert!(rejection(&"connection reset".into()).is_none());
//! ```

use std::error::Error;
use std::fmt;
use std::time::Duration;

use crate::BoxError;
use crate::classify::Outcome;
use crate::error::chain;
use crate::telemetry::Name;

/// The breaker rejected the call without calling the inner service.
///
/// Returned boxed as the service's error (a `BoxError`); find it with
/// [`rejection`] or [`find`](crate::error::find), also inside another
/// layer's wrapper.
///
/// ```
/// use std::time::Duration;
/// use buttress_core::reject::CircuitOpen;
/// use buttress_core::telemetry::Name;
///
/// let err: Box<dyn std::error::Error + Send + Sync> =
///     Box::new(CircuitOpen::new(Name::new("payments"), Some(Duration::from_secs(5))));
/// let open = err.downcast_ref::<CircuitOpen>().unwrap();
/// assert_eq!(open.retry_after(), Some(Duration::from_secs(5)));
/// assert_eq!(err.to_string(), "circuit breaker \"payments\" is open; next probe in 5s");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitOpen {
    name: Name,
    retry_after: Option<Duration>,
}

impl CircuitOpen {
    /// A rejection by the breaker `name`, whose next probe is `retry_after`
    /// away (`None`: unknown, as when the breaker is forced open or every
    /// half-open probe is taken).
    #[must_use]
    pub const fn new(name: Name, retry_after: Option<Duration>) -> Self {
        Self { name, retry_after }
    }

    /// The breaker that rejected.
    #[must_use]
    pub const fn name(&self) -> Name {
        self.name
    }

    /// How long until the breaker lets a probe through, if known.
    #[must_use]
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            Some(d) => write!(
                f,
                "circuit breaker {:?} is open; next probe in {d:?}",
                self.name
            ),
            None => write!(f, "circuit breaker {:?} is open", self.name),
        }
    }
}

impl Error for CircuitOpen {}

/// The limiter shed the call without calling the inner service: the
/// concurrency limit was reached (with a queue: the queue was full, or no
/// permit came free within the maximum wait).
///
/// It names the limiter that shed (a [`Name`] is a `&'static str`, so the
/// rejection is two words and boxing it is one small allocation). The HTTP
/// answers can add a `Retry-After` if you want one.
///
/// ```
/// use buttress_core::reject::Overloaded;
/// use buttress_core::telemetry::Name;
///
/// let err: Box<dyn std::error::Error + Send + Sync> = Box::new(Overloaded::new(Name::new("api")));
/// assert_eq!(err.downcast_ref::<Overloaded>().unwrap().name().as_str(), "api");
/// assert_eq!(err.to_string(), "overloaded: concurrency limit \"api\" reached");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Overloaded {
    name: Name,
}

impl Overloaded {
    /// A rejection by the limiter `name`.
    #[must_use]
    pub const fn new(name: Name) -> Self {
        Self { name }
    }

    /// The limiter that shed the call.
    #[must_use]
    pub const fn name(&self) -> Name {
        self.name
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "overloaded: concurrency limit {:?} reached", self.name)
    }
}

impl Error for Overloaded {}

/// The client-side throttle rejected the call locally, without sending it.
///
/// It names the throttle that rejected.
///
/// ```
/// use buttress_core::reject::Throttled;
/// use buttress_core::telemetry::Name;
///
/// let err: Box<dyn std::error::Error + Send + Sync> = Box::new(Throttled::new(Name::new("search")));
/// assert!(err.is::<Throttled>());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Throttled {
    name: Name,
}

impl Throttled {
    /// A local rejection by the throttle `name`.
    #[must_use]
    pub const fn new(name: Name) -> Self {
        Self { name }
    }

    /// The throttle that rejected.
    #[must_use]
    pub const fn name(&self) -> Name {
        self.name
    }
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "throttled by {:?}: rejected locally, the backend has been rejecting",
            self.name
        )
    }
}

impl Error for Throttled {}

/// A layer's time bound ran out and the work under it was dropped: a
/// retry's deadline (the request's total time budget, passed while an
/// attempt was in flight or the layer was waiting to retry), or a cache's
/// load timeout (found in the source chain of the cache's `LoadTimedOut`).
/// The HTTP answer is 504, the gRPC one `DEADLINE_EXCEEDED`.
///
/// ```
/// use buttress_core::reject::DeadlineExceeded;
/// use buttress_core::telemetry::Name;
///
/// let err: Box<dyn std::error::Error + Send + Sync> = Box::new(DeadlineExceeded::new(Name::new("client")));
/// assert!(err.is::<DeadlineExceeded>());
/// assert_eq!(err.to_string(), "deadline exceeded in \"client\"");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadlineExceeded {
    name: Name,
}

impl DeadlineExceeded {
    /// The time bound of the layer `name` (a retry, a cache) passed.
    #[must_use]
    pub const fn new(name: Name) -> Self {
        Self { name }
    }

    /// The layer whose deadline passed.
    #[must_use]
    pub const fn name(&self) -> Name {
        self.name
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deadline exceeded in {:?}", self.name)
    }
}

impl Error for DeadlineExceeded {}

/// The rate limit rejected the call without calling the inner service:
/// the key's quota is spent, and the next request for that key is allowed
/// after [`retry_after`](Self::retry_after).
///
/// The HTTP answer is `429 Too Many Requests` with `Retry-After`, the gRPC
/// one `RESOURCE_EXHAUSTED` with `grpc-retry-pushback-ms`. It names the
/// limiter, not the key (a key may be a tenant's secret).
///
/// ```
/// use std::time::Duration;
/// use buttress_core::BoxError;
/// use buttress_core::reject::{RateLimited, RejectionKind, rejection};
/// use buttress_core::telemetry::Name;
///
/// let err: BoxError = Box::new(RateLimited::new(Name::new("api"), Duration::from_millis(250)));
/// assert_eq!(err.downcast_ref::<RateLimited>().unwrap().retry_after(), Duration::from_millis(250));
/// assert_eq!(err.to_string(), "rate limited by \"api\"; next request allowed in 250ms");
/// let r = rejection(&err).unwrap();
/// assert_eq!(r.kind(), RejectionKind::RateLimited);
/// assert_eq!(r.retry_after(), Some(Duration::from_millis(250)));
/// assert!(r.is_refusal() && r.may_retry());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimited {
    name: Name,
    retry_after: Duration,
}

impl RateLimited {
    /// A rejection by the rate limit `name`; the key's next request is
    /// allowed `retry_after` from now.
    #[must_use]
    pub const fn new(name: Name, retry_after: Duration) -> Self {
        Self { name, retry_after }
    }

    /// The rate limit that rejected.
    #[must_use]
    pub const fn name(&self) -> Name {
        self.name
    }

    /// The wait before the key's next allowed request.
    #[must_use]
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limited by {:?}; next request allowed in {:?}",
            self.name, self.retry_after
        )
    }
}

impl Error for RateLimited {}

/// Which layer refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// [`CircuitOpen`].
    CircuitOpen,
    /// [`Overloaded`].
    Overloaded,
    /// [`Throttled`].
    Throttled,
    /// [`DeadlineExceeded`].
    DeadlineExceeded,
    /// [`RateLimited`].
    RateLimited,
}

/// What a rejection found by [`rejection`] says: which layer refused
/// (its kind and its instance's name), and after how long the caller may
/// try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    kind: RejectionKind,
    name: Name,
    retry_after: Option<Duration>,
}

impl Rejection {
    /// Which kind of layer refused.
    #[must_use]
    pub const fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The name of the layer instance that refused.
    #[must_use]
    pub const fn name(&self) -> Name {
        self.name
    }

    /// How long until trying again can succeed, when the layer knows
    /// (an open breaker's next probe, a rate limit's next allowed
    /// request); `None` when it does not.
    #[must_use]
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether the layer refused the call before it was sent (an open
    /// breaker, a shed, a throttle, a rate limit): such a result says nothing about the
    /// dependency's health. A passed deadline is not a refusal: the
    /// dependency was too slow.
    #[must_use]
    pub const fn is_refusal(&self) -> bool {
        !matches!(self.kind, RejectionKind::DeadlineExceeded)
    }

    /// Whether the same request may be sent again at all:
    /// [`DeadlineExceeded`] means its time is spent.
    #[must_use]
    pub const fn may_retry(&self) -> bool {
        !matches!(self.kind, RejectionKind::DeadlineExceeded)
    }
}

/// The outcome a health-accounting layer (a breaker, a limit, a throttle)
/// records for a result whose error, if any, is `err`, and that its
/// classifier called `outcome`: a failure that is another buttress layer's
/// [refusal](Rejection::is_refusal) (the call never reached the
/// dependency) is [`Ignored`](Outcome::Ignored), so one layer never
/// counts another's rejection against the dependency, whatever the order
/// of the stack.
///
/// ```
/// use buttress_core::BoxError;
/// use buttress_core::classify::Outcome;
/// use buttress_core::reject::{DeadlineExceeded, Overloaded, accounted};
/// use buttress_core::telemetry::Name;
///
/// let shed: BoxError = Box::new(Overloaded::new(Name::new("api")));
/// assert_eq!(accounted(Outcome::Failure, Some(&shed)), Outcome::Ignored);
/// let late: BoxError = Box::new(DeadlineExceeded::new(Name::new("client")));
/// assert_eq!(accounted(Outcome::Failure, Some(&late)), Outcome::Failure);
/// let io: BoxError = "connection reset".into();
/// assert_eq!(accounted(Outcome::Failure, Some(&io)), Outcome::Failure);
/// ```
#[inline]
#[must_use]
pub fn accounted(outcome: Outcome, err: Option<&BoxError>) -> Outcome {
    match (outcome, err) {
        (Outcome::Failure, Some(e)) if rejection(e).is_some_and(|r| r.is_refusal()) => {
            Outcome::Ignored
        }
        _ => outcome,
    }
}

/// The first buttress rejection in `err`'s chain (itself, then each
/// `source()`), if any.
#[must_use]
pub fn rejection(err: &BoxError) -> Option<Rejection> {
    rejection_in(&**err)
}

/// [`rejection`] for any error, not only a boxed one.
#[must_use]
pub fn rejection_in(err: &(dyn Error + 'static)) -> Option<Rejection> {
    chain(err).find_map(|e| {
        let (kind, name, retry_after) = if let Some(open) = e.downcast_ref::<CircuitOpen>() {
            (RejectionKind::CircuitOpen, open.name, open.retry_after())
        } else if let Some(o) = e.downcast_ref::<Overloaded>() {
            (RejectionKind::Overloaded, o.name, None)
        } else if let Some(t) = e.downcast_ref::<Throttled>() {
            (RejectionKind::Throttled, t.name, None)
        } else if let Some(d) = e.downcast_ref::<DeadlineExceeded>() {
            (RejectionKind::DeadlineExceeded, d.name, None)
        } else if let Some(l) = e.downcast_ref::<RateLimited>() {
            (RejectionKind::RateLimited, l.name, Some(l.retry_after))
        } else {
            return None;
        };
        Some(Rejection {
            kind,
            name,
            retry_after,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n() -> Name {
        Name::new("the-layer")
    }

    #[derive(Debug)]
    struct Wrapped(BoxError);
    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "wrapped: {}", self.0)
        }
    }
    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn every_rejection_is_found_bare_and_wrapped() {
        let cases: [(BoxError, RejectionKind, Option<Duration>); 5] = [
            (
                Box::new(CircuitOpen::new(n(), Some(Duration::from_secs(3)))),
                RejectionKind::CircuitOpen,
                Some(Duration::from_secs(3)),
            ),
            (
                Box::new(Overloaded::new(n())),
                RejectionKind::Overloaded,
                None,
            ),
            (
                Box::new(Throttled::new(n())),
                RejectionKind::Throttled,
                None,
            ),
            (
                Box::new(DeadlineExceeded::new(n())),
                RejectionKind::DeadlineExceeded,
                None,
            ),
            (
                Box::new(RateLimited::new(n(), Duration::from_millis(40))),
                RejectionKind::RateLimited,
                Some(Duration::from_millis(40)),
            ),
        ];
        for (err, kind, after) in cases {
            let wrapped: BoxError = Box::new(Wrapped(Box::new(Wrapped(err))));
            let r = rejection(&wrapped).expect("found through two wrappers");
            assert_eq!((r.kind(), r.retry_after()), (kind, after));
            assert_eq!(r.name(), n(), "the rejection names its instance");
            assert_eq!(r.may_retry(), kind != RejectionKind::DeadlineExceeded);
            assert_eq!(r.is_refusal(), kind != RejectionKind::DeadlineExceeded);
        }
        assert_eq!(rejection(&"refused".into()), None);
    }

    #[test]
    fn the_outermost_rejection_wins() {
        let err: BoxError = Box::new(Wrapped(Box::new(Overloaded::new(n()))));
        let outer: BoxError = Box::new(Wrapped(err));
        assert_eq!(rejection(&outer).unwrap().kind(), RejectionKind::Overloaded);
    }
}
