//! [`RetryPolicy`]: the retry layer's handle (its configuration, budget,
//! random source and counts, shared by clones) and [`RetryPolicySnapshot`];
//! what it decides for each request is in `decide`.

mod decide;

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use buttress_core::ConfigError;
use buttress_core::classify::ErrorsAsFailures;
use buttress_core::telemetry::{Name, Publish, Registration};
use buttress_core::time::Instant;

pub(crate) use self::decide::AttemptResult;
use crate::backoff::{Random, Schedule};
use crate::budget::{KeyedBudgets, RetryBudget};
use crate::config::{Config, RetryPolicyBuilder};
use crate::replay::CloneRequest;
use crate::telemetry::{RetryCounts, RetryOutcome};

pub(crate) struct Shared<C, R> {
    schedule: Schedule,
    max_attempts: u32,
    max_retry_after: Duration,
    budget: Option<RetryBudget>,
    keyed: Option<KeyedBudgets>,
    pub(crate) deadline: Option<Duration>,
    min_attempt_time: Duration,
    rng: Arc<dyn Random>,
    classifier: C,
    pub(crate) replay: R,
    /// The effective name.
    pub(crate) name: Name,
    pub(crate) counts: Arc<RetryCounts>,
}

/// One request's state, from its first attempt to its last.
#[derive(Clone, Copy, Debug, Default)]
struct Session {
    /// Attempts finished.
    attempts: u32,
    /// A request's policy (in its response future) whose last result has
    /// not been counted yet.
    open: bool,
    /// The decorrelated jitters' previous value.
    prev: f64,
    deadline: Option<Instant>,
    attempt_start: Option<Instant>,
    /// The request's budget key, with per-key budgets.
    key: Option<u64>,
}

/// A retry policy's counts at one moment, from [`RetryPolicy::snapshot`]:
/// the figures its metrics publish, counted since the policy was built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicySnapshot {
    /// Requests that succeeded on their first attempt.
    pub succeeded_first_try: u64,
    /// Requests that succeeded after one retry or more.
    pub succeeded_after_retry: u64,
    /// Requests that failed without being retried: the failure was not
    /// retryable, or could not be retried (budget, deadline, a request
    /// that cannot be copied, a rejection with no wait to honour,
    /// `max_attempts` of 1).
    pub failed_not_retried: u64,
    /// Requests that failed after one retry or more.
    pub failed_after_retry: u64,
    /// Attempts sent, first attempts and retries. A request's first
    /// attempt is counted when the request ends (in its outcome, or when it
    /// is dropped before its last result), a retry when it is sent.
    pub attempts: u64,
    /// Retries made.
    pub retries: u64,
    /// Retryable failures not retried because the budget was empty.
    pub budget_exhausted: u64,
    /// Retryable failures not retried because the deadline would not allow
    /// another attempt. (Requests cut short by their deadline fail with
    /// [`DeadlineExceeded`](crate::DeadlineExceeded) and are not counted here.)
    pub deadline_stops: u64,
    /// Requests that failed with [`DeadlineExceeded`](crate::DeadlineExceeded):
    /// the deadline passed while an attempt was in flight or the layer was
    /// waiting to retry. They are in none of the four outcomes above.
    pub deadline_exceeded: u64,
    /// Retries the policy's own budget can give now; `None` without one.
    pub budget_available: Option<u64>,
    /// Per-key budgets made so far (see
    /// [`RetryPolicyBuilder::budget_per_key`]).
    pub keyed_budgets: usize,
}

impl RetryPolicySnapshot {
    /// Requests finished with an outcome: the four outcomes together
    /// (requests cut short by their deadline are in `deadline_exceeded`).
    #[must_use]
    pub fn requests(&self) -> u64 {
        self.succeeded_first_try
            .saturating_add(self.succeeded_after_retry)
            .saturating_add(self.failed_not_retried)
            .saturating_add(self.failed_after_retry)
    }
}

/// The retry policy: retries what its classifier calls retryable, with
/// backoff and jitter, within a budget and a deadline. Used through
/// [`RetryLayer`](crate::RetryLayer) (or `ServiceBuilderExt::retries` in
/// the `buttress` crate); build one with [`RetryPolicy::builder`].
///
/// It is also a handle: clones share the configuration, the budget, the
/// random source and the counts ([`snapshot`](Self::snapshot)).
///
/// # Not a `tower::retry::Policy`
///
/// [`RetryService`](crate::RetryService) drives tower's own
/// [`Retry`](tower::retry::Retry) with it, and adds the deadline's timer
/// (an attempt in flight at the deadline is dropped). So that the timer
/// can never be left out by accident, the policy itself does not implement
/// tower's `Policy`: tower's `ServiceBuilder::retry(policy)` builds, but
/// the service it makes cannot be called.
///
/// ```compile_fail,E0277
/// use buttress_retry::RetryPolicy;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # async fn f() {
/// let policy = RetryPolicy::builder().build().unwrap();
/// let svc = ServiceBuilder::new()
///     .retry(policy) // tower's method: use `RetryLayer::new(policy)`
///     .service(service_fn(|n: u32| async move { Ok::<_, tower::BoxError>(n) }));
/// let _ = svc.oneshot(1).await;
/// # }
/// ```
pub struct RetryPolicy<C = ErrorsAsFailures, R = CloneRequest> {
    pub(crate) shared: Arc<Shared<C, R>>,
    session: Session,
}

