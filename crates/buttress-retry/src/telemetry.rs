//! What the retry and hedge layers count, and how the counts reach the
//! `metrics` recorder: [`METRICS`], and the two instances' counts, which
//! [`Publish`] writes when `buttress_core::telemetry` flushes.

use std::sync::atomic::{AtomicU64, Ordering};

use buttress_core::telemetry::{
    Count, Emit, MetricInfo, MetricKind, Name, Publish, Registration, Unit,
};

use crate::budget::RetryBudget;

/// Every metric this crate emits, each labelled `name` with the layer
/// instance's [`Name`]: the retry's series (`buttress_retry_*`) and the
/// hedge's (`buttress_hedge_*`). Counts are kept in the layers' own memory
/// and published by `buttress_core::telemetry::flush` and its background
/// publisher, so a layer built before the recorder was installed reports
/// into it all the same.
pub static METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: "buttress_retry_requests_total",
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["outcome"],
        help: "Requests the retry layer finished, by outcome: succeeded_first_try, succeeded_after_retry, failed_not_retried, failed_after_retry (requests cut short by the deadline are counted in buttress_retry_deadline_exceeded_total).",
    },
    MetricInfo {
        name: "buttress_retry_attempts_total",
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Attempts sent to the inner service, first attempts and retries.",
    },
    MetricInfo {
        name: "buttress_retry_retries_total",
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Retries sent.",
    },
    MetricInfo {
        name: "buttress_retry_budget_exhausted_total",
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Retryable results not retried because the retry budget was empty.",
    },
    MetricInfo {
        name: "buttress_retry_deadline_stops_total",
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Retryable results not retried because the deadline left no time for the wait and another attempt.",
    },
    MetricInfo {
        name: "buttress_retry_deadline_exceeded_total",
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Requests that failed with DeadlineExceeded: the deadline passed while an attempt was in flight or the layer was waiting to retry.",
    },
    MetricInfo {
        name: "buttress_retry_budget_available",
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        labels: &[],
        help: "Retries the retry policy's own budget can give now (only for a policy with a budget).",
    },
    MetricInfo {
        name: "buttress_hedge_requests_total",
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["outcome"],
        help: "Requests the hedging layer finished, by outcome: primary_won (the first attempt answered), hedge_won, all_failed (every attempt failed; the last failure was returned).",
    },
    MetricInfo {
        name: "buttress_hedge_hedges_total",
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Hedged attempts sent.",
    },
    MetricInfo {
        name: "buttress_hedge_budget_exhausted_total",
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Hedges not sent because the hedge budget was empty.",
    },
    MetricInfo {
        name: "buttress_hedge_delay_seconds",
        kind: MetricKind::Gauge,
        unit: Unit::Seconds,
        labels: &[],
        help: "The delay after which a hedge is sent now (0 while a percentile delay has too few samples to hedge).",
    },
    MetricInfo {
        name: "buttress_hedge_budget_available",
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        labels: &[],
        help: "Hedges the hedge budget can give now.",
    },
];

/// A retried request's end, the `outcome` label of
/// `buttress_retry_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RetryOutcome {
    SucceededFirstTry = 0,
    SucceededAfterRetry = 1,
    FailedNotRetried = 2,
    FailedAfterRetry = 3,
}

impl RetryOutcome {
    const ALL: [Self; 4] = [
        Self::SucceededFirstTry,
        Self::SucceededAfterRetry,
        Self::FailedNotRetried,
        Self::FailedAfterRetry,
    ];

    /// The outcome of a request's final result.
    #[inline]
    pub(crate) const fn of(failed: bool, retried: bool) -> Self {
        match (failed, retried) {
            (false, false) => Self::SucceededFirstTry,
            (false, true) => Self::SucceededAfterRetry,
            (true, false) => Self::FailedNotRetried,
            (true, true) => Self::FailedAfterRetry,
        }
    }

    const fn label(self) -> &'static str {
        match self {
            Self::SucceededFirstTry => "succeeded_first_try",
            Self::SucceededAfterRetry => "succeeded_after_retry",
            Self::FailedNotRetried => "failed_not_retried",
            Self::FailedAfterRetry => "failed_after_retry",
        }
    }
}

/// A retry policy's counts: per-thread stripes for what every request
/// counts, plain atomics for the rest. Not generic, so that the deadline's
/// future can hold it.
///
/// A request's first attempt is counted when the request ends: in its
/// outcome, or in `unfinished` when it is dropped before its last result
/// (a caller that gave up, a deadline); a retry is counted when it is
/// sent. So a request that succeeds first time counts once.
pub(crate) struct RetryCounts {
    reg: Registration,
    outcomes: [Count; 4],
    /// Requests dropped before their last result came.
    pub(crate) unfinished: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) budget_exhausted: AtomicU64,
    pub(crate) deadline_stops: AtomicU64,
    pub(crate) deadline_exceeded: AtomicU64,
    budget: Option<RetryBudget>,
}

