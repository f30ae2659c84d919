//! Client-side adaptive throttling, from Google's *Site Reliability
//! Engineering*, chapter 21 ("Handling Overload").
//!
//! The client counts, over a sliding window (2 minutes), the `requests` its
//! application attempted and the `accepts` the backend accepted, and
//! rejects each new request locally, before it leaves the process, with
//! probability
//!
//! `p = max(0, (requests − K · accepts) / (requests + 1))`.
//!
//! While the backend accepts everything, `p = 0`. When it starts rejecting,
//! the client sheds the excess itself, so an overloaded backend is not also
//! busy saying no. `K = 2` (the book's default) lets through twice what
//! the backend accepts: enough to notice when it recovers. Locally rejected
//! requests count as requests, which is what makes `p` grow.
//!
//! A result counts as accepted when its classification is a success (or
//! ignored) that is not retryable: with the HTTP classifier, a 2xx or a 404
//! is accepted, while a 429, a 5xx or a transport error is not.
//!
//! ```
//! use buttress_limit::throttle::{AdaptiveThrottle, ThrottleLayer, Throttled};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let throttle = AdaptiveThrottle::builder().seed(1).build()?;
//! let overloaded_backend = ServiceBuilder::new()
//!     .layer(ThrottleLayer::new(throttle.clone()))
//!     .service(service_fn(|_: ()| async { Err::<(), _>("503 overloaded") }));
//! let mut local = 0;
//! for _ in 0..1000 {
//!     if let Err(e) = overloaded_backend.clone().oneshot(()).await {
//!         local += usize::from(e.downcast_ref::<Throttled>().is_some());
//!     }
//! }
//! // Nothing is accepted, so p = requests / (requests + 1) → almost all are shed locally.
//! assert!(local > 950, "{local}");
//! assert!(throttle.reject_probability() > 0.99);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use buttress_core::BoxError;
use buttress_core::classify::{Classify, ErrorsAsFailures, Outcome};
use buttress_core::rng::FastRng;
use buttress_core::time::{Origin, saturating_nanos};
use metrics::Counter;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{ConfigError, check_range};

/// The throttle's rejection, from the shared vocabulary in
/// [`buttress_core::reject`].
pub use buttress_core::reject::Throttled;

/// The most buckets a throttle's window can have.
pub const MAX_BUCKETS: u32 = 1000;

struct Bucket {
    epoch: AtomicU64,
    requests: AtomicU64,
    accepts: AtomicU64,
}

struct Inner {
    k: f64,
    buckets: Box<[Bucket]>,
    bucket_nanos: u64,
    origin: Origin,
    rng: FastRng,
    rejected: AtomicU64,
    name: Arc<str>,
    rejected_counter: Counter,
}

/// The shared state of a client-side adaptive throttle: clone it to read
/// its counts; every [`ThrottleLayer`] built from it shares them.
#[derive(Clone)]
pub struct AdaptiveThrottle {
    inner: Arc<Inner>,
}

impl fmt::Debug for AdaptiveThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (requests, accepts) = self.counts();
        f.debug_struct("AdaptiveThrottle")
            .field("name", &self.inner.name)
            .field("k", &self.inner.k)
            .field("requests", &requests)
            .field("accepts", &accepts)
            .finish_non_exhaustive()
    }
}

/// Builds an [`AdaptiveThrottle`].
#[derive(Clone, Debug)]
pub struct ThrottleBuilder {
    k: f64,
    window: Duration,
    buckets: u32,
    name: Arc<str>,
    seed: Option<u64>,
}

impl AdaptiveThrottle {
    /// A builder with the book's defaults.
    #[must_use]
    pub fn builder() -> ThrottleBuilder {
        ThrottleBuilder {
            k: 2.0,
            window: Duration::from_secs(120),
            buckets: 12,
            name: Arc::from("default"),
            seed: None,
        }
    }

    /// Requests and accepts in the window now.
    #[must_use]
    pub fn counts(&self) -> (u64, u64) {
        self.inner.counts(self.inner.epoch_now())
    }

    /// The probability that the next request is rejected locally.
    #[must_use]
    pub fn reject_probability(&self) -> f64 {
        let (requests, accepts) = self.counts();
        self.inner.probability(requests, accepts)
    }

