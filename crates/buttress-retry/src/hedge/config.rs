//! [`HedgePolicyBuilder`]: every setting of a
//! [`HedgePolicy`](super::HedgePolicy) with its default, validated once
//! into a [`Config`].

use std::time::Duration;

use buttress_core::ConfigError;
use buttress_core::classify::ErrorsAsFailures;
use buttress_core::telemetry::Name;

use crate::budget::RetryBudget;
use crate::error::config_error;
use crate::replay::CloneRequest;

/// The most extra attempts per request.
pub const MAX_HEDGES: u32 = 16;

/// When to send a hedge.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum HedgeDelay {
    /// After this fixed delay (Polly's default is 2 s).
    Fixed(Duration),
    /// After this percentile (above 0, at most 100) of recent successful
    /// latencies (Dean & Barroso: the 95th), once
    /// [`min_samples`](HedgePolicyBuilder::min_samples) have been seen;
    /// until then, no hedging.
    Percentile(f64),
}

/// Builds a [`HedgePolicy`](super::HedgePolicy); `build` validates.
#[derive(Clone, Debug)]
pub struct HedgePolicyBuilder<C = ErrorsAsFailures, R = CloneRequest> {
    name: Name,
    delay: HedgeDelay,
    max_hedges: u32,
    min_samples: u64,
    budget: Option<RetryBudget>,
    replay: R,
    classifier: C,
}

/// A validated configuration: everything a
/// [`HedgePolicy`](super::HedgePolicy) needs.
pub(crate) struct Config<C, R> {
    /// The name asked for (the effective one may get a `#n` suffix).
    pub(crate) name: Name,
    pub(crate) delay: HedgeDelay,
    pub(crate) max_hedges: u32,
    pub(crate) min_samples: u64,
    pub(crate) budget: RetryBudget,
    pub(crate) replay: R,
    pub(crate) classifier: C,
}

impl Default for HedgePolicyBuilder {
    /// [`HedgePolicyBuilder::new`]: named after the caller's source line.
    #[track_caller]
    fn default() -> Self {
        Self::new()
    }
}

impl HedgePolicyBuilder {
    /// A builder with every default, the policy named after the source line
    /// that calls this (see [`name`](Self::name)).
    #[must_use]
    #[track_caller]
    pub fn new() -> Self {
        Self {
            name: Name::caller(),
            delay: HedgeDelay::Percentile(95.0),
            max_hedges: 1,
            min_samples: 100,
            budget: None,
            replay: CloneRequest,
            classifier: ErrorsAsFailures::new(),
        }
    }
}

impl<C, R> HedgePolicyBuilder<C, R> {
    /// The policy's name: the `name` label on its metrics and the `name`
    /// field on its tracing events. A second live hedge policy asking for a
    /// name in use gets it with a `#2` suffix (see
    /// [`HedgePolicy::name`](super::HedgePolicy::name)). Default: the source
    /// location (`file:line`) of the
    /// [`HedgePolicy::builder`](super::HedgePolicy::builder) call.
    #[must_use]
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = name.into();
        self
    }

    /// When to hedge. Default: [`HedgeDelay::Percentile(95.0)`](HedgeDelay::Percentile),
    /// "The Tail at Scale"'s advice, which costs about 5 % extra load.
    #[must_use]
    pub fn delay(mut self, delay: HedgeDelay) -> Self {
        self.delay = delay;
        self
    }

    /// Extra attempts per request (`1..=16`), each one delay after the
    /// previous. Default: 1, Polly's `MaxHedgedAttempts`.
    #[must_use]
    pub fn max_hedges(mut self, hedges: u32) -> Self {
        self.max_hedges = hedges;
        self
    }

    /// Latencies to see before a percentile delay is trusted (at least 1).
    /// Default: 100.
    #[must_use]
    pub fn min_samples(mut self, samples: u64) -> Self {
        self.min_samples = samples;
        self
    }

    /// The budget hedges draw from. Default: 5 % of requests, no per-second
    /// allowance, over 10 s: at most 5 % extra load.
    #[must_use]
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// How requests are copied, and which may be hedged. Default:
    /// [`CloneRequest`]; for HTTP, [`HttpReplay`](crate::http::HttpReplay)
    /// (idempotent methods only).
    #[must_use]
    pub fn replay<R2>(self, replay: R2) -> HedgePolicyBuilder<C, R2> {
        HedgePolicyBuilder {
            name: self.name,
            delay: self.delay,
            max_hedges: self.max_hedges,
            min_samples: self.min_samples,
            budget: self.budget,
            replay,
            classifier: self.classifier,
        }
    }

    /// Which answers may win the race: an attempt whose result the
    /// classifier calls a failure (an HTTP 503, a gRPC `UNAVAILABLE`) does
    /// not end the request while another attempt is still running; if
    /// every attempt fails, the last failure comes back as it is. Default:
    /// [`ErrorsAsFailures`] (any `Ok` wins); for HTTP,
    /// [`HttpClassifier`](buttress_core::http::HttpClassifier).
    #[must_use]
    pub fn classifier<C2>(self, classifier: C2) -> HedgePolicyBuilder<C2, R> {
        HedgePolicyBuilder {
            name: self.name,
            delay: self.delay,
            max_hedges: self.max_hedges,
            min_samples: self.min_samples,
            budget: self.budget,
            replay: self.replay,
            classifier,
        }
    }

    /// Checks every setting: the first bad one is a [`ConfigError`] naming
    /// it (see [`build`](Self::build)).
    pub(crate) fn validate(self) -> Result<Config<C, R>, ConfigError> {
        if self.name.as_str().is_empty() {
            return Err(config_error("name", "must not be empty"));
        }
        match self.delay {
            HedgeDelay::Percentile(p) if !(p > 0.0 && p <= 100.0) => {
                return Err(config_error(
                    "delay",
                    format!("percentile must be above 0 and at most 100, got {p}"),
                ));
            }
            HedgeDelay::Fixed(d) if d.is_zero() => {
                return Err(config_error("delay", "must be greater than zero"));
            }
            _ => {}
        }
        if self.max_hedges == 0 || self.max_hedges > MAX_HEDGES {
            return Err(config_error(
                "max_hedges",
                format!("must be within 1..={MAX_HEDGES}, got {}", self.max_hedges),
            ));
        }
        if self.min_samples == 0 {
            return Err(config_error(
                "min_samples",
                "must be at least 1 (a percentile of no latencies is no delay)",
            ));
        }
        let budget = match self.budget {
            Some(b) => b,
            None => RetryBudget::builder()
                .percent(5.0)
                .min_per_second(0)
                .build()?,
        };
        Ok(Config {
            name: self.name,
            delay: self.delay,
            max_hedges: self.max_hedges,
            min_samples: self.min_samples,
            budget,
            replay: self.replay,
            classifier: self.classifier,
        })
    }
}
