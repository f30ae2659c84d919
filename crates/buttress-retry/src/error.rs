//! The retry layer's errors: [`BudgetExhausted`] and [`DeadlineExceeded`] at
//! request time, [`ConfigError`] at build time.

use std::fmt;

use buttress_core::BoxError;

/// A retryable failure was not retried because the retry budget had no
/// retry left to give.
///
/// It wraps the last attempt's error, which [`source`](std::error::Error::source)
/// returns. A retryable *response* (an HTTP 503, a gRPC `UNAVAILABLE`) is
/// handed back unchanged instead: the caller keeps the server's answer, and
/// the refusal shows in the metrics.
///
/// ```
/// use buttress_retry::BudgetExhausted;
///
/// # fn check(err: &tower::BoxError) {
/// if let Some(exhausted) = err.downcast_ref::<BudgetExhausted>() {
///     eprintln!("not retried: {exhausted}; last error: {}", exhausted.last_error());
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct BudgetExhausted {
    last: BoxError,
}

impl BudgetExhausted {
    pub(crate) fn new(last: BoxError) -> Self {
        Self { last }
    }

    /// The error of the last attempt, the one that was not retried.
    #[must_use]
    pub fn last_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.last
    }

    /// The error of the last attempt, owned.
    #[must_use]
    pub fn into_last_error(self) -> BoxError {
        self.last
    }
}

impl fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retry budget exhausted; last attempt failed: {}",
            self.last
        )
    }
}

impl std::error::Error for BudgetExhausted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.last)
    }
}

/// The request's total time budget ran out while an attempt was in flight
/// or the layer was waiting to retry; the attempt was dropped.
///
/// ```
/// use buttress_retry::DeadlineExceeded;
///
/// let err: tower::BoxError = Box::new(DeadlineExceeded::new());
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

impl std::error::Error for DeadlineExceeded {}

pub use buttress_core::ConfigError;

/// A [`ConfigError`] for this crate's builders.
pub(crate) fn config_error(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::new("retry", field, problem)
}

/// A zero-sized stand-in, so an error can be moved out of a `&mut Result`
/// without allocating (a `Box` of a zero-sized type does not allocate).
#[derive(Debug)]
pub(crate) struct Taken;

impl fmt::Display for Taken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(moved)")
    }
}

impl std::error::Error for Taken {}
