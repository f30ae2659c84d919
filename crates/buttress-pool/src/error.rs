//! The pool's own failures. Exhaustion is not among them: a checkout that
//! waited its bound out while every connection was in use, or that found
//! the waiter cap reached, fails with the shared
//! [`Overloaded`](buttress_core::reject::Overloaded) rejection, so the one
//! HTTP/gRPC mapping answers 503 / `RESOURCE_EXHAUSTED`.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use buttress_core::telemetry::Name;

/// No connection could be had within the checkout timeout while the pool
/// was *not* full: it was (re)connecting to the database and could not,
/// so the database is unreachable or slow to accept connections, rather
/// than the pool exhausted.
///
/// ```
/// # use std::time::Duration;
/// # use buttress_core::telemetry::Name;
/// use buttress_pool::ConnectFailed;
///
/// let err = ConnectFailed::new(Name::new("db"), Duration::from_millis(500), Some("connection refused".into()));
/// assert_eq!(
///     err.to_string(),
///     "pool \"db\": no connection within 500ms: cannot connect: connection refused"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectFailed {
    name: Name,
    waited: Duration,
    cause: Option<String>,
}

impl ConnectFailed {
    /// The pool `name` waited `waited` for a connection; `cause` is the
    /// last connect (or health-check) error it saw, if any.
    #[must_use]
    pub const fn new(name: Name, waited: Duration, cause: Option<String>) -> Self {
        Self {
            name,
            waited,
            cause,
        }
    }

    /// The pool that failed.
    #[must_use]
    pub const fn name(&self) -> Name {
        self.name
    }

    /// How long the checkout waited.
    #[must_use]
    pub const fn waited(&self) -> Duration {
        self.waited
    }

    /// The last connection error the pool saw (its `Debug` text), if any.
    #[must_use]
    pub fn cause(&self) -> Option<&str> {
        self.cause.as_deref()
    }
}

impl fmt::Display for ConnectFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pool {:?}: no connection within {:?}",
            self.name, self.waited
        )?;
        match &self.cause {
            Some(c) => write!(f, ": cannot connect: {c}"),
            None => f.write_str(": still connecting"),
        }
    }
}

impl Error for ConnectFailed {}
