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

/// A rejected breaker configuration: which setting, and what is wrong with it.
///
/// ```
/// use buttress_breaker::CircuitBreaker;
///
/// let err = CircuitBreaker::builder().failure_rate_threshold(1.5).build().unwrap_err();
/// assert_eq!(err.field(), "failure_rate_threshold");
/// assert!(err.to_string().contains("1.5"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    problem: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }

    /// The name of the builder setting at fault (the setter's name).
    #[must_use]
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid circuit breaker configuration: `{}` {}",
            self.field, self.problem
        )
    }
}

impl std::error::Error for ConfigError {}
