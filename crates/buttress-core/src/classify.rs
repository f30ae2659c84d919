//! Outcome classification: what a result means for the layers that watch it.
//!
//! A [`Classification`] answers two independent questions about one
//! `Result<T, E>`:
//!
//! - its [`Outcome`] for health accounting (a circuit breaker, an adaptive
//!   limit): [`Success`](Outcome::Success), [`Failure`](Outcome::Failure) or
//!   [`Ignored`](Outcome::Ignored) (counted nowhere, e.g. a cancelled call);
//! - whether it [is retryable](Classification::is_retryable), and whether the
//!   server asked for a [delay](Classification::retry_after) before the next
//!   attempt (`Retry-After`, `grpc-retry-pushback-ms`).
//!
//! The two axes are separate on purpose: an HTTP 429 is a *success* for a
//! breaker (the server is healthy and answering) and *retryable* after its
//! `Retry-After`; a 500 is a *failure* but, by default, not retryable.

use std::time::Duration;

/// How a result counts for health accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The call succeeded, or failed in a way that says nothing bad about the
    /// callee's health (for HTTP: a 4xx by default).
    Success,
    /// The call failed in a way that counts against the callee's health.
    Failure,
    /// The call is not counted at all (a cancelled call, a status the user
    /// chose to ignore).
    Ignored,
}

/// The verdict on one result: an [`Outcome`], whether a retry may help, and
/// how long the server asked the client to wait first.
///
/// ```
/// use std::time::Duration;
/// use buttress_core::classify::{Classification, Outcome};
///
/// let c = Classification::failure().retryable(true).with_retry_after(Duration::from_secs(2));
/// assert_eq!(c.outcome(), Outcome::Failure);
/// assert!(c.is_retryable());
/// assert_eq!(c.retry_after(), Some(Duration::from_secs(2)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classification {
    outcome: Outcome,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl Classification {
    /// A success, not retryable.
    #[must_use]
    pub const fn success() -> Self {
        Self::new(Outcome::Success)
    }

    /// A failure, not retryable (use [`retryable`](Self::retryable) to change that).
    #[must_use]
    pub const fn failure() -> Self {
        Self::new(Outcome::Failure)
    }

    /// An ignored result, not retryable.
    #[must_use]
    pub const fn ignored() -> Self {
        Self::new(Outcome::Ignored)
    }

    /// A classification with the given outcome, not retryable.
    #[must_use]
    pub const fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            retryable: false,
            retry_after: None,
        }
    }

    /// Marks the result as retryable (or not).
    #[must_use]
    pub const fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Records the delay the server asked for before the next attempt.
    #[must_use]
    pub const fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// How the result counts for health accounting.
    #[must_use]
    pub const fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// Whether another attempt may succeed.
    #[must_use]
    pub const fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The delay the server asked for, if it named one.
    #[must_use]
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// Decides what a `Result<T, E>` means.
///
/// Implemented for [`ErrorsAsFailures`], for the HTTP and gRPC classifiers
/// behind the `http` and `grpc` features, and for any
/// `Fn(&Result<T, E>) -> Classification`, so a one-off rule is a closure:
///
/// ```
/// use buttress_core::classify::{Classification, Classify};
///
/// // Timeouts fail and may be retried; "not found" is a healthy answer.
/// let rule = |r: &Result<u16, String>| match r {
///     Ok(404) | Ok(200) => Classification::success(),
///     Ok(_) => Classification::failure(),
///     Err(e) if e.contains("timeout") => Classification::failure().retryable(true),
///     Err(_) => Classification::failure(),
/// };
/// assert!(rule.classify(&Err("timeout".to_string())).is_retryable());
/// ```
///
/// Classifiers sit on every call's path: keep them cheap and allocation-free.
pub trait Classify<T, E> {
    /// Classifies one result.
    fn classify(&self, result: &Result<T, E>) -> Classification;
}

impl<F, T, E> Classify<T, E> for F
where
    F: Fn(&Result<T, E>) -> Classification,
{
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Classification {
        self(result)
    }
}

/// The classifier for plain results: `Ok` is a success, `Err` a failure.
///
/// Errors are retryable by default (a plain `Result` carries no more
/// information; an `Err` from a client is usually a transport error); turn
/// that off with [`errors_retryable(false)`](Self::errors_retryable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorsAsFailures {
    errors_retryable: bool,
}

impl Default for ErrorsAsFailures {
    fn default() -> Self {
        Self::new()
    }
}

impl ErrorsAsFailures {
    /// `Ok` succeeds; `Err` fails and is retryable.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            errors_retryable: true,
        }
    }

    /// Whether an `Err` is retryable. Default: `true`.
    #[must_use]
    pub const fn errors_retryable(mut self, retryable: bool) -> Self {
        self.errors_retryable = retryable;
        self
    }
}

impl<T, E> Classify<T, E> for ErrorsAsFailures {
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Classification {
        match result {
            Ok(_) => Classification::success(),
            Err(_) => Classification::failure().retryable(self.errors_retryable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_results() {
        let c = ErrorsAsFailures::new();
        assert_eq!(
            Classify::<(), ()>::classify(&c, &Ok(())).outcome(),
            Outcome::Success
        );
        let e = Classify::<(), ()>::classify(&c, &Err(()));
        assert_eq!(e.outcome(), Outcome::Failure);
        assert!(e.is_retryable());
        let c = c.errors_retryable(false);
        assert!(!Classify::<(), ()>::classify(&c, &Err(())).is_retryable());
    }

    #[test]
    fn closures_classify() {
        let rule = |r: &Result<u8, ()>| match r {
            Ok(0) => Classification::ignored(),
            Ok(_) => Classification::success(),
            Err(()) => Classification::failure(),
        };
        assert_eq!(rule.classify(&Ok(0)).outcome(), Outcome::Ignored);
        assert_eq!(rule.classify(&Ok(1)).outcome(), Outcome::Success);
        assert_eq!(rule.classify(&Err(())).outcome(), Outcome::Failure);
    }
}
