//! The throttle's shared state: the sliding window of requests and
//! accepts, and the decision to send or shed.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use buttress_core::ConfigError;
use buttress_core::rng::FastRng;
use buttress_core::telemetry::{Count, Emit, Name, Publish, Registration, register_catalog};
use buttress_core::time::Origin;

use super::config::{AdaptiveThrottleBuilder, Config};
use crate::telemetry::{THROTTLE_CALLS, THROTTLE_PROBABILITY};

/// The layer kind the throttle registers its name under.
const KIND: &str = "throttle";

struct Bucket {
    epoch: AtomicU64,
    requests: AtomicU64,
    accepts: AtomicU64,
}

pub(crate) struct Inner {
    k: f64,
    buckets: Box<[Bucket]>,
    bucket_nanos: u64,
    origin: Origin,
    rng: FastRng,
    /// Requests sent to the backend.
    sent: Count,
    /// Requests shed locally.
    rejected: Count,
    /// The claim on the throttle's name, held as long as the throttle lives.
    registration: Registration,
}

/// The shared state of a client-side adaptive throttle: clone it to read
/// its counters ([`snapshot`](Self::snapshot)); every
/// [`AdaptiveThrottleLayer`](super::AdaptiveThrottleLayer) built from it
/// shares them.
#[derive(Clone)]
pub struct AdaptiveThrottle {
    inner: Arc<Inner>,
}

impl fmt::Debug for AdaptiveThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.snapshot();
        f.debug_struct("AdaptiveThrottle")
            .field("name", &self.name())
            .field("k", &self.inner.k)
            .field("requests", &s.requests)
            .field("accepts", &s.accepts)
            .finish_non_exhaustive()
    }
}

impl AdaptiveThrottle {
    /// An [`AdaptiveThrottleBuilder`] with the book's defaults. The
    /// throttle is named after the line that calls this unless
    /// [`name`](AdaptiveThrottleBuilder::name) is set.
    #[must_use]
    #[track_caller]
    pub fn builder() -> AdaptiveThrottleBuilder {
        AdaptiveThrottleBuilder::new()
    }

    /// The throttle for a validated configuration: claims its name and
    /// links it to the telemetry publisher.
    fn from_config(c: Config) -> Self {
        register_catalog(crate::telemetry::METRICS);
        let inner = Arc::new(Inner {
            k: c.k,
            buckets: (0..c.buckets)
                .map(|_| Bucket {
                    epoch: AtomicU64::new(0),
                    requests: AtomicU64::new(0),
                    accepts: AtomicU64::new(0),
                })
                .collect(),
            bucket_nanos: c.bucket_nanos,
            origin: Origin::now(),
            rng: c.seed.map_or_else(FastRng::from_entropy, FastRng::seeded),
            sent: Count::new(),
            rejected: Count::new(),
            registration: Registration::new(KIND, c.name),
        });
        let weak: Weak<dyn Publish> = Arc::downgrade(&inner) as _;
        inner.registration.attach(weak);
        Self { inner }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The throttle's name: the `name` label on its metrics and the name
    /// its [`Throttled`](super::Throttled) rejections carry. The name it
    /// was given (or the line that built it), with a `#2`, `#3`, … suffix
    /// if a live throttle already had it.
    #[must_use]
    pub fn name(&self) -> Name {
        self.inner.name()
    }

    /// The throttle's counters, read now.
    #[must_use]
    pub fn snapshot(&self) -> AdaptiveThrottleSnapshot {
        self.inner.snapshot()
    }
}

impl AdaptiveThrottleBuilder {
    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting: an empty name, `k`
    /// below 1 or not finite, zero or more than
    /// [`MAX_BUCKETS`](super::MAX_BUCKETS) buckets, a window shorter than
    /// 1 ms per bucket.
    pub fn build(self) -> Result<AdaptiveThrottle, ConfigError> {
        Ok(AdaptiveThrottle::from_config(self.validate()?))
    }
}

/// A throttle's counters at one moment, from
/// [`AdaptiveThrottle::snapshot`]. The same figures are published as the
/// `buttress_throttle_*` metrics.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct AdaptiveThrottleSnapshot {
    /// Requests the application attempted in the window (sent or shed).
    pub requests: u64,
    /// Requests the backend accepted in the window.
    pub accepts: u64,
    /// The probability that the next request is shed locally:
    /// `max(0, (requests − K · accepts) / (requests + 1))`.
    pub reject_probability: f64,
    /// Requests sent to the backend since the throttle was built.
    pub sent: u64,
    /// Requests shed locally with [`Throttled`](super::Throttled) since the
    /// throttle was built.
    pub rejected: u64,
}

impl Inner {
    #[inline]
    pub(crate) fn name(&self) -> Name {
        self.registration.name()
    }

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

    /// The counters, with the probability from the same window counts.
    fn snapshot(&self) -> AdaptiveThrottleSnapshot {
        let (requests, accepts) = self.counts(self.epoch_now());
        AdaptiveThrottleSnapshot {
            requests,
            accepts,
            reject_probability: self.probability(requests, accepts),
            sent: self.sent.get(),
            rejected: self.rejected.get(),
        }
    }

    /// Counts a request and decides whether to send it (`true`) or shed
    /// it.
    pub(crate) fn admit(&self) -> bool {
        let epoch = self.epoch_now();
        let (requests, accepts) = self.counts(epoch);
        self.bucket(epoch).requests.fetch_add(1, Ordering::Relaxed);
        let p = self.probability(requests, accepts);
        if p > 0.0 && self.rng.next_f64() < p {
            self.rejected.incr();
            return false;
        }
        self.sent.incr();
        true
    }

    /// Counts a sent request the backend accepted.
    pub(crate) fn accept(&self) {
        self.bucket(self.epoch_now())
            .accepts
            .fetch_add(1, Ordering::Relaxed);
    }
}

impl Publish for Inner {
    fn publish(&self, out: &mut Emit<'_>) {
        let s = self.snapshot();
        out.counter_with(THROTTLE_CALLS, &[("outcome", "sent")], s.sent);
        out.counter_with(THROTTLE_CALLS, &[("outcome", "rejected")], s.rejected);
        out.gauge(THROTTLE_PROBABILITY, s.reject_probability);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probability_formula() {
        let t = AdaptiveThrottle::from_config(Config {
            k: 2.0,
            buckets: 12,
            bucket_nanos: 10_000_000_000,
            name: Name::new("probability-formula"),
            seed: Some(1),
        });
        let p = |r, a| t.inner.probability(r, a);
        assert_eq!(p(0, 0), 0.0);
        assert_eq!(p(100, 50), 0.0, "K·accepts = requests");
        assert!((p(100, 25) - 50.0 / 101.0).abs() < 1e-12);
        assert!((p(100, 0) - 100.0 / 101.0).abs() < 1e-12);
    }
}
