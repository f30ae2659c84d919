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
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use buttress_core::classify::{Classify, ErrorsAsFailures};
use buttress_core::time::Instant;
use metrics::Counter;
use tower_layer::Layer;
use tower_service::Service;

pub use self::future::HedgeFuture;
use self::histogram::Histogram;
use crate::budget::RetryBudget;
use crate::error::ConfigError;
use crate::replay::{CloneRequest, Replay};

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
    name: Arc<str>,
    delay: HedgeDelay,
    max_hedges: u32,
    min_samples: u64,
    budget: Option<RetryBudget>,
    replay: R,
    classifier: C,
}

impl Default for HedgeBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl HedgeBuilder {
    /// A builder with every default.
    #[must_use]
    pub fn new() -> Self {
        Self {
            name: Arc::from("default"),
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
    /// The name: the `hedge` label on metrics. Default: `"default"`.
    #[must_use]
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
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
    /// A [`ConfigError`] naming `delay` (a percentile outside `0.0..=100.0`
    /// or a zero fixed delay) or `max_hedges` (outside `1..=16`).
    pub fn build(self) -> Result<HedgePolicy<R, C>, ConfigError> {
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
        let label = self.name.to_string();
        let fixed = match self.delay {
            HedgeDelay::Fixed(d) => buttress_core::time::saturating_nanos(d),
            HedgeDelay::Percentile(_) => UNKNOWN,
        };
        Ok(HedgePolicy {
            shared: Arc::new(HedgeShared {
                delay_nanos: AtomicU64::new(fixed),
                recorded: AtomicU64::new(0),
                histogram: matches!(self.delay, HedgeDelay::Percentile(_)).then(Histogram::new),
                delay: self.delay,
                max_hedges: self.max_hedges,
                min_samples: self.min_samples,
                budget,
                replay: self.replay,
                classifier: self.classifier,
                fired: AtomicU64::new(0),
                won: AtomicU64::new(0),
                exhausted: AtomicU64::new(0),
                telemetry: HedgeTelemetry {
                    requests: metrics::counter!("buttress_retry_hedge_requests_total", "hedge" => label.clone()),
                    fired: metrics::counter!("buttress_retry_hedges_fired_total", "hedge" => label.clone()),
                    won: metrics::counter!("buttress_retry_hedges_won_total", "hedge" => label.clone()),
                    exhausted: metrics::counter!("buttress_retry_hedge_budget_exhausted_total", "hedge" => label),
                },
                name: self.name,
            }),
        })
    }
}

const UNKNOWN: u64 = u64::MAX;

struct HedgeTelemetry {
    requests: Counter,
    fired: Counter,
    won: Counter,
    exhausted: Counter,
}

pub(crate) struct HedgeShared<R, C> {
    /// The current hedge delay in nanoseconds, or `UNKNOWN`.
    delay_nanos: AtomicU64,
    recorded: AtomicU64,
    histogram: Option<Histogram>,
    delay: HedgeDelay,
    pub(crate) max_hedges: u32,
    min_samples: u64,
    pub(crate) budget: RetryBudget,
    pub(crate) replay: R,
    pub(crate) classifier: C,
    fired: AtomicU64,
    won: AtomicU64,
    exhausted: AtomicU64,
    telemetry: HedgeTelemetry,
    name: Arc<str>,
}

impl<R, C> HedgeShared<R, C> {
    #[inline]
    pub(crate) fn current_delay(&self) -> Option<Duration> {
        match self.delay_nanos.load(Ordering::Relaxed) {
            UNKNOWN => None,
            n => Some(Duration::from_nanos(n)),
        }
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
                self.delay_nanos.store(nanos.max(1), Ordering::Relaxed);
            }
            if total >= DECAY_AT {
                h.decay();
            }
        }
    }

    pub(crate) fn fired(&self) {
        self.fired.fetch_add(1, Ordering::Relaxed);
        self.telemetry.fired.increment(1);
    }

    pub(crate) fn won(&self) {
        self.won.fetch_add(1, Ordering::Relaxed);
        self.telemetry.won.increment(1);
    }

    pub(crate) fn exhausted(&self) {
        self.exhausted.fetch_add(1, Ordering::Relaxed);
        self.telemetry.exhausted.increment(1);
        tracing::debug!(hedge = %self.name, "hedge not sent: hedge budget exhausted");
    }
}

/// Counts kept by a [`HedgePolicy`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HedgeStats {
    /// Hedges sent.
    pub fired: u64,
    /// Requests answered by a hedge rather than the first attempt.
    pub won: u64,
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
    /// A builder with every default.
    #[must_use]
    pub fn builder() -> HedgeBuilder {
        HedgeBuilder::new()
    }
}

impl<R, C> HedgePolicy<R, C> {
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
        let s = &self.shared;
        HedgeStats {
            fired: s.fired.load(Ordering::Relaxed),
            won: s.won.load(Ordering::Relaxed),
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
        shared.telemetry.requests.increment(1);
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
