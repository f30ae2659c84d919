//! Hedged requests ("The Tail at Scale", Dean & Barroso 2013): when a
//! request is slower than most, send a copy and take whichever answers
//! first.
//!
//! ```
//! use std::time::Duration;
//! use buttress_retry::{HedgeDelay, HedgeLayer, HedgePolicy, RetryBudget};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // 5 % of requests, and (for this one-request example) one hedge a second.
//! let budget = RetryBudget::builder().percent(5.0).min_per_second(1).build().unwrap();
//! let hedge = HedgePolicy::builder()
//!     .delay(HedgeDelay::Fixed(Duration::from_millis(50)))
//!     .budget(budget)
//!     .build()
//!     .unwrap();
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let c = calls.clone();
//! // The first call hangs for a second; the copy answers at once.
//! let backend = service_fn(move |_: ()| {
//!     let n = c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//!     async move {
//!         if n == 0 { tokio::time::sleep(Duration::from_secs(1)).await; }
//!         Ok::<_, std::io::Error>(n)
//!     }
//! });
//! let svc = ServiceBuilder::new().layer(HedgeLayer::new(hedge.clone())).service(backend);
//! let start = tokio::time::Instant::now();
//! assert_eq!(svc.oneshot(()).await.unwrap(), 1, "the hedge won");
//! assert_eq!(start.elapsed(), Duration::from_millis(50));
//! assert_eq!(hedge.stats().won, 1);
//! # }
//! ```
//!
//! Only requests the [`Replay`] copies are hedged: with
//! [`HttpReplay`](crate::http::HttpReplay), idempotent ones. A hedge is sent
//! only while the hedge budget (a [`RetryBudget`], 5 % of requests by
//! default) allows. The first *success* wins; an error is returned only
//! when every attempt in flight has failed. The losers are dropped, which
//! cancels them.

mod future;
mod histogram;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use buttress_core::classify::{Classify, ErrorsAsFailures};
use buttress_core::telemetry::{Name, Publish, Registration};
use buttress_core::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

pub use self::future::HedgeFuture;
use self::histogram::Histogram;
use crate::budget::RetryBudget;
use crate::error::ConfigError;
use crate::replay::{CloneRequest, Replay};
use crate::telemetry::{HedgeOutcome, HedgeState, UNKNOWN_DELAY};

/// The most extra attempts per request.
pub const MAX_HEDGES: u32 = 16;
/// Latencies recorded between two percentile computations.
const RECOMPUTE_EVERY: u64 = 64;
/// Past this many recorded latencies, the histogram is halved.
const DECAY_AT: u64 = 10_000;

/// When to send a hedge.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum HedgeDelay {
    /// After this fixed delay (Polly's default is 2 s).
    Fixed(Duration),
    /// After this percentile (0–100) of recent successful latencies
    /// (Dean & Barroso: the 95th), once
    /// [`min_samples`](HedgeBuilder::min_samples) have been seen; until then,
    /// no hedging.
    Percentile(f64),
}

/// Builds a [`HedgePolicy`]; [`build`](Self::build) validates.
#[derive(Clone, Debug)]
pub struct HedgeBuilder<R = CloneRequest, C = ErrorsAsFailures> {
    name: Name,
    delay: HedgeDelay,
    max_hedges: u32,
    min_samples: u64,
    budget: Option<RetryBudget>,
    replay: R,
    classifier: C,
}

impl Default for HedgeBuilder {
    /// [`HedgeBuilder::new`]: named after the caller's source line.
    #[track_caller]
    fn default() -> Self {
        Self::new()
    }
}

impl HedgeBuilder {
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

impl<R, C> HedgeBuilder<R, C> {
    /// The policy's name: the `name` label on its metrics and the `name`
    /// field on its tracing events. A second live hedge policy asking for a
    /// name in use gets it with a `#2` suffix (see [`HedgePolicy::name`]).
    /// Default: the source location (`file:line`) of the
    /// [`HedgePolicy::builder`] call.
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

