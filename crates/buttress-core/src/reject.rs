//! The rejections every buttress layer returns: one vocabulary, so that any
//! layer (a retry, a cache, the HTTP mapping) recognises another's refusal
//! however many wrappers it went through.
//!
//! | type | layer | retry after |
//! |---|---|---|
//! | [`CircuitOpen`] | circuit breaker | the time to the next probe, when known |
//! | [`Overloaded`] | concurrency limit | unknown |
//! | [`Throttled`] | client-side throttle | unknown |
//! | [`DeadlineExceeded`] | retry deadline | never (the time is spent) |
//!
//! [`rejection`] finds one anywhere in an error's `source()` chain and
//! says what it is and when the caller may try again. Each layer crate
//! re-exports its own type.
//!
//! ```
//! use std::time::Duration;
//! use buttress_core::BoxError;
//! use buttress_core::reject::{CircuitOpen, RejectionKind, rejection};
//!
//! let err: BoxError = Box::new(CircuitOpen::new(Some(Duration::from_secs(5))));
//! let r = rejection(&err).unwrap();
//! assert_eq!(r.kind(), RejectionKind::CircuitOpen);
//! assert_eq!(r.retry_after(), Some(Duration::from_secs(5)));
//! assert!(rejection(&"connection reset".into()).is_none());
//! ```

use std::error::Error;
use std::fmt;
use std::time::Duration;

use crate::BoxError;
use crate::error::chain;

/// The breaker rejected the call without calling the inner service.
///
/// Returned boxed as the service's error (a `BoxError`); find it with
/// [`rejection`] or [`find`](crate::error::find), also inside another
/// layer's wrapper.
///
/// ```
/// use std::time::Duration;
/// use buttress_core::reject::CircuitOpen;
///
/// let err: Box<dyn std::error::Error + Send + Sync> = Box::new(CircuitOpen::new(Some(Duration::from_secs(5))));
/// let open = err.downcast_ref::<CircuitOpen>().unwrap();
/// assert_eq!(open.retry_after(), Some(Duration::from_secs(5)));
/// assert_eq!(err.to_string(), "circuit breaker is open; next probe in 5s");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitOpen {
    retry_after: Option<Duration>,
}

impl CircuitOpen {
    /// A rejection whose next probe is `retry_after` away (`None`: unknown,
    /// as when the breaker is forced open or every half-open probe is taken).
    #[must_use]
    pub const fn new(retry_after: Option<Duration>) -> Self {
        Self { retry_after }
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
            Some(d) => write!(f, "circuit breaker is open; next probe in {d:?}"),
            None => f.write_str("circuit breaker is open"),
        }
    }
}

impl Error for CircuitOpen {}

/// The limiter shed the call without calling the inner service: the
/// concurrency limit was reached (with a queue: the queue was full, or no
/// permit came free within the maximum wait).
///
/// Zero-sized, so boxing it allocates nothing and shedding stays cheaper
/// than serving (tower's `load_shed::error::Overloaded` is zero-sized for
/// the same reason). The HTTP answers can add a `Retry-After` if you want
/// one.
///
/// ```
/// use buttress_core::reject::Overloaded;
///
/// let err: Box<dyn std::error::Error + Send + Sync> = Box::new(Overloaded::new());
/// assert!(err.downcast_ref::<Overloaded>().is_some());
/// assert_eq!(err.to_string(), "overloaded: concurrency limit reached");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Overloaded {
    _private: (),
}

impl Overloaded {
    /// A rejection at the concurrency limit.
    #[must_use]
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("overloaded: concurrency limit reached")
    }
}

impl Error for Overloaded {}

/// The client-side throttle rejected the call locally, without sending it.
///
/// Zero-sized: boxing it allocates nothing.
///
/// ```
/// use buttress_core::reject::Throttled;
///
/// let err: Box<dyn std::error::Error + Send + Sync> = Box::new(Throttled::new());
/// assert!(err.is::<Throttled>());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Throttled {
    _private: (),
}

impl Throttled {
    /// A local rejection.
    #[must_use]
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("throttled: rejected locally, the backend has been rejecting")
    }
}

impl Error for Throttled {}

/// The request's total time budget ran out while an attempt was in flight
/// or the layer was waiting to retry; the attempt was dropped.
///
/// ```
/// use buttress_core::reject::DeadlineExceeded;
///
/// let err: Box<dyn std::error::Error + Send + Sync> = Box::new(DeadlineExceeded::new());
/// assert!(err.is::<DeadlineExceeded>());
/// assert_eq!(err.to_string(), "request deadline exceeded");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeadlineExceeded {
    _private: (),
}

impl DeadlineExceeded {
    /// The error.
    #[must_use]
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request deadline exceeded")
    }
}

impl Error for DeadlineExceeded {}

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
}

/// What a rejection found by [`rejection`] says: which layer refused, and
/// after how long the caller may try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    kind: RejectionKind,
    retry_after: Option<Duration>,
}

impl Rejection {
    /// Which layer refused.
    #[must_use]
    pub const fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// How long until trying again can succeed, when the layer knows
    /// (an open breaker's next probe); `None` when it does not.
    #[must_use]
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether the same request may be sent again at all:
    /// [`DeadlineExceeded`] means its time is spent.
    #[must_use]
    pub const fn may_retry(&self) -> bool {
        !matches!(self.kind, RejectionKind::DeadlineExceeded)
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
        let (kind, retry_after) = if let Some(open) = e.downcast_ref::<CircuitOpen>() {
            (RejectionKind::CircuitOpen, open.retry_after())
        } else if e.is::<Overloaded>() {
            (RejectionKind::Overloaded, None)
        } else if e.is::<Throttled>() {
            (RejectionKind::Throttled, None)
        } else if e.is::<DeadlineExceeded>() {
            (RejectionKind::DeadlineExceeded, None)
        } else {
            return None;
        };
        Some(Rejection { kind, retry_after })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let cases: [(BoxError, RejectionKind, Option<Duration>); 4] = [
            (
                Box::new(CircuitOpen::new(Some(Duration::from_secs(3)))),
                RejectionKind::CircuitOpen,
                Some(Duration::from_secs(3)),
            ),
            (Box::new(Overloaded::new()), RejectionKind::Overloaded, None),
            (Box::new(Throttled::new()), RejectionKind::Throttled, None),
            (
                Box::new(DeadlineExceeded::new()),
                RejectionKind::DeadlineExceeded,
                None,
            ),
        ];
        for (err, kind, after) in cases {
            let wrapped: BoxError = Box::new(Wrapped(Box::new(Wrapped(err))));
            let r = rejection(&wrapped).expect("found through two wrappers");
            assert_eq!((r.kind(), r.retry_after()), (kind, after));
            assert_eq!(r.may_retry(), kind != RejectionKind::DeadlineExceeded);
        }
        assert_eq!(rejection(&"refused".into()), None);
    }

    #[test]
    fn the_outermost_rejection_wins() {
        let err: BoxError = Box::new(Wrapped(Box::new(Overloaded::new())));
        let outer: BoxError = Box::new(Wrapped(err));
        assert_eq!(rejection(&outer).unwrap().kind(), RejectionKind::Overloaded);
    }
}
