//! [`RetryPolicy`]: what to retry and when, its builder and its shared state.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use buttress_core::BoxError;
use buttress_core::classify::{Classification, Classify, ErrorsAsFailures};
use buttress_core::reject::rejection;
use buttress_core::rng::FastRng;
use buttress_core::time::Instant;
use metrics::Counter;

use crate::backoff::{BackoffKind, Jitter, Random, Schedule};
use crate::budget::{BudgetBuilder, KeyedBudgets, RetryBudget};
use crate::error::{BudgetExhausted, ConfigError, Taken};
use crate::future::Backoff;
use crate::replay::{CloneRequest, Deadline, Replay, later};

/// The most attempts (first included) a policy can be configured with.
pub const MAX_ATTEMPTS: u32 = 100;

/// Builds a [`RetryPolicy`]. Every setter documents its default and where
/// it comes from; [`build`](Self::build) validates them all.
///
/// ```
/// use std::time::Duration;
/// use buttress_retry::{BackoffKind, Jitter, RetryPolicy};
///
/// let policy = RetryPolicy::builder()
///     .name("inventory")
///     .max_attempts(4)
///     .backoff(BackoffKind::Exponential)
///     .jitter(Jitter::Equal)
///     .base_delay(Duration::from_millis(50))
///     .max_delay(Duration::from_secs(2))
///     .deadline(Duration::from_secs(5))
///     .build()
///     .expect("valid configuration");
/// assert_eq!(policy.name(), "inventory");
/// ```
#[derive(Clone)]
pub struct Builder<C = ErrorsAsFailures, R = CloneRequest> {
    settings: Settings,
    classifier: C,
    replay: R,
}

/// Everything a [`Builder`] holds but its classifier and replay, so the
/// setters that change those two types move the rest in one piece.
#[derive(Clone)]
struct Settings {
    name: Arc<str>,
    kind: BackoffKind,
    jitter: Jitter,
    base: Duration,
    cap: Duration,
    max_attempts: u32,
    max_retry_after: Duration,
    budget: Option<RetryBudget>,
    default_budget: bool,
    keyed: Option<(BudgetBuilder, usize)>,
    deadline: Option<Duration>,
    min_attempt_time: Duration,
    rng: Option<Arc<dyn Random>>,
    seed: Option<u64>,
}

impl<C: fmt::Debug, R: fmt::Debug> fmt::Debug for Builder<C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.settings.name)
            .field("backoff", &self.settings.kind)
            .field("jitter", &self.settings.jitter)
            .field("base_delay", &self.settings.base)
            .field("max_delay", &self.settings.cap)
            .field("max_attempts", &self.settings.max_attempts)
            .field("max_retry_after", &self.settings.max_retry_after)
            .field("budget", &self.settings.budget)
            .field("deadline", &self.settings.deadline)
            .field("min_attempt_time", &self.settings.min_attempt_time)
            .field("classifier", &self.classifier)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// A builder with every default.
    #[must_use]
    pub fn new() -> Self {
        Self {
            settings: Settings {
                name: Arc::from("default"),
                kind: BackoffKind::Exponential,
                jitter: Jitter::Full,
                base: Duration::from_millis(25),
                cap: Duration::from_millis(250),
                max_attempts: 3,
                max_retry_after: Duration::from_secs(30),
                budget: None,
                default_budget: true,
                keyed: None,
                deadline: None,
                min_attempt_time: Duration::ZERO,
                rng: None,
                seed: None,
            },
            classifier: ErrorsAsFailures::new(),
            replay: CloneRequest,
        }
    }
}

impl<C, R> Builder<C, R> {
    /// The policy's name: the `retry` label on its metrics and the field on
    /// its tracing events. Default: `"default"`.
    #[must_use]
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// How the delay grows. Default: [`BackoffKind::Exponential`] (AWS,
    /// Envoy, gRPC and tower all back off exponentially).
    #[must_use]
    pub fn backoff(mut self, kind: BackoffKind) -> Self {
        self.settings.kind = kind;
        self
    }