    /// Latencies to see before a percentile delay is trusted. Default: 100.
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
    pub fn replay<R2>(self, replay: R2) -> HedgeBuilder<R2, C> {
        HedgeBuilder {
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
    pub fn classifier<C2>(self, classifier: C2) -> HedgeBuilder<R, C2> {
        HedgeBuilder {
            name: self.name,
            delay: self.delay,
            max_hedges: self.max_hedges,
            min_samples: self.min_samples,
            budget: self.budget,
            replay: self.replay,
            classifier,
        }
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` (empty), `delay` (a percentile
    /// outside `0.0..=100.0` or a zero fixed delay) or `max_hedges`
    /// (outside `1..=16`).
    pub fn build(self) -> Result<HedgePolicy<R, C>, ConfigError> {
        if self.name.as_str().is_empty() {
            return Err(crate::error::config_error("name", "must not be empty"));
        }
        match self.delay {
            HedgeDelay::Percentile(p) if !(0.0..=100.0).contains(&p) => {
                return Err(crate::error::config_error(
                    "delay",
                    format!("percentile must be within 0.0..=100.0, got {p}"),
                ));
            }
            HedgeDelay::Fixed(d) if d.is_zero() => {
                return Err(crate::error::config_error(
                    "delay",
                    "must be greater than zero",
                ));
            }
            _ => {}
        }
        if self.max_hedges == 0 || self.max_hedges > MAX_HEDGES {
            return Err(crate::error::config_error(
                "max_hedges",
                format!("must be within 1..={MAX_HEDGES}, got {}", self.max_hedges),
            ));
        }
        let budget = match self.budget {
            Some(b) => b,
            None => RetryBudget::builder()
                .percent(5.0)
                .min_per_second(0)
                .build()?,
        };
        let fixed = match self.delay {
            HedgeDelay::Fixed(d) => buttress_core::time::saturating_nanos(d),
            HedgeDelay::Percentile(_) => UNKNOWN_DELAY,
        };
        buttress_core::telemetry::register_catalog(crate::METRICS);
        let reg = Registration::new("hedge", self.name);
        let name = reg.name();
        let state = Arc::new(HedgeState::new(reg, fixed, budget.clone()));
        state
            .registration()
            .attach(Arc::downgrade(&state) as Weak<dyn Publish>);
        Ok(HedgePolicy {
            shared: Arc::new(HedgeShared {
                state,
                recorded: AtomicU64::new(0),
                histogram: matches!(self.delay, HedgeDelay::Percentile(_)).then(Histogram::new),
                delay: self.delay,
                max_hedges: self.max_hedges,
                min_samples: self.min_samples,
                budget,
                replay: self.replay,
                classifier: self.classifier,
                name,
            }),
        })
    }
}

pub(crate) struct HedgeShared<R, C> {
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

impl<R, C> HedgeShared<R, C> {
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

/// Counts kept by a [`HedgePolicy`], read with [`HedgePolicy::stats`]:
/// the figures its metrics publish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HedgeStats {
    /// Requests answered by their first attempt.
    pub primary_won: u64,
    /// Requests answered by a hedge rather than the first attempt.
    pub won: u64,
    /// Requests whose every attempt failed (the last failure was returned).
    pub all_failed: u64,
    /// Hedges sent.
    pub fired: u64,
    /// Hedges not sent because the hedge budget was empty.
    pub budget_exhausted: u64,
}

/// The hedging configuration and its shared state (latency histogram,
/// budget, counts): the handle behind a [`HedgeLayer`].
///
/// # Clone
///
/// Clones share everything: one policy per dependency.
pub struct HedgePolicy<R = CloneRequest, C = ErrorsAsFailures> {
    shared: Arc<HedgeShared<R, C>>,
}

impl<R, C> Clone for HedgePolicy<R, C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<R: fmt::Debug, C: fmt::Debug> fmt::Debug for HedgePolicy<R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgePolicy")
            .field("name", &self.shared.name)
            .field("delay", &self.shared.delay)
            .field("current_delay", &self.current_delay())
            .field("max_hedges", &self.shared.max_hedges)
            .field("budget", &self.shared.budget)
            .field("replay", &self.shared.replay)
            .field("classifier", &self.shared.classifier)
            .finish_non_exhaustive()
    }
}

impl HedgePolicy {
    /// A builder with every default, the policy named after the source line
    /// that calls this unless [named](HedgeBuilder::name).
    #[must_use]
    #[track_caller]
    pub fn builder() -> HedgeBuilder {
        HedgeBuilder::new()
    }
}

impl<R, C> HedgePolicy<R, C> {
    /// The policy's effective name: the one set with
    /// [`HedgeBuilder::name`] (or the source line that called
    /// [`HedgePolicy::builder`]), with a `#2`, `#3`… suffix when another
    /// live hedge policy already had it; the `name` label of its metrics.
    #[must_use]
    pub fn name(&self) -> Name {
        self.shared.name
    }

    /// The delay after which a hedge is sent now, if known.
    #[must_use]
    pub fn current_delay(&self) -> Option<Duration> {
        self.shared.current_delay()
    }

    /// The hedge budget.
    #[must_use]
    pub fn budget(&self) -> &RetryBudget {
        &self.shared.budget
    }

    /// Counts since the policy was built.
    #[must_use]
    pub fn stats(&self) -> HedgeStats {
        let s = &self.shared.state;
        HedgeStats {
            primary_won: s.outcome(HedgeOutcome::PrimaryWon),
            won: s.outcome(HedgeOutcome::HedgeWon),
            all_failed: s.outcome(HedgeOutcome::AllFailed),
            fired: s.fired.load(Ordering::Relaxed),
            budget_exhausted: s.exhausted.load(Ordering::Relaxed),
        }
    }
}

/// Wraps services in a [`HedgeService`].
#[derive(Debug)]
pub struct HedgeLayer<R = CloneRequest, C = ErrorsAsFailures> {
    policy: HedgePolicy<R, C>,
}

impl<R, C> Clone for HedgeLayer<R, C> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
        }
    }
}

impl<R, C> HedgeLayer<R, C> {
    /// A layer hedging by `policy`.
    #[must_use]
    pub fn new(policy: HedgePolicy<R, C>) -> Self {
        Self { policy }
    }
}

impl<R, C> From<HedgePolicy<R, C>> for HedgeLayer<R, C> {
    fn from(policy: HedgePolicy<R, C>) -> Self {
        Self::new(policy)
    }
}

impl<S, R, C> Layer<S> for HedgeLayer<R, C> {
    type Service = HedgeService<S, R, C>;

