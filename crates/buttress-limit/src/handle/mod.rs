//! The shared limiter and its [`AdaptiveLimit`] handle.
//!
//! - `inner`: the shared state, admission, completion, window closes;
//! - `window`: the per-stripe window accumulators and RTT histograms;
//! - `queue`: calls waiting at the limit;
//! - `partition`: guaranteed shares;
//! - `permit`: an admitted call's permit;
//! - `snapshot`: the counters, read all at once;
//! - `publish`: the counters, written to the `metrics` recorder.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use buttress_core::stripe::{Padded, stripes, thread_stripe};
use buttress_core::telemetry::{Count, Name, Publish, Registration, register_catalog};
use buttress_core::time::{Origin, saturating_nanos};

mod inner;
mod partition;
mod permit;
mod publish;
mod queue;
mod snapshot;
mod window;

pub(crate) use inner::Inner;
pub(crate) use partition::NO_PARTITION;
pub use permit::Permit;
pub(crate) use queue::Waiter;
pub use snapshot::{AdaptiveLimitSnapshot, PartitionSnapshot};

use crate::algorithm::Limit;
use crate::config::{AdaptiveLimitBuilder, Config};
use crate::error::{ConfigError, Overloaded};
use inner::{Hot, Rtts};
use partition::Partition;
use permit::Token;
use queue::Queue;
use window::{Stripe, UNSAMPLED};

/// The layer kind the limiter registers its name under.
const KIND: &str = "limit";

struct Shared {
    inner: Arc<Inner>,
    tokens: Box<[Arc<Token>]>,
}

/// An adaptive concurrency limit: the shared state behind every
/// [`AdaptiveLimitLayer`](crate::AdaptiveLimitLayer) built from it.
///
/// Clone it freely (one reference count): clones are the same limiter.
/// Read its counters with [`snapshot`](Self::snapshot) (the current
/// [`limit`](Self::limit) and [`in_flight`](Self::in_flight) count also
/// have getters of their own, one load each), or take permits by hand with
/// [`try_acquire`](Self::try_acquire) outside tower.
///
/// ```
/// use buttress_limit::{AdaptiveLimit, algorithm::Fixed};
/// use buttress_core::classify::Outcome;
///
/// let limit = AdaptiveLimit::builder(Fixed::new(1)?).name("db").build()?;
/// let permit = limit.try_acquire().unwrap();
/// assert_eq!(limit.in_flight(), 1);
/// let shed = limit.try_acquire().unwrap_err();
/// assert_eq!(shed.name(), "db", "the rejection names the limiter");
/// permit.record(Outcome::Success);
/// let counts = limit.snapshot();
/// assert_eq!((counts.in_flight, counts.admitted, counts.rejected), (0, 1, 1));
/// # Ok::<(), buttress_limit::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct AdaptiveLimit {
    shared: Arc<Shared>,
}

