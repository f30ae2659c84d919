//! [`RetryPolicyBuilder`]: every setting of a
//! [`RetryPolicy`](crate::RetryPolicy) with its default and source,
//! validated once into a [`Config`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use buttress_core::ConfigError;
use buttress_core::classify::ErrorsAsFailures;
use buttress_core::rng::FastRng;
use buttress_core::telemetry::Name;

use crate::backoff::{BackoffKind, Jitter, Random, Schedule};
use crate::budget::{KeyedBudgets, RetryBudget, RetryBudgetBuilder};
use crate::error::config_error;
use crate::replay::CloneRequest;

/// The most attempts (first included) a policy can be configured with.
pub const MAX_ATTEMPTS: u32 = 100;

/// Builds a [`RetryPolicy`](crate::RetryPolicy). Every setter documents its
/// default and where it comes from; `build` validates them all.
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
pub struct RetryPolicyBuilder<C = ErrorsAsFailures, R = CloneRequest> {
    settings: Settings,
    classifier: C,
    replay: R,
}

/// Everything a [`RetryPolicyBuilder`] holds but its classifier and replay, so the
/// setters that change those two types move the rest in one piece.
#[derive(Clone)]
struct Settings {
    name: Name,
    kind: BackoffKind,
    jitter: Jitter,
    base: Duration,
    cap: Duration,
    max_attempts: u32,
    max_retry_after: Duration,
    budget: Option<RetryBudget>,
    default_budget: bool,
    keyed: Option<(RetryBudgetBuilder, usize)>,
    deadline: Option<Duration>,
    min_attempt_time: Duration,
    rng: Option<Arc<dyn Random>>,
    seed: Option<u64>,
}

impl<C: fmt::Debug, R: fmt::Debug> fmt::Debug for RetryPolicyBuilder<C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyBuilder")
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

impl Default for RetryPolicyBuilder {
    /// [`RetryPolicyBuilder::new`]: named after the caller's source line.
    #[track_caller]
    fn default() -> Self {
        Self::new()
    }
}

