//! [`RetryPolicy`]: what to retry and when, its builder and its shared state.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use buttress_core::BoxError;
use buttress_core::classify::{Classification, Classify, ErrorsAsFailures, Outcome};
use buttress_core::reject::rejection;
use buttress_core::telemetry::{Name, Publish, Registration};
use buttress_core::time::Instant;

use crate::attempt::AttemptRequest;
use crate::backoff::{Random, Schedule};
use crate::budget::{KeyedBudgets, RetryBudget};
use crate::error::{BudgetExhausted, Taken};
use crate::future::Backoff;
use crate::replay::{CloneRequest, Deadline, Replay, later};
use crate::telemetry::{RetryCounts, RetryOutcome};

/// A validated configuration: everything a [`RetryPolicy`] needs, built by
/// [`Builder::build`](crate::Builder::build).
pub(crate) struct Config<C, R> {
    pub(crate) schedule: Schedule,
    pub(crate) max_attempts: u32,
    pub(crate) max_retry_after: Duration,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) keyed: Option<KeyedBudgets>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) min_attempt_time: Duration,
    pub(crate) rng: Arc<dyn Random>,
    pub(crate) classifier: C,
    pub(crate) replay: R,
    /// The name asked for (the effective one may get a `#n` suffix).
    pub(crate) name: Name,
}

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

/// Counts kept by a [`RetryPolicy`], read with [`RetryPolicy::stats`]:
/// the figures its metrics publish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryStats {
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
}

