//! Errors: the configuration error every buttress builder returns, and
//! [`find`], which looks for an error anywhere in a chain of wrappers.

use std::error::Error;
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

/// How deep [`find`] looks: far deeper than any real chain of wrappers,
/// and a bound for an error whose `source()` chain loops.
const MAX_DEPTH: usize = 64;

/// The first error of type `T` in `err`'s chain: `err` itself, then each
/// [`source`](Error::source) in turn. A rejection wrapped by another layer
/// (a retry's `BudgetExhausted`, a cache's coalesced error) is found the
/// same as a bare one.
///
/// ```
/// use std::fmt;
/// use buttress_core::BoxError;
/// use buttress_core::error::find;
///
/// #[derive(Debug)]
/// struct Refused;
/// impl fmt::Display for Refused {
///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str("refused") }
/// }
/// impl std::error::Error for Refused {}
///
/// #[derive(Debug)]
/// struct Wrapper(BoxError);
/// impl fmt::Display for Wrapper {
///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { write!(f, "wrapped: {}", self.0) }
/// }
/// impl std::error::Error for Wrapper {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> { Some(&*self.0) }
/// }
///
/// let err: BoxError = Box::new(Wrapper(Box::new(Refused)));
/// assert!(err.downcast_ref::<Refused>().is_none());
/// assert!(find::<Refused>(&err).is_some());
/// ```
#[must_use]
pub fn find<T: Error + 'static>(err: &crate::BoxError) -> Option<&T> {
    find_in(&**err)
}

/// [`find`] for any error, not only a boxed one.
#[must_use]
pub fn find_in<'a, T: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a T> {
    chain(err).find_map(|e| e.downcast_ref::<T>())
}

/// `err`, then each `source()` in turn, at most [`MAX_DEPTH`] of them.
pub(crate) fn chain<'a>(
    err: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |&e| e.source()).take(MAX_DEPTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Loop;
    impl fmt::Display for Loop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("loop")
        }
    }
    impl Error for Loop {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self)
        }
    }

    #[test]
    fn a_looping_chain_ends() {
        let err: crate::BoxError = Box::new(Loop);
        assert!(find::<ConfigError>(&err).is_none());
        assert!(find::<Loop>(&err).is_some());
    }
}