impl RetryPolicyBuilder {
    /// A builder with every default, the policy named after the source line
    /// that calls this (see [`name`](Self::name)).
    #[must_use]
    #[track_caller]
    pub fn new() -> Self {
        Self {
            settings: Settings {
                name: Name::caller(),
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

impl<C, R> RetryPolicyBuilder<C, R> {
    /// The policy's name: the `name` label on its metrics, the `name` field
    /// on its tracing events and attempt spans, and the name a
    /// [`DeadlineExceeded`](crate::DeadlineExceeded) carries. A second live
    /// retry policy asking for a name in use gets it with a `#2` suffix (see
    /// [`RetryPolicy::name`](crate::RetryPolicy::name)). Default: the
    /// source location (`file:line`) of the
    /// [`RetryPolicy::builder`](crate::RetryPolicy::builder) call, so two
    /// unnamed policies never share their series.
    #[must_use]
    pub fn name(mut self, name: impl Into<Name>) -> Self {
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
    /// `grpc-retry-pushback-ms`, an open breaker's wait) honoured as asked
    /// (above zero); a longer one is cut to this. The server's delay
    /// replaces the backoff and is never jittered. Default: 30 s (our
    /// choice: a request waiting longer in-process is usually better
    /// failed).
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

    /// One budget per key: each request the [`Replay`](crate::Replay) gives a
    /// [`budget_key`](crate::Replay::budget_key) (wrap it in
    /// [`KeyedReplay`](crate::KeyedReplay), for instance with
    /// `buttress_core::http::HostKey` for a budget per host) deposits into
    /// and withdraws from its key's budget, made from `template` on the
    /// key's first request; at most `max_keys` budgets, after which new keys
    /// share the policy's own budget, as do requests without a key. Default:
    /// off (one budget for every request). Costs a read lock and a hash
    /// lookup per request.
    #[must_use]
    pub fn budget_per_key(mut self, template: RetryBudgetBuilder, max_keys: usize) -> Self {
        self.settings.keyed = Some((template, max_keys));
        self
    }

    /// A total time budget per request, all attempts and waits included.
    /// The layer never sleeps past it, never starts an attempt that cannot
    /// finish in it (see [`min_attempt_time`](Self::min_attempt_time)),
    /// fails with [`DeadlineExceeded`](crate::DeadlineExceeded) when it
    /// passes, and shows it to the inner service as a [`Deadline`](crate::Deadline). An
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
    /// of the request's previous attempt. With a [`deadline`](Self::deadline),
    /// it must be shorter than it. Default: zero (only the previous
    /// attempt's duration counts).
    #[must_use]
    pub fn min_attempt_time(mut self, time: Duration) -> Self {
        self.settings.min_attempt_time = time;
        self
    }

    /// Seeds the jitter, so tests see exact delays. Default: seeded from the
    /// process's entropy.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
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
    /// what server-requested delay. It sees each attempt's result as the
    /// inner service returned it, `Result<S::Response, S::Error>`, like the
    /// breaker's and the limit's classifiers, so one classifier can serve
    /// them all. Whatever it says, a buttress rejection is never retried
    /// before its `retry_after` (see the [crate docs](crate)). Default: [`ErrorsAsFailures`] (every `Err` retryable, no `Ok`); for
    /// HTTP, `buttress_core::http::HttpClassifier` (429, 502, 503, 504 and
    /// transport errors, `Retry-After`); for gRPC,
    /// `buttress_core::grpc::GrpcClassifier`.
    #[must_use]
    pub fn classifier<C2>(self, classifier: C2) -> RetryPolicyBuilder<C2, R> {
        RetryPolicyBuilder {
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
    pub fn replay<R2>(self, replay: R2) -> RetryPolicyBuilder<C, R2> {
        RetryPolicyBuilder {
            settings: self.settings,
            classifier: self.classifier,
            replay,
        }
    }

    /// Checks every setting: the first bad one is a [`ConfigError`]
    /// naming it (listed on `RetryPolicy`'s `build`).
    pub(crate) fn validate(self) -> Result<Config<C, R>, ConfigError> {
        if self.settings.name.as_str().is_empty() {
            return Err(config_error("name", "must not be empty"));
        }
        if self.settings.max_attempts == 0 || self.settings.max_attempts > MAX_ATTEMPTS {
            return Err(config_error(
                "max_attempts",
                format!(
                    "must be within 1..={MAX_ATTEMPTS}, got {}",
                    self.settings.max_attempts
                ),
            ));
        }
        if self.settings.cap < self.settings.base {
            return Err(config_error(
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
            return Err(config_error(
                "base_delay",
                "must be greater than zero with decorrelated jitter",
            ));
        }
        if self.settings.max_retry_after.is_zero() {
            return Err(config_error(
                "max_retry_after",
                "must be greater than zero (zero would turn every server-requested wait into an immediate retry)",
            ));
        }
        if let Some(deadline) = self.settings.deadline {
            if deadline.is_zero() {
                return Err(config_error("deadline", "must be greater than zero"));
            }
            if self.settings.min_attempt_time >= deadline {
                return Err(config_error(
                    "min_attempt_time",
                    format!(
                        "({:?}) must be shorter than the deadline ({deadline:?}): no retry could ever start",
                        self.settings.min_attempt_time
                    ),
                ));
            }
        }
        let keyed = match self.settings.keyed {
            Some((_, 0)) => {
                return Err(config_error(
                    "budget_per_key",
                    "max_keys must be at least 1",
                ));
            }
            Some((template, max_keys)) => {
                template
                    .clone()
                    .build()
                    .map_err(|e| config_error("budget_per_key", format!("bad template: {e}")))?;
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
        Ok(Config {
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
        })
    }
}

/// A validated configuration: everything a
/// [`RetryPolicy`](crate::RetryPolicy) needs, made by
/// [`RetryPolicyBuilder::build`].
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
