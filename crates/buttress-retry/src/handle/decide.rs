//! What a [`RetryPolicy`] decides for each request: when it starts
//! (deposit, deadline), whether and after how long to retry each result,
//! and how the request ends in its counts.

use std::sync::atomic::Ordering;
use std::time::Duration;

use buttress_core::BoxError;
use buttress_core::classify::{Classification, Classify, Outcome};
use buttress_core::reject::rejection;
use buttress_core::time::Instant;

use super::RetryPolicy;
use crate::attempt::AttemptRequest;
use crate::budget::RetryBudget;
use crate::error::{BudgetExhausted, Taken};
use crate::future::Backoff;
use crate::replay::{Deadline, Replay, later};
use crate::service::Start;
use crate::telemetry::RetryOutcome;

impl<C, R> RetryPolicy<C, R> {
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
    /// comes first, counted from the service's own clock read for this
    /// request (see [`Start`]) or, without one, from now.
    #[inline(never)]
    fn start_deadline(&mut self, upstream: Option<Instant>) {
        let now = Start::take().unwrap_or_else(Instant::now);
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
