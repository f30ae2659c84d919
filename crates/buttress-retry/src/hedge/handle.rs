//! [`HedgePolicy`]: the hedging configuration and its shared state, and
//! [`HedgePolicySnapshot`], its counts.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use buttress_core::ConfigError;
use buttress_core::classify::ErrorsAsFailures;
use buttress_core::histogram::Histogram;
use buttress_core::telemetry::{Name, Publish, Registration};

use super::config::{Config, HedgeDelay, HedgePolicyBuilder};
use crate::budget::RetryBudget;
use crate::replay::CloneRequest;
use crate::telemetry::{HedgeOutcome, HedgeState, UNKNOWN_DELAY};

/// Latencies recorded between two percentile computations.
const RECOMPUTE_EVERY: u64 = 64;
/// Past this many recorded latencies, the histogram is halved.
const DECAY_AT: u64 = 10_000;

/// The hedging configuration and its shared state (latency histogram,
/// budget, counts): the handle behind a [`HedgeLayer`](super::HedgeLayer).
///
/// # Clone
///
/// Clones share everything: one policy per dependency.
pub struct HedgePolicy<C = ErrorsAsFailures, R = CloneRequest> {
    pub(crate) shared: Arc<HedgeShared<C, R>>,
}

/// A hedge policy's counts at one moment, from [`HedgePolicy::snapshot`]:
/// the figures its metrics publish, counted since the policy was built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HedgePolicySnapshot {
    /// Requests answered by their first attempt.
    pub primary_won: u64,
    /// Requests answered by a hedge rather than the first attempt.
    pub hedge_won: u64,
    /// Requests whose every attempt failed (the last failure was returned).
    pub all_failed: u64,
    /// Hedges sent.
    pub hedges: u64,
    /// Hedges not sent because the hedge budget was empty.
    pub budget_exhausted: u64,
    /// The delay after which a hedge is sent now; `None` while a percentile
    /// delay has seen fewer than `min_samples` latencies.
    pub delay: Option<Duration>,
    /// Hedges the budget can give now.
    pub budget_available: u64,
}

impl HedgePolicySnapshot {
    /// Requests finished: the three outcomes together.
    #[must_use]
    pub fn requests(&self) -> u64 {
        self.primary_won
            .saturating_add(self.hedge_won)
            .saturating_add(self.all_failed)
    }
}

pub(crate) struct HedgeShared<C, R> {
    /// Counts and the current delay, published under the policy's name.
    state: Arc<HedgeState>,
    recorded: AtomicU64,
    histogram: Option<Histogram>,
    delay: HedgeDelay,
    pub(crate) max_hedges: u32,
    min_samples: u64,
    pub(crate) budget: RetryBudget,
    pub(crate) replay: R,
    pub(crate) classifier: C,
    name: Name,
}

impl<C, R> HedgeShared<C, R> {
    #[inline]
    pub(crate) fn current_delay(&self) -> Option<Duration> {
        self.state.delay()
    }

    #[inline]
    pub(crate) fn measures(&self) -> bool {
        self.histogram.is_some()
    }

    /// Records a successful request's latency.
    #[inline]
    pub(crate) fn record(&self, latency: Duration) {
        let Some(h) = &self.histogram else { return };
        h.record(buttress_core::time::saturating_nanos(latency));
        let n = self.recorded.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(RECOMPUTE_EVERY) || n == self.min_samples {
            self.recompute(h);
        }
    }

    /// Reads the percentile (allocating nothing) and publishes it as the
    /// delay once `min_samples` latencies back it; halves old counts.
    #[cold]
    fn recompute(&self, h: &Histogram) {
        let HedgeDelay::Percentile(p) = self.delay else {
            return;
        };
        if let Some((nanos, total)) = h.percentile(p) {
            if total >= self.min_samples {
                self.state
                    .delay_nanos
                    .store(nanos.max(1), Ordering::Relaxed);
            }
            if total >= DECAY_AT {
                h.decay();
            }
        }
    }