    /// How the delay is randomised. Default: [`Jitter::Full`], which AWS's
    /// "Exponential Backoff and Jitter" found best and Envoy uses.
    #[must_use]
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.settings.jitter = jitter;
        self
    }

    /// The first delay, and the unit of the others. Default: 25 ms, Envoy's
    /// default retry `base_interval`.
    #[must_use]
    pub fn base_delay(mut self, base: Duration) -> Self {
        self.settings.base = base;
        self
    }

    /// The longest backoff delay. Default: 250 ms, Envoy's default
    /// `max_interval` (10 × the base interval).
    #[must_use]
    pub fn max_delay(mut self, cap: Duration) -> Self {
        self.settings.cap = cap;
        self
    }

    /// Attempts per request, the first one included (`1..=100`; 1 turns
    /// retries off). Default: 3, Google SRE's advice ("at most three
    /// attempts per request").
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.settings.max_attempts = attempts;
        self
    }

    /// The longest server-requested delay (`Retry-After`,
    /// `grpc-retry-pushback-ms`) honoured as asked; a longer one is cut to
    /// this. The server's delay replaces the backoff and is never jittered.
    /// Default: 30 s (our choice: a request waiting longer in-process is
    /// usually better failed).
    #[must_use]
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.settings.max_retry_after = max;
        self
    }

    /// Shares `budget` (one per dependency). Default: a budget of the
    /// policy's own with Finagle's defaults (20 % of requests plus 10 per
    /// second, over 10 s); see [`RetryBudget`].
    #[must_use]
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.settings.budget = Some(budget);
        self.settings.default_budget = false;
        self
    }

    /// Retries without a budget: only [`max_attempts`](Self::max_attempts)
    /// limits them. A dependency that goes down then sees up to
    /// `max_attempts ×` its load.
    #[must_use]
    pub fn without_budget(mut self) -> Self {
        self.settings.budget = None;
        self.settings.default_budget = false;
        self
    }

    /// One budget per key: each request the [`Replay`] gives a
    /// [`budget_key`](Replay::budget_key) (wrap it in
    /// [`KeyedReplay`](crate::KeyedReplay), for instance with
    /// `buttress_core::http::HostKey` for a budget per host) deposits into
    /// and withdraws from its key's budget, made from `template` on the
    /// key's first request; at most `max_keys` budgets, after which new keys
    /// share the policy's own budget, as do requests without a key. Default:
    /// off (one budget for every request). Costs a read lock and a hash
    /// lookup per request.
    #[must_use]
    pub fn budget_per_key(mut self, template: BudgetBuilder, max_keys: usize) -> Self {
        self.settings.keyed = Some((template, max_keys));
        self
    }

    /// A total time budget per request, all attempts and waits included.
    /// The layer never sleeps past it, never starts an attempt that cannot
    /// finish in it (see [`min_attempt_time`](Self::min_attempt_time)),
    /// fails with [`DeadlineExceeded`](crate::DeadlineExceeded) when it
    /// passes, and shows it to the inner service as a [`Deadline`]. An
    /// earlier deadline already carried by the request wins. Default: none
    /// (a request's deadline from upstream is still honoured). Costs a clock
    /// read and a timer per request.
    #[must_use]
    pub fn deadline(mut self, total: Duration) -> Self {
        self.settings.deadline = Some(total);
        self
    }

    /// The least time an attempt is assumed to need: no retry starts unless
    /// the time left after the backoff exceeds both this and the duration
    /// of the request's previous attempt. Default: zero (only the previous
    /// attempt's duration counts).
    #[must_use]
    pub fn min_attempt_time(mut self, time: Duration) -> Self {
        self.settings.min_attempt_time = time;
        self
    }

    /// Seeds the jitter, so tests see exact delays. Default: seeded from the
    /// process's entropy.
    #[must_use]
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.settings.seed = Some(seed);
        self
    }

    /// Draws jitter from `rng` instead of the built-in generator.
    #[must_use]
    pub fn rng(mut self, rng: impl Random) -> Self {
        self.settings.rng = Some(Arc::new(rng));
        self
    }

    /// Judges results with `classifier`: which are retryable, and after
    /// what server-requested delay. It sees `Result<Response, BoxError>`.
    /// Default: [`ErrorsAsFailures`] (every `Err` retryable, no `Ok`); for
    /// HTTP, `buttress_core::http::HttpClassifier` (429, 502, 503, 504 and
    /// transport errors, `Retry-After`); for gRPC,
    /// `buttress_core::grpc::GrpcClassifier`.
    #[must_use]
    pub fn classifier<C2>(self, classifier: C2) -> Builder<C2, R> {
        Builder {
            settings: self.settings,
            classifier,
            replay: self.replay,
        }
    }

    /// Copies requests with `replay`, which also decides which requests may
    /// be sent twice. Default: [`CloneRequest`] (`Clone` requests, all
    /// retryable); for HTTP, [`HttpReplay`](crate::http::HttpReplay)
    /// (idempotent methods or an `Idempotency-Key` only).
    #[must_use]
    pub fn replay<R2>(self, replay: R2) -> Builder<C, R2> {
        Builder {
            settings: self.settings,
            classifier: self.classifier,
            replay,
        }
    }

    /// Validates the configuration and builds the policy.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting: `max_attempts`
    /// outside `1..=100`, a `max_delay` below the `base_delay`, a zero
    /// `base_delay` with decorrelated jitter, or a zero `deadline`.
    pub fn build(self) -> Result<RetryPolicy<C, R>, ConfigError> {
        if self.settings.max_attempts == 0 || self.settings.max_attempts > MAX_ATTEMPTS {
            return Err(crate::error::config_error(
                "max_attempts",
                format!(
                    "must be within 1..={MAX_ATTEMPTS}, got {}",
                    self.settings.max_attempts
                ),
            ));
        }
        if self.settings.cap < self.settings.base {
            return Err(crate::error::config_error(
                "max_delay",
                format!(
                    "({:?}) must not be below base_delay ({:?})",
                    self.settings.cap, self.settings.base
                ),
            ));
        }
        if self.settings.base.is_zero()
            && matches!(
                self.settings.jitter,
                Jitter::Decorrelated | Jitter::DecorrelatedV2
            )
        {
            return Err(crate::error::config_error(
                "base_delay",
                "must be greater than zero with decorrelated jitter",
            ));
        }
        if self.settings.deadline == Some(Duration::ZERO) {
            return Err(crate::error::config_error(
                "deadline",
                "must be greater than zero",
            ));
        }
        let keyed = match self.settings.keyed {
            Some((_, 0)) => {
                return Err(crate::error::config_error(
                    "budget_per_key",
                    "max_keys must be at least 1",
                ));
            }
            Some((template, max_keys)) => {
                template.clone().build().map_err(|e| {
                    crate::error::config_error("budget_per_key", format!("bad template: {e}"))
                })?;
                Some(KeyedBudgets::new(template, max_keys))
            }
            None => None,
        };
        let budget = match (self.settings.budget, self.settings.default_budget) {
            (Some(b), _) => Some(b),
            (None, true) => Some(RetryBudget::default()),
            (None, false) => None,
        };
        let rng: Arc<dyn Random> = match (self.settings.rng, self.settings.seed) {
            (Some(rng), _) => rng,
            (None, Some(seed)) => Arc::new(FastRng::seeded(seed)),
            (None, None) => Arc::new(FastRng::from_entropy()),
        };
        let telemetry = Telemetry::new(&self.settings.name);
        Ok(RetryPolicy {
            shared: Arc::new(Shared {
                schedule: Schedule {
                    kind: self.settings.kind,
                    jitter: self.settings.jitter,
                    base: self.settings.base,
                    cap: self.settings.cap,
                },
                max_attempts: self.settings.max_attempts,
                max_retry_after: self.settings.max_retry_after,
                budget,
                keyed,
                deadline: self.settings.deadline,
                min_attempt_time: self.settings.min_attempt_time,
                rng,
                classifier: self.classifier,
                replay: self.replay,
                name: self.settings.name,
                stats: Stats::default(),
                telemetry,
            }),
            session: Session::default(),
        })
    }
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

impl RetryPolicy {
    /// A builder with every default.
    #[must_use]
    pub fn builder() -> Builder {
        Builder::new()
    }
}

impl<C, R> RetryPolicy<C, R> {
    /// The policy's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// How many per-key budgets exist (see
    /// [`Builder::budget_per_key`]).
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
    /// the policy's random source: with a [seed](Builder::jitter_seed), an
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
