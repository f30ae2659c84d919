//! The limit's errors: [`Overloaded`] at request time, [`ConfigError`] at build time.

/// The limiter's rejection, from the shared vocabulary in
/// [`buttress_core::reject`].
pub use buttress_core::reject::Overloaded;

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