    fn layer(&self, inner: S) -> Self::Service {
        HedgeService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// Sends hedges of slow requests to the inner service; see the
/// [module docs](self).
///
/// # Clone
///
/// Each response future keeps a clone of the inner service to send its
/// hedges on, so the inner service must be `Clone`. Clones share the policy.
#[derive(Debug)]
pub struct HedgeService<S, R = CloneRequest, C = ErrorsAsFailures> {
    inner: S,
    policy: HedgePolicy<R, C>,
}

impl<S: Clone, R, C> Clone for HedgeService<S, R, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<S, R, C> HedgeService<S, R, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R, C, Req> Service<Req> for HedgeService<S, R, C>
where
    S: Service<Req> + Clone,
    R: Replay<Req>,
    C: Classify<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = HedgeFuture<S, Req, R, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &self.policy.shared;
        shared.budget.deposit();
        let delay = shared.current_delay();
        let copy = match delay {
            Some(_) => shared.replay.replay(&req),
            None => None,
        };
        let start = shared.measures().then(Instant::now);
        let primary = self.inner.call(req);
        let service = copy.is_some().then(|| self.inner.clone());
        HedgeFuture::new(
            primary,
            service,
            copy,
            delay,
            start,
            Arc::clone(&self.policy.shared),
        )
    }
}
