//! The configuration error every buttress builder returns.

use std::fmt;

/// A rejected configuration: which layer, which setting, and what is wrong
/// with it. Every buttress builder's `build()` returns it, naming the
/// setter at fault, so bad configuration fails at start-up rather than at
/// request time.
///
/// ```
/// use buttress_core::ConfigError;
///
/// let err = ConfigError::new("circuit breaker", "failure_rate_threshold", "must be within 0.0..=1.0, got 1.5");
/// assert_eq!(err.field(), "failure_rate_threshold");
/// assert_eq!(
///     err.to_string(),
///     "invalid circuit breaker configuration: `failure_rate_threshold` must be within 0.0..=1.0, got 1.5"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    layer: &'static str,
    field: &'static str,
    problem: String,
}

impl ConfigError {
    /// An error for `layer` (as it reads in a sentence: `"retry"`,
    /// `"circuit breaker"`), naming the setter `field` and the `problem`.
    #[must_use]
    pub fn new(layer: &'static str, field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            layer,
            field,
            problem: problem.into(),
        }
    }

    /// The name of the builder setting at fault (the setter's name).
    #[must_use]
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The layer whose configuration was rejected.
    #[must_use]
    pub fn layer(&self) -> &'static str {
        self.layer
    }

    /// What is wrong with the setting.
    #[must_use]
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} configuration: `{}` {}",
            self.layer, self.field, self.problem
        )
    }
}

impl std::error::Error for ConfigError {}