    /// Requests rejected locally since the throttle was built.
    #[must_use]
    pub fn rejected(&self) -> u64 {
        self.inner.rejected.load(Ordering::Relaxed)
    }
}

impl ThrottleBuilder {
    /// The multiplier `K`, `>= 1.0`: the backend may reject `1 − 1/K` of
    /// the requests before the client sheds any. Default: 2 (SRE book;
    /// 1.1 is its aggressive setting).
    #[must_use]
    pub fn k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }

    /// How far back requests and accepts count, in `buckets` slices (the
    /// oldest slice leaves whole). Default: 2 minutes (SRE book) in 12
    /// slices of 10 s.
    #[must_use]
    pub fn window(mut self, window: Duration, buckets: u32) -> Self {
        self.window = window;
        self.buckets = buckets;
        self
    }

    /// The `throttle` label on its metrics. Default: `"default"`.
    #[must_use]
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Seeds the random draws. Default: seeded from the process's entropy.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting: `k` below 1 or not
    /// finite, zero or too many buckets, a window shorter than 1 ms per
    /// bucket.
    pub fn build(self) -> Result<AdaptiveThrottle, ConfigError> {
        check_range("k", self.k, 1.0, 1e9, true)?;
        if self.buckets == 0 || self.buckets > MAX_BUCKETS {
            return Err(crate::error::config_error(
                "window",
                format!(
                    "buckets must be within 1..={MAX_BUCKETS}, got {}",
                    self.buckets
                ),
            ));
        }
        let bucket_nanos = saturating_nanos(self.window) / u64::from(self.buckets);
        if bucket_nanos < 1_000_000 {
            return Err(crate::error::config_error(
                "window",
                format!(
                    "{:?} is too short for {} buckets of at least 1ms",
                    self.window, self.buckets
                ),
            ));
        }
        let rejected_counter = metrics::counter!("buttress_throttle_rejected_total", "throttle" => self.name.to_string());
        Ok(AdaptiveThrottle {
            inner: Arc::new(Inner {
                k: self.k,
                buckets: (0..self.buckets)
                    .map(|_| Bucket {
                        epoch: AtomicU64::new(0),
                        requests: AtomicU64::new(0),
                        accepts: AtomicU64::new(0),
                    })
                    .collect(),
                bucket_nanos,
                origin: Origin::now(),
                rng: self
                    .seed
                    .map_or_else(FastRng::from_entropy, FastRng::seeded),
                rejected: AtomicU64::new(0),
                name: self.name,
                rejected_counter,
            }),
        })
    }
}

impl Inner {
    fn epoch_now(&self) -> u64 {
        self.origin.elapsed_nanos() / self.bucket_nanos
    }

