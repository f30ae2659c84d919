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

/// The retry layer's rejection when a request's deadline passes, from the
/// shared vocabulary in [`buttress_core::reject`].
pub use buttress_core::reject::DeadlineExceeded;

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