impl std::fmt::Debug for RetryCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryCounts")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl RetryCounts {
    /// The counts of the instance `reg` names, publishing `budget`'s level.
    pub(crate) fn new(reg: Registration, budget: Option<RetryBudget>) -> Self {
        Self {
            reg,
            outcomes: std::array::from_fn(|_| Count::new()),
            unfinished: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            budget_exhausted: AtomicU64::new(0),
            deadline_stops: AtomicU64::new(0),
            deadline_exceeded: AtomicU64::new(0),
            budget,
        }
    }

    /// The instance's effective name.
    pub(crate) fn name(&self) -> Name {
        self.reg.name()
    }

    pub(crate) fn registration(&self) -> &Registration {
        &self.reg
    }

    #[inline]
    pub(crate) fn finished(&self, outcome: RetryOutcome) {
        self.outcomes[outcome as usize].incr();
    }

    pub(crate) fn outcome(&self, outcome: RetryOutcome) -> u64 {
        self.outcomes[outcome as usize].get()
    }

    /// Attempts sent: every request's first (counted when the request
    /// ends) and every retry.
    pub(crate) fn attempts(&self) -> u64 {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RetryOutcome::ALL
            .iter()
            .map(|&o| self.outcome(o))
            .fold(load(&self.unfinished), u64::wrapping_add)
            .wrapping_add(load(&self.retries))
    }
}

impl Publish for RetryCounts {
    fn publish(&self, out: &mut Emit<'_>) {
        for o in RetryOutcome::ALL {
            out.counter_with(
                "buttress_retry_requests_total",
                &[("outcome", o.label())],
                self.outcome(o),
            );
        }
        out.counter("buttress_retry_attempts_total", self.attempts());
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.counter("buttress_retry_retries_total", load(&self.retries));
        out.counter(
            "buttress_retry_budget_exhausted_total",
            load(&self.budget_exhausted),
        );
        out.counter(
            "buttress_retry_deadline_stops_total",
            load(&self.deadline_stops),
        );
        out.counter(
            "buttress_retry_deadline_exceeded_total",
            load(&self.deadline_exceeded),
        );
        if let Some(budget) = &self.budget {
            #[allow(clippy::cast_precision_loss)]
            out.gauge("buttress_retry_budget_available", budget.available() as f64);
        }
    }
}

/// A hedged request's end, the `outcome` label of
/// `buttress_hedge_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HedgeOutcome {
    PrimaryWon = 0,
    HedgeWon = 1,
    AllFailed = 2,
}

impl HedgeOutcome {
    const ALL: [Self; 3] = [Self::PrimaryWon, Self::HedgeWon, Self::AllFailed];

    const fn label(self) -> &'static str {
        match self {
            Self::PrimaryWon => "primary_won",
            Self::HedgeWon => "hedge_won",
            Self::AllFailed => "all_failed",
        }
    }
}

/// A hedge policy's counts, its current delay and its budget: what it
/// publishes. Not generic, so that it can be registered.
pub(crate) struct HedgeState {
    reg: Registration,
    /// The current hedge delay in nanoseconds, or [`UNKNOWN_DELAY`].
    pub(crate) delay_nanos: AtomicU64,
    outcomes: [Count; 3],
    pub(crate) fired: AtomicU64,
    pub(crate) exhausted: AtomicU64,
    budget: RetryBudget,
}

/// `HedgeState::delay_nanos` while no delay is known.
pub(crate) const UNKNOWN_DELAY: u64 = u64::MAX;

impl std::fmt::Debug for HedgeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HedgeState")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl HedgeState {
    pub(crate) fn new(reg: Registration, delay_nanos: u64, budget: RetryBudget) -> Self {
        Self {
            reg,
            delay_nanos: AtomicU64::new(delay_nanos),
            outcomes: std::array::from_fn(|_| Count::new()),
            fired: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
            budget,
        }
    }

    /// The instance's effective name.
    pub(crate) fn name(&self) -> Name {
        self.reg.name()
    }

    pub(crate) fn registration(&self) -> &Registration {
        &self.reg
    }

    /// The current hedge delay, if known.
    #[inline]
    pub(crate) fn delay(&self) -> Option<std::time::Duration> {
        match self.delay_nanos.load(Ordering::Relaxed) {
            UNKNOWN_DELAY => None,
            n => Some(std::time::Duration::from_nanos(n)),
        }
    }

    #[inline]
    pub(crate) fn finished(&self, outcome: HedgeOutcome) {
        self.outcomes[outcome as usize].incr();
    }

    pub(crate) fn outcome(&self, outcome: HedgeOutcome) -> u64 {
        self.outcomes[outcome as usize].get()
    }
}

impl Publish for HedgeState {
    fn publish(&self, out: &mut Emit<'_>) {
        for o in HedgeOutcome::ALL {
            out.counter_with(
                "buttress_hedge_requests_total",
                &[("outcome", o.label())],
                self.outcome(o),
            );
        }
        out.counter(
            "buttress_hedge_hedges_total",
            self.fired.load(Ordering::Relaxed),
        );
        out.counter(
            "buttress_hedge_budget_exhausted_total",
            self.exhausted.load(Ordering::Relaxed),
        );
        out.gauge(
            "buttress_hedge_delay_seconds",
            self.delay().map_or(0.0, |d| d.as_secs_f64()),
        );
        #[allow(clippy::cast_precision_loss)]
        out.gauge(
            "buttress_hedge_budget_available",
            self.budget.available() as f64,
        );
    }
}