    /// The bucket of `epoch`, reset first if it holds an older epoch.
    fn bucket(&self, epoch: u64) -> &Bucket {
        let b = &self.buckets[(epoch % self.buckets.len() as u64) as usize];
        let seen = b.epoch.load(Ordering::Acquire);
        if seen != epoch
            && b.epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            b.requests.store(0, Ordering::Relaxed);
            b.accepts.store(0, Ordering::Relaxed);
        }
        b
    }

    fn counts(&self, epoch: u64) -> (u64, u64) {
        let n = self.buckets.len() as u64;
        let oldest = epoch.saturating_sub(n - 1);
        self.buckets
            .iter()
            .filter(|b| (oldest..=epoch).contains(&b.epoch.load(Ordering::Acquire)))
            .fold((0, 0), |(r, a), b| {
                (
                    r + b.requests.load(Ordering::Relaxed),
                    a + b.accepts.load(Ordering::Relaxed),
                )
            })
    }

    fn probability(&self, requests: u64, accepts: u64) -> f64 {
        let requests = requests as f64;
        ((requests - self.k * accepts as f64) / (requests + 1.0)).max(0.0)
    }

    /// Counts a request and decides whether to shed it.
    fn admit(&self) -> bool {
        let epoch = self.epoch_now();
        let (requests, accepts) = self.counts(epoch);
        self.bucket(epoch).requests.fetch_add(1, Ordering::Relaxed);
        let p = self.probability(requests, accepts);
        if p > 0.0 && self.rng.next_f64() < p {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            self.rejected_counter.increment(1);
            return false;
        }
        true
    }

    fn accept(&self) {
        self.bucket(self.epoch_now())
            .accepts
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// Wraps services in a [`Throttle`] sharing one [`AdaptiveThrottle`].
///
/// # Clone
///
/// Every service built by this layer (or a clone) shares the throttle's
/// counts: build one throttle per backend.
#[derive(Clone, Debug)]
pub struct ThrottleLayer<C = ErrorsAsFailures> {
    throttle: AdaptiveThrottle,
    classifier: C,
}

impl ThrottleLayer {
    /// A layer around `throttle` that counts `Ok` as accepted.
    #[must_use]
    pub fn new(throttle: AdaptiveThrottle) -> Self {
        Self {
            throttle,
            classifier: ErrorsAsFailures::new(),
        }
    }
}

impl<C> ThrottleLayer<C> {
    /// Judges results with `classifier` instead.
    #[must_use]
    pub fn classifier<C2>(self, classifier: C2) -> ThrottleLayer<C2> {
        ThrottleLayer {
            throttle: self.throttle,
            classifier,
        }
    }
}

impl<S, C: Clone> Layer<S> for ThrottleLayer<C> {
    type Service = Throttle<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttle {
            inner,
            throttle: self.throttle.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

/// Client-side adaptive throttling around an inner service: see the
/// [module docs](self).
#[derive(Clone, Debug)]
pub struct Throttle<S, C = ErrorsAsFailures> {
    inner: S,
    throttle: AdaptiveThrottle,
    classifier: C,
}

impl<S, C> Throttle<S, C> {
    /// The throttle.
    pub fn throttle(&self) -> &AdaptiveThrottle {
        &self.throttle
    }

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

impl<S, C, Req> Service<Req> for Throttle<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ThrottleFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if self.throttle.inner.admit() {
            ThrottleFuture {
                future: Some(self.inner.call(req)),
                throttle: Some(self.throttle.clone()),
                classifier: self.classifier.clone(),
            }
        } else {
            ThrottleFuture {
                future: None,
                throttle: None,
                classifier: self.classifier.clone(),
            }
        }
    }
}

pin_project! {
    /// The future of a [`Throttle`] call: the inner call, or an immediate
    /// local rejection ([`Throttled`]).
    pub struct ThrottleFuture<F, C> {
        #[pin]
        future: Option<F>,
        throttle: Option<AdaptiveThrottle>,
        classifier: C,
    }
}

impl<F, C> fmt::Debug for ThrottleFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottleFuture")
            .field("throttled", &self.future.is_none())
            .finish_non_exhaustive()
    }
}

impl<F, C, T, E> Future for ThrottleFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(future) = this.future.as_pin_mut() else {
            return Poll::Ready(Err(Box::new(Throttled::new())));
        };
        let result = ready!(future.poll(cx));
        if let Some(throttle) = this.throttle.take() {
            let c = this.classifier.classify(&result);
            if c.outcome() != Outcome::Failure && !c.is_retryable() {
                throttle.inner.accept();
            }
        }
        Poll::Ready(result.map_err(Into::into))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probability_formula() {
        let t = AdaptiveThrottle::builder().build().unwrap();
        let p = |r, a| t.inner.probability(r, a);
        assert_eq!(p(0, 0), 0.0);
        assert_eq!(p(100, 50), 0.0, "K·accepts = requests");
        assert!((p(100, 25) - 50.0 / 101.0).abs() < 1e-12);
        assert!((p(100, 0) - 100.0 / 101.0).abs() < 1e-12);
    }

    #[test]
    fn rejects_bad_config() {
        let f = |b: ThrottleBuilder| b.build().unwrap_err().field();
        assert_eq!(f(AdaptiveThrottle::builder().k(0.5)), "k");
        assert_eq!(f(AdaptiveThrottle::builder().k(f64::NAN)), "k");
        assert_eq!(
            f(AdaptiveThrottle::builder().window(Duration::from_secs(1), 0)),
            "window"
        );
        assert_eq!(
            f(AdaptiveThrottle::builder().window(Duration::from_millis(5), 10)),
            "window"
        );
    }
}