impl fmt::Debug for AdaptiveLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("name", &self.name())
            .field("algorithm", &self.inner().algorithm_name)
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl AdaptiveLimit {
    /// An [`AdaptiveLimitBuilder`] around `algorithm`, every other setting
    /// at its default. The limiter is named after the line that calls
    /// this unless [`name`](AdaptiveLimitBuilder::name) is set.
    #[must_use]
    #[track_caller]
    pub fn builder(algorithm: impl Limit + 'static) -> AdaptiveLimitBuilder {
        AdaptiveLimitBuilder::new(Box::new(algorithm))
    }

    /// The limiter for a validated configuration: claims its name and
    /// links it to the telemetry publisher.
    fn from_config(c: Config) -> Self {
        register_catalog(crate::telemetry::METRICS);
        let registration = Registration::new(KIND, c.name);
        let limit = c.algorithm.limit().max(1);
        let percentile = c
            .algorithm
            .rtt_percentile()
            .filter(|p| p.is_finite() && *p > 0.0 && *p <= 1.0);
        let window_fixed = c.window.map(|w| saturating_nanos(w).max(1));
        let stripes = stripes();
        let inner = Arc::new(Inner {
            in_flight: Padded(AtomicU32::new(0)),
            hot: Padded(Hot {
                limit: AtomicU32::new(limit),
                sample_mask: AtomicU32::new(0),
                window_end: AtomicU64::new(window_fixed.unwrap_or(window::MIN_WINDOW)),
                pinned: AtomicBool::new(c.algorithm.is_pinned()),
            }),
            stripes: (0..stripes)
                .map(|_| Padded(Stripe::new(percentile.is_some())))
                .collect(),
            percentile,
            origin: Origin::now(),
            sample_floor_nanos: saturating_nanos(c.min_rtt),
            window_fixed,
            window_start: AtomicU64::new(0),
            window_samples: c.window_samples,
            algorithm_name: c.algorithm.name(),
            rtts: Rtts::default(),
            algorithm: Mutex::new(c.algorithm),
            queue: c.queue.map(Queue::new),
            partitions: c
                .partitions
                .into_iter()
                .map(|(name, share)| Partition::new(name, share))
                .collect(),
            rejected: Count::new(),
            changes: AtomicU64::new(0),
            listener: c.listener,
            registration,
        });
        let weak: Weak<dyn Publish> = Arc::downgrade(&inner) as _;
        inner.registration.attach(weak);
        let tokens = (0..stripes)
            .map(|stripe| {
                Arc::new(Token {
                    inner: Arc::clone(&inner),
                    stripe,
                })
            })
            .collect();
        Self {
            shared: Arc::new(Shared { inner, tokens }),
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.shared.inner
    }

    /// A permit for a call that took a slot: this thread's token, and the
    /// start time if the call is sampled. Counts the call admitted; the
    /// stripe's admitted count also picks the sampled calls (one in
    /// `sample_mask + 1` per stripe), so limiters nested on one thread do
    /// not pick each other's calls.
    #[inline]
    fn permit(&self, in_flight: u32, partition: usize) -> Permit {
        self.permit_since(in_flight, partition, None)
    }

    /// [`permit`](Self::permit) for a call that began at `since` (nanoseconds
    /// since the limiter's origin), or now for `None`.
    #[inline(always)]
    fn permit_since(&self, in_flight: u32, partition: usize, since: Option<u64>) -> Permit {
        let tokens = &self.shared.tokens;
        let token = Arc::clone(&tokens[thread_stripe() & (tokens.len() - 1)]);
        let inner = self.inner();
        let nth = inner.stripes[token.stripe]
            .0
            .admitted
            .fetch_add(1, Ordering::Relaxed) as u32;
        let start = if nth & inner.hot.0.sample_mask.load(Ordering::Relaxed) == 0 {
            since.unwrap_or_else(|| inner.origin.elapsed_nanos())
        } else {
            UNSAMPLED
        };
        Permit {
            token: Some(token),
            start,
            in_flight,
            partition,
        }
    }

    /// The limiter's name: the `name` label on its metrics, the `name`
    /// field on its tracing events, the name its [`Overloaded`] carries.
    /// The name it was given (or the line that built it), with a `#2`,
    /// `#3`, … suffix if a live limiter already had it.
    #[must_use]
    pub fn name(&self) -> Name {
        self.inner().name()
    }

    /// The algorithm's name (`"vegas"`, `"gradient2"`, …).
    #[must_use]
    pub fn algorithm(&self) -> &'static str {
        self.inner().algorithm_name
    }

    /// The current limit: one load (also in [`snapshot`](Self::snapshot)).
    #[must_use]
    pub fn limit(&self) -> u32 {
        self.inner().limit()
    }

    /// Calls holding a permit now: one load (also in
    /// [`snapshot`](Self::snapshot)).
    #[must_use]
    pub fn in_flight(&self) -> u32 {
        self.inner().in_flight()
    }

    /// Every counter of the limiter, read now. Each field is read on its
    /// own, so calls completing meanwhile may show in one and not yet in
    /// another. Sums the per-thread stripes: for dashboards and tests,
    /// not for every call.
    #[must_use]
    pub fn snapshot(&self) -> AdaptiveLimitSnapshot {
        self.inner().snapshot()
    }

    /// The counters of the partition named `partition` (`None` for a name
    /// the builder did not configure).
    #[must_use]
    pub fn partition_snapshot(&self, partition: &str) -> Option<PartitionSnapshot> {
        let inner = self.inner();
        let p = &inner.partitions()[inner.partition_index(partition)?];
        Some(p.snapshot(inner.limit()))
    }

    /// Takes a permit without waiting, as the layer does in `call`, for
    /// callers outside tower. Pair every `Ok` with [`Permit::record`];
    /// dropping the permit unrecorded releases it as an ignored call.
    ///
    /// # Errors
    ///
    /// [`Overloaded`] at the limit (this never queues).
    pub fn try_acquire(&self) -> Result<Permit, Overloaded> {
        self.acquire_in(NO_PARTITION)
    }

    /// [`try_acquire`](Self::try_acquire) in a named partition (an unknown
    /// name acquires outside every partition).
    ///
    /// # Errors
    ///
    /// [`Overloaded`] at the limit when the partition holds its guaranteed
    /// share or more.
    pub fn try_acquire_in(&self, partition: &str) -> Result<Permit, Overloaded> {
        let p = self
            .inner()
            .partition_index(partition)
            .unwrap_or(NO_PARTITION);
        self.acquire_in(p)
    }

    #[inline]
    fn acquire_in(&self, partition: usize) -> Result<Permit, Overloaded> {
        let inner = self.inner();
        match inner.try_take(partition) {
            Some(in_flight) => Ok(self.permit(in_flight, partition)),
            None => Err(inner.reject(partition)),
        }
    }

    /// A permit if the limit allows, without counting a rejection.
    #[inline]
    pub(crate) fn acquire_slot(&self, partition: usize) -> Option<Permit> {
        self.inner()
            .try_take(partition)
            .map(|in_flight| self.permit(in_flight, partition))
    }

    /// The permit of a waiter the queue granted, timed from when it
    /// entered the queue.
    pub(crate) fn granted(&self, waiter: &Waiter) -> Permit {
        self.permit_since(
            waiter.in_flight.load(Ordering::Acquire),
            waiter.partition,
            Some(waiter.since),
        )
    }
}

impl AdaptiveLimitBuilder {
    /// Validates the configuration and builds the limiter.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting: an empty name, a
    /// zero window or window sample count, a queue of zero length or zero
    /// wait, an empty partition name, a partition share outside `(0, 1]`
    /// (NaN included), shares adding up to more than 1, a duplicate
    /// partition name, more than [`MAX_PARTITIONS`](crate::MAX_PARTITIONS)
    /// partitions.
    pub fn build(self) -> Result<AdaptiveLimit, ConfigError> {
        Ok(AdaptiveLimit::from_config(self.validate()?))
    }
}
