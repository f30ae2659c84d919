//! The limit's errors: [`Overloaded`] at request time, [`ConfigError`] at build time.

use std::fmt;

/// The limiter shed the call without calling the inner service: the
/// concurrency limit was reached (with a queue: the queue was full, or no
/// permit came free within the maximum wait).
///
/// Returned boxed as the service's error (a `BoxError`); match it with
/// `err.downcast_ref::<Overloaded>()`. It is zero-sized, so boxing it
/// allocates nothing and shedding stays cheaper than serving (tower's
/// `load_shed::error::Overloaded` is zero-sized for the same reason). The
/// `http` helpers add a `Retry-After` if you want one.
///
/// ```
/// use buttress_limit::Overloaded;
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

impl std::error::Error for Overloaded {}

pub use buttress_core::ConfigError;

/// A [`ConfigError`] for this crate's builders.
pub(crate) fn config_error(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::new("concurrency limit", field, problem)
}

/// Checks helpers shared by the builders.
pub(crate) fn check_range(
    field: &'static str,
    v: f64,
    lo: f64,
    hi: f64,
    lo_inclusive: bool,
) -> Result<(), ConfigError> {
    let ok = v.is_finite() && v <= hi && if lo_inclusive { v >= lo } else { v > lo };
    if ok {
        Ok(())
    } else {
        let open = if lo_inclusive { "[" } else { "(" };
        Err(crate::error::config_error(
            field,
            format!("must be within {open}{lo}, {hi}], got {v}"),
        ))
    }
}

/// `min <= initial <= max`, `min >= 1`.
pub(crate) fn check_bounds(min: u32, initial: u32, max: u32) -> Result<(), ConfigError> {
    if min == 0 {
        return Err(crate::error::config_error(
            "min_limit",
            "must be at least 1",
        ));
    }
    if max == 0 {
        return Err(crate::error::config_error(
            "max_limit",
            "must be at least 1",
        ));
    }
    if min > max {
        return Err(crate::error::config_error(
            "min_limit",
            format!("({min}) must not exceed max_limit ({max})"),
        ));
    }
    if !(min..=max).contains(&initial) {
        return Err(crate::error::config_error(
            "initial_limit",
            format!("({initial}) must be within min_limit..=max_limit ({min}..={max})"),
        ));
    }
    Ok(())
}
