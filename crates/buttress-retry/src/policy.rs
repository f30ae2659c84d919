//! [`RetryPolicy`]: what to retry and when, its builder and its shared state.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use buttress_core::BoxError;
use buttress_core::classify::{Classification, Classify, ErrorsAsFailures};
use buttress_core::reject::rejection;
use buttress_core::time::Instant;
use metrics::Counter;

use crate::backoff::{Random, Schedule};
use crate::budget::{KeyedBudgets, RetryBudget};
use crate::error::{BudgetExhausted, Taken};
use crate::future::Backoff;
use crate::replay::{CloneRequest, Deadline, Replay, later};

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
    pub(crate) name: Arc<str>,
}

struct Telemetry {
    attempts: Counter,
    retries: Counter,
    budget_exhausted: Counter,
    deadline_stops: Counter,
}

impl Telemetry {
    fn new(name: &str) -> Self {
        let label = name.to_owned();
        Self {
            attempts: metrics::counter!("buttress_retry_attempts_total", "retry" => label.clone()),
            retries: metrics::counter!("buttress_retry_retries_total", "retry" => label.clone()),
            budget_exhausted: metrics::counter!("buttress_retry_budget_exhausted_total", "retry" => label.clone()),
            deadline_stops: metrics::counter!("buttress_retry_deadline_stops_total", "retry" => label),
        }
    }
}

#[derive(Default)]
struct Stats {
    retries: AtomicU64,
    budget_exhausted: AtomicU64,
    deadline_stops: AtomicU64,
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
    name: Arc<str>,
    stats: Stats,
    telemetry: Telemetry,
}

/// One request's state, from its first attempt to its last.
#[derive(Clone, Copy, Debug, Default)]
struct Session {
    /// Attempts finished.
    attempts: u32,
    /// The decorrelated jitters' previous value.
    prev: f64,
    deadline: Option<Instant>,
    attempt_start: Option<Instant>,
    /// The request's budget key, with per-key budgets.
    key: Option<u64>,
}