impl<C, R> Clone for RetryPolicy<C, R> {
    #[inline]
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            session: self.session,
        }
    }
}

impl<C: fmt::Debug, R: fmt::Debug> fmt::Debug for RetryPolicy<C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &*self.shared;
        f.debug_struct("RetryPolicy")
            .field("name", &s.name)
            .field("schedule", &s.schedule)
            .field("max_attempts", &s.max_attempts)
            .field("max_retry_after", &s.max_retry_after)
            .field("budget", &s.budget)
            .field("deadline", &s.deadline)
            .field("classifier", &s.classifier)
            .field("replay", &s.replay)
            .finish_non_exhaustive()
    }
}

impl<C, R> RetryPolicy<C, R> {
    /// The policy for a validated configuration: claims its name and
    /// registers its counts for publication.
    fn from_config(c: Config<C, R>) -> Self {
        buttress_core::telemetry::register_catalog(crate::METRICS);
        let reg = Registration::new("retry", c.name);
        let name = reg.name();
        let counts = Arc::new(RetryCounts::new(reg, c.budget.clone()));
        counts
            .registration()
            .attach(Arc::downgrade(&counts) as Weak<dyn Publish>);
        Self {
            shared: Arc::new(Shared {
                schedule: c.schedule,
                max_attempts: c.max_attempts,
                max_retry_after: c.max_retry_after,
                budget: c.budget,
                keyed: c.keyed,
                deadline: c.deadline,
                min_attempt_time: c.min_attempt_time,
                rng: c.rng,
                classifier: c.classifier,
                replay: c.replay,
                name,
                counts,
            }),
            session: Session::default(),
        }
    }

    /// The policy's effective name: the one set with
    /// [`RetryPolicyBuilder::name`] (or the source line that
    /// called [`RetryPolicy::builder`]), with a `#2`, `#3`… suffix when
    /// another live retry policy already had it. It is the `name` label of
    /// the policy's metrics, the `name` field of its tracing events and
    /// spans, and the name in its [`DeadlineExceeded`](crate::DeadlineExceeded).
    #[must_use]
    pub fn name(&self) -> Name {
        self.shared.name
    }

    /// The budget, if the policy has one.
    #[must_use]
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.as_ref()
    }

    /// The policy's counts, and its budgets' state.
    #[must_use]
    pub fn snapshot(&self) -> RetryPolicySnapshot {
        let s = &*self.shared;
        let c = &*s.counts;
        RetryPolicySnapshot {
            succeeded_first_try: c.outcome(RetryOutcome::SucceededFirstTry),
            succeeded_after_retry: c.outcome(RetryOutcome::SucceededAfterRetry),
            failed_not_retried: c.outcome(RetryOutcome::FailedNotRetried),
            failed_after_retry: c.outcome(RetryOutcome::FailedAfterRetry),
            attempts: c.attempts(),
            retries: c.retries.load(Ordering::Relaxed),
            budget_exhausted: c.budget_exhausted.load(Ordering::Relaxed),
            deadline_stops: c.deadline_stops.load(Ordering::Relaxed),
            deadline_exceeded: c.deadline_exceeded.load(Ordering::Relaxed),
            budget_available: s.budget.as_ref().map(RetryBudget::available),
            keyed_budgets: s.keyed.as_ref().map_or(0, KeyedBudgets::len),
        }
    }

    /// The backoff delays (before any server-requested delay) the next
    /// request would wait before each of its `retries` retries, drawn from
    /// the policy's random source: with a [seed](RetryPolicyBuilder::seed), an
    /// exact sequence to check in a test.
    #[must_use]
    pub fn delays(&self, retries: u32) -> Vec<Duration> {
        let mut prev = 0.0;
        (0..retries)
            .map(|n| self.shared.schedule.delay(n, &mut prev, &*self.shared.rng))
            .collect()
    }
}

impl RetryPolicy {
    /// A builder with every default, the policy named after the source line
    /// that calls this unless [named](RetryPolicyBuilder::name).
    #[must_use]
    #[track_caller]
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder::new()
    }
}

impl<C, R> RetryPolicyBuilder<C, R> {
    /// Validates the configuration and builds the policy.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting (see
    /// [`RetryPolicyBuilder`]'s setters): an empty `name`; `max_attempts`
    /// outside `1..=100`; a `max_delay` below the `base_delay`; a zero
    /// `base_delay` with decorrelated jitter; a zero `max_retry_after`; a
    /// zero `deadline`, or a `min_attempt_time` that leaves no room in it;
    /// zero `max_keys` or a bad template in `budget_per_key`.
    pub fn build(self) -> Result<RetryPolicy<C, R>, ConfigError> {
        Ok(RetryPolicy::from_config(self.validate()?))
    }
}