/// The retry policy: retries what its classifier calls retryable, with
/// backoff and jitter, within a budget and a deadline. Used through
/// [`RetryLayer`](crate::RetryLayer) (or `ServiceBuilderExt::retries` in
/// the `buttress` crate); build one with [`RetryPolicy::builder`].
///
/// It is also a handle: clones share the configuration, the budget, the
/// random source and the counts ([`stats`](Self::stats)).
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
    pub(crate) fn from_config(c: Config<C, R>) -> Self {
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
    /// [`Builder::name`](crate::Builder::name) (or the source line that
    /// called [`RetryPolicy::builder`]), with a `#2`, `#3`… suffix when
    /// another live retry policy already had it. It is the `name` label of
    /// the policy's metrics, the `name` field of its tracing events and
    /// spans, and the name in its [`DeadlineExceeded`](crate::DeadlineExceeded).
    #[must_use]
    pub fn name(&self) -> Name {
        self.shared.name
    }

    /// How many per-key budgets exist (see
    /// [`Builder::budget_per_key`](crate::Builder::budget_per_key)).
    #[must_use]
    pub fn keyed_budgets(&self) -> usize {
        self.shared.keyed.as_ref().map_or(0, KeyedBudgets::len)
    }

    /// The budget, if the policy has one.
    #[must_use]
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.as_ref()
    }

    /// Counts since the policy was built.
    #[must_use]
    pub fn stats(&self) -> RetryStats {
        let c = &*self.shared.counts;
        RetryStats {
            succeeded_first_try: c.outcome(RetryOutcome::SucceededFirstTry),
            succeeded_after_retry: c.outcome(RetryOutcome::SucceededAfterRetry),
            failed_not_retried: c.outcome(RetryOutcome::FailedNotRetried),
            failed_after_retry: c.outcome(RetryOutcome::FailedAfterRetry),
            attempts: c.attempts(),
            retries: c.retries.load(Ordering::Relaxed),
            budget_exhausted: c.budget_exhausted.load(Ordering::Relaxed),
            deadline_stops: c.deadline_stops.load(Ordering::Relaxed),
            deadline_exceeded: c.deadline_exceeded.load(Ordering::Relaxed),
        }
    }

    /// The backoff delays (before any server-requested delay) the next
    /// request would wait before each of its `retries` retries, drawn from
    /// the policy's random source: with a [seed](crate::Builder::jitter_seed), an
    /// exact sequence to check in a test.
    #[must_use]
    pub fn delays(&self, retries: u32) -> Vec<Duration> {
        let mut prev = 0.0;
        (0..retries)
            .map(|n| self.shared.schedule.delay(n, &mut prev, &*self.shared.rng))
            .collect()
    }

    /// Starts a session: deposits, fixes the deadline. The common case (one
    /// budget, no deadline) is inline, the rest out of line.
    #[inline]
    fn begin<Req>(&mut self, req: &Req)
    where
        R: Replay<Req>,
    {
        if self.shared.keyed.is_some() {
            self.deposit_keyed(req);
        } else if let Some(budget) = &self.shared.budget {
            budget.deposit();
        }
        let s = &*self.shared;
        let upstream = s.replay.deadline(req);
        if s.deadline.is_none() && upstream.is_none() {
            // This runs on the service's own policy, which tower then
            // copies into the response future: write the session only when
            // it changes, so that the copy does not read back fresh narrow
            // stores (a store-forwarding stall).
            if self.session.deadline.is_some() {
                self.session.deadline = None;
            }
            return;
        }
        self.start_deadline(upstream);
    }

    /// Deposits into the request's own budget, or the policy's when the
    /// request has no key or its key has no budget.
    #[inline(never)]
    fn deposit_keyed<Req>(&mut self, req: &Req)
    where
        R: Replay<Req>,
    {
        let s = &*self.shared;
        let key = s.replay.budget_key(req);
        if self.session.key != key {
            self.session.key = key;
        }
        let deposited = key.and_then(|k| {
            s.keyed
                .as_ref()
                .and_then(|keyed| keyed.with(k, RetryBudget::deposit))
        });
        if deposited.is_none()
            && let Some(budget) = &s.budget
        {
            budget.deposit();
        }
    }

    /// Fixes the request's deadline: the policy's, or `upstream`, whichever
    /// comes first.
    #[inline(never)]
    fn start_deadline(&mut self, upstream: Option<Instant>) {
        let now = Instant::now();
        self.session.attempt_start = Some(now);
        self.session.deadline = match (self.shared.deadline.map(|d| later(now, d)), upstream) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// One attempt's result as the policy sees it: the inner service's own
/// `Result`, or, once the policy has needed it boxed (to look for a
/// rejection in it, to wrap it in [`BudgetExhausted`]), its error boxed.
pub(crate) type AttemptResult<Res, E> = Result<Result<Res, E>, BoxError>;

impl<C, R> RetryPolicy<C, R> {
    /// Whether, and after how long, to retry after `result`. Counts the
    /// request's outcome when `result` is its last.
    #[inline]
    pub(crate) fn retry<Req, Res, E>(
        &mut self,
        req: &mut AttemptRequest<Req>,
        result: &mut AttemptResult<Res, E>,
    ) -> Option<Backoff>
    where
        C: Classify<Res, E>,
        R: Replay<Req>,
        E: Into<BoxError>,
    {
        let verdict = match result {
            Ok(raw) => self.shared.classifier.classify(raw),
            // Boxed only by this policy, after classifying: nothing to retry.
            Err(_) => Classification::failure(),
        };
        if !verdict.is_retryable() {
            self.finish(verdict.outcome() == Outcome::Failure);
            return None;
        }
        let backoff = self.retry_slow(req, result, verdict);
        if backoff.is_none() {
            // A retryable result not retried: the request failed.
            self.finish(true);
        }
        backoff
    }

    /// Counts the end of the request whose last result has come.
    #[inline]
    fn finish(&mut self, failed: bool) {
        let retried = self.session.attempts > 0;
        self.session.open = false;
        self.shared
            .counts
            .finished(RetryOutcome::of(failed, retried));
    }

    /// Marks this copy as one request's policy, open until its last result
    /// is counted.
    #[inline]
    pub(crate) fn open(&mut self) {
        self.session.open = true;
    }

    /// Counts a request dropped before its last result came (its caller
    /// gave up, or its deadline passed), so that its first attempt is
    /// counted all the same.
    #[inline]
    pub(crate) fn close(&mut self) {
        if self.session.open {
            self.session.open = false;
            self.shared
                .counts
                .unfinished
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Starts a session on the first call, and copies `req` for another
    /// attempt unless this is the last. Always hands tower a request, an
    /// empty one when there is no copy, so that tower shows the policy
    /// every attempt's result, the last included.
    #[inline]
    pub(crate) fn clone_request<Req>(
        &mut self,
        req: &AttemptRequest<Req>,
    ) -> Option<AttemptRequest<Req>>
    where
        R: Replay<Req>,
    {
        let next = req.attempt.saturating_add(1);
        let Some(inner) = &req.request else {
            return Some(AttemptRequest::new(None, next));
        };
        if self.session.attempts == 0 {
            self.begin(inner);
        } else if self.session.deadline.is_some() {
            self.session.attempt_start = Some(Instant::now());
        }
        if self.session.attempts + 1 >= self.shared.max_attempts {
            // The last attempt: nothing to keep.
            return Some(AttemptRequest::new(None, next));
        }
        Some(AttemptRequest::new(self.shared.replay.replay(inner), next))
    }
}

/// `result`'s error boxed in place (a no-op when it is a response or is
/// boxed already), and a reference to it when it is an error.
fn boxed<Res, E: Into<BoxError>>(result: &mut AttemptResult<Res, E>) -> Option<&mut BoxError> {
    if matches!(result, Ok(Err(_))) {
        // A `Box` of a zero-sized type does not allocate.
        let taken = std::mem::replace(result, Err(Box::new(Taken)));
        *result = match taken {
            Ok(Err(e)) => Err(e.into()),
            other => other,
        };
    }
    result.as_mut().err()
}

impl<C, R> RetryPolicy<C, R> {
    /// A retryable result: decide whether, and after how long.
    #[inline(never)]
    fn retry_slow<Req, Res, E>(
        &mut self,
        req: &mut AttemptRequest<Req>,
        result: &mut AttemptResult<Res, E>,
        verdict: Classification,
    ) -> Option<Backoff>
    where
        R: Replay<Req>,
        E: Into<BoxError>,
    {
        let s = &*self.shared;
        // A buttress rejection (an open breaker, a shed or throttled call)
        // is never retried before its `retry_after`: not at all when it has
        // none or when the wait is longer than `max_retry_after`, and (below)
        // not when the wait would pass the deadline.
        let mut asked = verdict.retry_after();
        if let Some(e) = boxed(result)
            && let Some(rejected) = rejection(e)
        {
            match rejected.retry_after() {
                Some(after) if rejected.may_retry() && after <= s.max_retry_after => {
                    asked = Some(asked.map_or(after, |a| a.max(after)));
                }
                _ => {
                    tracing::debug!(name = %s.name, kind = ?rejected.kind(), "not retried: a rejection with no wait to honour");
                    return None;
                }
            }
        }
        let n = self.session.attempts;
        // No copy: the last attempt, or a request that must be sent once.
        let req = req.request.as_mut()?;
        if !s.replay.can_replay(req) {
            tracing::debug!(name = %s.name, "not retried: the request cannot be replayed");
            return None;
        }
        let delay = match asked {
            Some(asked) => asked.min(s.max_retry_after),
            None => s.schedule.delay(n, &mut self.session.prev, &*s.rng),
        };
        if !delay.is_zero() && tokio::runtime::Handle::try_current().is_err() {
            tracing::warn!(name = %s.name, "not retried: no tokio runtime to wait in");
            return None;
        }
        let mut start = None;
        if let Some(deadline) = self.session.deadline {
            let now = Instant::now();
            let previous = self
                .session
                .attempt_start
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            let needed = previous.max(s.min_attempt_time);
            let at = later(now, delay);
            if later(at, needed) >= deadline {
                s.counts.deadline_stops.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(name = %s.name, ?delay, ?needed, "not retried: the deadline is too close");
                return None;
            }
            start = Some(at);
        }
        let keyed = match (&s.keyed, self.session.key) {
            (Some(keyed), Some(key)) => keyed.get(key),
            _ => None,
        };
        if let Some(budget) = keyed.as_ref().or(s.budget.as_ref())
            && !budget.withdraw()
        {
            s.counts.budget_exhausted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(name = %s.name, "not retried: retry budget exhausted");
            if let Err(e) = result {
                let last = std::mem::replace(e, Box::new(Taken));
                *e = Box::new(BudgetExhausted::new(last));
            }
            return None;
        }
        if let (Some(deadline), Some(at)) = (self.session.deadline, start) {
            s.replay.stamp(req, Deadline::at(deadline), at);
        }
        self.session.attempts = n + 1;
        s.counts.retries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(name = %s.name, attempt = n + 2, ?delay, "retrying");
        Some(if delay.is_zero() {
            Backoff::ready()
        } else {
            Backoff::sleep(tokio::time::sleep(delay))
        })
    }
}
