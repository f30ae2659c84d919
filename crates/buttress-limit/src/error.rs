//! The limit's errors: [`Overloaded`] at request time, [`ConfigError`] at build time.

use std::fmt;
use std::time::Duration;

/// The limiter shed the call without calling the inner service: the
/// concurrency limit was reached (and, with a queue, no permit came free
/// within the maximum wait, or the queue was full), or the client-side
/// throttle rejected it locally.
///
/// Returned boxed as the service's error (a `BoxError`); match it with
/// `err.downcast_ref::<Overloaded>()`.
///
/// ```
/// use buttress_limit::Overloaded;
///
/// let err: Box<dyn std::error::Error + Send + Sync> = Box::new(Overloaded::new());
/// assert!(err.downcast_ref::<Overloaded>().is_some());
/// assert_eq!(err.to_string(), "overloaded: concurrency limit reached");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overloaded {
    kind: Kind,
    retry_after: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Limit,
    QueueTimeout,
    QueueFull,
    Throttled,
}

impl Default for Overloaded {
    fn default() -> Self {
        Self::new()
    }
}

impl Overloaded {
    /// A rejection at the concurrency limit.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            kind: Kind::Limit,
            retry_after: None,
        }
    }

    pub(crate) const fn queue_timeout() -> Self {
        Self {
            kind: Kind::QueueTimeout,
            retry_after: None,
        }
    }

    pub(crate) const fn queue_full() -> Self {
        Self {
            kind: Kind::QueueFull,
            retry_after: None,
        }
    }

    pub(crate) const fn throttled() -> Self {
        Self {
            kind: Kind::Throttled,
            retry_after: None,
        }
    }

    /// Suggests how long the caller should wait before trying again (the
    /// `Retry-After` of the HTTP helper).
    #[must_use]
    pub const fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// How long the caller should wait before trying again, if the limiter
    /// was configured with a hint.
    #[must_use]
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether the call waited in the queue for the maximum wait and then
    /// gave up.
    #[must_use]
    pub const fn is_queue_timeout(&self) -> bool {
        matches!(self.kind, Kind::QueueTimeout)
    }

    /// Whether the client-side throttle rejected the call locally.
    #[must_use]
    pub const fn is_throttled(&self) -> bool {
        matches!(self.kind, Kind::Throttled)
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Limit => "overloaded: concurrency limit reached",
            Kind::QueueTimeout => "overloaded: no permit within the maximum queue wait",
            Kind::QueueFull => "overloaded: concurrency limit reached and the queue is full",
            Kind::Throttled => "overloaded: rejected locally by client-side throttling",
        })
    }
}

impl std::error::Error for Overloaded {}

/// A rejected configuration: which setting, and what is wrong with it.
///
/// ```
/// use buttress_limit::algorithm::Vegas;
///
/// let err = Vegas::builder().max_limit(0).build().unwrap_err();
/// assert_eq!(err.field(), "max_limit");
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
            "invalid concurrency limit configuration: `{}` {}",
            self.field, self.problem
        )
    }
}

impl std::error::Error for ConfigError {}

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
        Err(ConfigError::new(
            field,
            format!("must be within {open}{lo}, {hi}], got {v}"),
        ))
    }
}

/// `min <= initial <= max`, `min >= 1`.
pub(crate) fn check_bounds(min: u32, initial: u32, max: u32) -> Result<(), ConfigError> {
    if min == 0 {
        return Err(ConfigError::new("min_limit", "must be at least 1"));
    }
    if max == 0 {
        return Err(ConfigError::new("max_limit", "must be at least 1"));
    }
    if min > max {
        return Err(ConfigError::new(
            "min_limit",
            format!("({min}) must not exceed max_limit ({max})"),
        ));
    }
    if !(min..=max).contains(&initial) {
        return Err(ConfigError::new(
            "initial_limit",
            format!("({initial}) must be within min_limit..=max_limit ({min}..={max})"),
        ));
    }
    Ok(())
}
