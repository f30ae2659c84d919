//! The breaker's errors: [`CircuitOpen`] at request time, [`ConfigError`] at build time.

use std::fmt;
use std::time::Duration;

/// The breaker rejected the call without calling the inner service.
///
/// Returned boxed as the service's error (a `BoxError`); match it with
/// `err.downcast_ref::<CircuitOpen>()`.
///
/// ```
/// use std::time::Duration;
/// use buttress_breaker::CircuitOpen;
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

impl std::error::Error for CircuitOpen {}

pub use buttress_core::ConfigError;

/// A [`ConfigError`] for this crate's builders.
pub(crate) fn config_error(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::new("circuit breaker", field, problem)
}