    pub(crate) fn fired(&self, hedge: u32) {
        self.state.fired.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(name = %self.name, hedge, "hedge sent");
    }

    /// Counts a finished request.
    #[inline]
    pub(crate) fn finished(&self, outcome: HedgeOutcome) {
        self.state.finished(outcome);
    }

    pub(crate) fn exhausted(&self) {
        self.state.exhausted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(name = %self.name, "hedge not sent: hedge budget exhausted");
    }
}

impl<C, R> Clone for HedgePolicy<C, R> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C: fmt::Debug, R: fmt::Debug> fmt::Debug for HedgePolicy<C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgePolicy")
            .field("name", &self.shared.name)
            .field("delay", &self.shared.delay)
            .field("current_delay", &self.shared.current_delay())
            .field("max_hedges", &self.shared.max_hedges)
            .field("budget", &self.shared.budget)
            .field("classifier", &self.shared.classifier)
            .field("replay", &self.shared.replay)
            .finish_non_exhaustive()
    }
}

impl HedgePolicy {
    /// A builder with every default, the policy named after the source line
    /// that calls this unless [named](HedgePolicyBuilder::name).
    #[must_use]
    #[track_caller]
    pub fn builder() -> HedgePolicyBuilder {
        HedgePolicyBuilder::new()
    }
}

impl<C, R> HedgePolicyBuilder<C, R> {
    /// Validates the configuration and builds the policy.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting: an empty `name`; a
    /// `delay` that is a zero fixed delay or a percentile not above 0 and at
    /// most 100 (NaN included); `max_hedges` outside `1..=16`; zero
    /// `min_samples`.
    pub fn build(self) -> Result<HedgePolicy<C, R>, ConfigError> {
        Ok(HedgePolicy::from_config(self.validate()?))
    }
}

impl<C, R> HedgePolicy<C, R> {
    /// The policy for a validated configuration: claims its name and
    /// registers its counts for publication.
    fn from_config(c: Config<C, R>) -> Self {
        let fixed = match c.delay {
            HedgeDelay::Fixed(d) => buttress_core::time::saturating_nanos(d),
            HedgeDelay::Percentile(_) => UNKNOWN_DELAY,
        };
        buttress_core::telemetry::register_catalog(crate::METRICS);
        let reg = Registration::new("hedge", c.name);
        let name = reg.name();
        let state = Arc::new(HedgeState::new(reg, fixed, c.budget.clone()));
        state
            .registration()
            .attach(Arc::downgrade(&state) as Weak<dyn Publish>);
        Self {
            shared: Arc::new(HedgeShared {
                state,
                recorded: AtomicU64::new(0),
                histogram: matches!(c.delay, HedgeDelay::Percentile(_)).then(Histogram::new),
                delay: c.delay,
                max_hedges: c.max_hedges,
                min_samples: c.min_samples,
                budget: c.budget,
                replay: c.replay,
                classifier: c.classifier,
                name,
            }),
        }
    }

    /// The policy's effective name: the one set with
    /// [`HedgePolicyBuilder::name`] (or the source line that called
    /// [`HedgePolicy::builder`]), with a `#2`, `#3`… suffix when another
    /// live hedge policy already had it; the `name` label of its metrics.
    #[must_use]
    pub fn name(&self) -> Name {
        self.shared.name
    }

    /// The hedge budget.
    #[must_use]
    pub fn budget(&self) -> &RetryBudget {
        &self.shared.budget
    }

    /// The policy's counts and current delay.
    #[must_use]
    pub fn snapshot(&self) -> HedgePolicySnapshot {
        let s = &self.shared.state;
        HedgePolicySnapshot {
            primary_won: s.outcome(HedgeOutcome::PrimaryWon),
            hedge_won: s.outcome(HedgeOutcome::HedgeWon),
            all_failed: s.outcome(HedgeOutcome::AllFailed),
            hedges: s.fired.load(Ordering::Relaxed),
            budget_exhausted: s.exhausted.load(Ordering::Relaxed),
            delay: s.delay(),
            budget_available: self.shared.budget.available(),
        }
    }
}