/// Counts kept by a [`RetryPolicy`], read with [`RetryPolicy::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryStats {
    /// Retries made.
    pub retries: u64,
    /// Retryable failures not retried because the budget was empty.
    pub budget_exhausted: u64,
    /// Retryable failures not retried because the deadline would not allow
    /// another attempt. (Requests cut short by their deadline fail with
    /// [`DeadlineExceeded`](crate::DeadlineExceeded) and are not counted here.)
    pub deadline_stops: u64,
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
/// use buttress_retry::{BoxErrors, RetryPolicy};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # async fn f() {
/// let policy = RetryPolicy::builder().build().unwrap();
/// let svc = ServiceBuilder::new()
///     .retry(policy) // tower's method: use `RetryLayer::new(policy)`
///     .service(BoxErrors::new(service_fn(|n: u32| async move { Ok::<_, &str>(n) })));
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
    /// The policy for a validated configuration.
    pub(crate) fn from_config(c: Config<C, R>) -> Self {
        let telemetry = Telemetry::new(&c.name);
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
                name: c.name,
                stats: Stats::default(),
                telemetry,
            }),
            session: Session::default(),
        }
    }
    /// The policy's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
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
        let s = &self.shared.stats;
        RetryStats {
            retries: s.retries.load(Ordering::Relaxed),
            budget_exhausted: s.budget_exhausted.load(Ordering::Relaxed),
            deadline_stops: s.deadline_stops.load(Ordering::Relaxed),
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

    fn count_deadline_stop(&self) {
        self.shared
            .stats
            .deadline_stops
            .fetch_add(1, Ordering::Relaxed);
        self.shared.telemetry.deadline_stops.increment(1);
    }

    /// Starts a session: deposits, counts, fixes the deadline.
    #[inline]
    fn begin<Req>(&mut self, req: &Req)
    where
        R: Replay<Req>,
    {
        let s = &*self.shared;
        match &s.keyed {
            None => {
                if let Some(budget) = &s.budget {
                    budget.deposit();
                }
            }
            Some(keyed) => {
                let key = s.replay.budget_key(req);
                if self.session.key != key {
                    self.session.key = key;
                }
                let deposited = key.and_then(|k| keyed.with(k, RetryBudget::deposit));
                if deposited.is_none()
                    && let Some(budget) = &s.budget
                {
                    budget.deposit();
                }
            }
        }
        s.telemetry.attempts.increment(1);
        // This runs on the service's own policy, which tower then copies
        // into the response future: write the session only when it
        // changes, so the copy does not wait on fresh narrow stores (a
        // store-forwarding stall that cost about 20 ns here).
        let upstream = s.replay.deadline(req);
        if s.deadline.is_none() && upstream.is_none() {
            if self.session.deadline.is_some() {
                self.session.deadline = None;
            }
            return;
        }
        let now = Instant::now();
        self.session.attempt_start = Some(now);
        self.session.deadline = match (s.deadline.map(|d| later(now, d)), upstream) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

impl<C, R> RetryPolicy<C, R> {
    /// Whether, and after how long, to retry after `result`.
    #[inline]
    pub(crate) fn retry<Req, Res>(
        &mut self,
        req: &mut Req,
        result: &mut Result<Res, BoxError>,
    ) -> Option<Backoff>
    where
        C: Classify<Res, BoxError>,
        R: Replay<Req>,
    {
        let verdict = self.shared.classifier.classify(result);
        if !verdict.is_retryable() {
            return None;
        }
        self.retry_slow(req, result, verdict)
    }

    /// Starts a session on the first call, and copies `req` for another
    /// attempt unless this is the last.
    #[inline]
    pub(crate) fn clone_request<Req>(&mut self, req: &Req) -> Option<Req>
    where
        R: Replay<Req>,
    {
        if self.session.attempts == 0 {
            self.begin(req);
        } else if self.session.deadline.is_some() {
            self.session.attempt_start = Some(Instant::now());
        }
        if self.session.attempts + 1 >= self.shared.max_attempts {
            return None; // the last attempt: nothing to keep
        }
        self.shared.replay.replay(req)
    }
}

impl<C, R> RetryPolicy<C, R> {
    /// A retryable result: decide whether, and after how long.
    #[inline(never)]
    fn retry_slow<Req, Res>(
        &mut self,
        req: &mut Req,
        result: &mut Result<Res, BoxError>,
        verdict: Classification,
    ) -> Option<Backoff>
    where
        R: Replay<Req>,
    {
        let s = &*self.shared;
        // A buttress rejection (an open breaker, a shed or throttled call)
        // is never retried before its `retry_after`: not at all when it has
        // none or when the wait is longer than `max_retry_after`, and (below)
        // not when the wait would pass the deadline.
        let mut asked = verdict.retry_after();
        if let Err(e) = result
            && let Some(rejected) = rejection(e)
        {
            match rejected.retry_after() {
                Some(after) if rejected.may_retry() && after <= s.max_retry_after => {
                    asked = Some(asked.map_or(after, |a| a.max(after)));
                }
                _ => {
                    tracing::debug!(retry = %s.name, kind = ?rejected.kind(), "not retried: a rejection with no wait to honour");
                    return None;
                }
            }
        }
        let n = self.session.attempts;
        self.session.attempts += 1;
        if self.session.attempts >= s.max_attempts {
            return None;
        }
        if !s.replay.can_replay(req) {
            tracing::debug!(retry = %s.name, "not retried: the request cannot be replayed");
            return None;
        }
        let delay = match asked {
            Some(asked) => asked.min(s.max_retry_after),
            None => s.schedule.delay(n, &mut self.session.prev, &*s.rng),
        };
        if !delay.is_zero() && tokio::runtime::Handle::try_current().is_err() {
            tracing::warn!(retry = %s.name, "not retried: no tokio runtime to wait in");
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
                self.count_deadline_stop();
                tracing::debug!(retry = %s.name, ?delay, ?needed, "not retried: the deadline is too close");
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
            s.stats.budget_exhausted.fetch_add(1, Ordering::Relaxed);
            s.telemetry.budget_exhausted.increment(1);
            tracing::debug!(retry = %s.name, "not retried: retry budget exhausted");
            if let Err(e) = result {
                let last = std::mem::replace(e, Box::new(Taken));
                *e = Box::new(BudgetExhausted::new(last));
            }
            return None;
        }
        if let (Some(deadline), Some(at)) = (self.session.deadline, start) {
            s.replay.stamp(req, Deadline::at(deadline), at);
        }
        s.stats.retries.fetch_add(1, Ordering::Relaxed);
        s.telemetry.retries.increment(1);
        s.telemetry.attempts.increment(1);
        tracing::debug!(retry = %s.name, attempt = n + 2, ?delay, "retrying");
        Some(if delay.is_zero() {
            Backoff::ready()
        } else {
            Backoff::sleep(tokio::time::sleep(delay))
        })
    }
}
