//! The shared limiter and its [`AdaptiveLimit`] handle.
//!
//! - `inner`: the shared state, admission, completion, window closes;
//! - `window`: the per-stripe window accumulators;
//! - `hist`: the RTT histogram for percentile algorithms;
//! - `queue`: calls waiting at the limit;
//! - `partition`: guaranteed shares;
//! - `permit`: an admitted call's permit;
//! - `change`: the limit-change event.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use buttress_core::telemetry::{Count, Name, Publish, Registration};
use buttress_core::time::{Origin, saturating_nanos};

mod change;
mod hist;
mod inner;
mod partition;
mod permit;
mod queue;
mod window;

pub use change::LimitChange;
pub(crate) use change::Listener;
pub(crate) use inner::Inner;
pub(crate) use partition::NO_PARTITION;
pub use permit::Permit;
pub use queue::QueueOrder;
pub(crate) use queue::{QueueConfig, Waiter};

use crate::algorithm::Limit;
use crate::error::Overloaded;
use crate::stripe::{Padded, stripe_and_tick, stripes};
use inner::{Hot, Rtts};
use partition::Partition;
use permit::Token;
use queue::Queue;
use window::{Stripe, UNSAMPLED};

/// The layer kind the limiter registers its name under.
const KIND: &str = "limit";

/// A validated limiter configuration: everything the limiter needs, the
/// name included (built by [`Builder::build`](crate::Builder::build)).
pub(crate) struct Config {
    pub(crate) algorithm: Box<dyn Limit>,
    pub(crate) name: Name,
    pub(crate) window: Duration,
    pub(crate) window_samples: u32,
    pub(crate) min_rtt: Duration,
    pub(crate) queue: Option<QueueConfig>,
    pub(crate) partitions: Vec<(Arc<str>, f64)>,
    pub(crate) listener: Option<Listener>,
}

struct Shared {
    inner: Arc<Inner>,
    tokens: Box<[Arc<Token>]>,
}

/// An adaptive concurrency limit: the shared state behind every
/// [`AdaptiveLimitLayer`](crate::AdaptiveLimitLayer) built from it.
///
/// Clone it freely (one reference count): clones are the same limiter.
/// Read its [`limit`](Self::limit), [`in_flight`](Self::in_flight),
/// [`queued`](Self::queued) and [`rejected`](Self::rejected) counts, or take
/// permits by hand with [`try_acquire`](Self::try_acquire) outside tower.
///
/// ```
/// use buttress_limit::{AdaptiveLimit, algorithm::Fixed};
/// use buttress_core::classify::Outcome;
///
/// let limit = AdaptiveLimit::builder(Fixed::new(1)).name("db").build().unwrap();
/// let permit = limit.try_acquire().unwrap();
/// assert_eq!(limit.in_flight(), 1);
/// let shed = limit.try_acquire().unwrap_err();
/// assert_eq!(shed.name(), "db", "the rejection names the limiter");
/// permit.record(Outcome::Success);
/// assert_eq!((limit.in_flight(), limit.rejected()), (0, 1));
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
    /// The limiter for a validated configuration: claims its name and
    /// links it to the telemetry publisher.
    pub(crate) fn from_config(c: Config) -> Self {
        let registration = Registration::new(KIND, c.name);
        let limit = c.algorithm.limit().max(1);
        let percentile = c
            .algorithm
            .rtt_percentile()
            .filter(|p| p.is_finite() && *p > 0.0 && *p <= 1.0);
        let window_nanos = saturating_nanos(c.window).max(1);
        let stripes = stripes();
        let inner = Arc::new(Inner {
            in_flight: Padded(AtomicU32::new(0)),
            hot: Padded(Hot {
                limit: AtomicU32::new(limit),
                sample_mask: AtomicU32::new(0),
                window_end: AtomicU64::new(window_nanos),
                pinned: AtomicBool::new(c.algorithm.is_pinned()),
            }),
            stripes: (0..stripes)
                .map(|_| Padded(Stripe::new(percentile.is_some())))
                .collect(),
            percentile,
            origin: Origin::now(),
            sample_floor_nanos: saturating_nanos(c.min_rtt),
            window_nanos,
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
    /// start time if the call is sampled. Counts the call admitted.
    #[inline]
    fn permit(&self, in_flight: u32, partition: usize) -> Permit {
        let (stripe, tick) = stripe_and_tick();
        let tokens = &self.shared.tokens;
        let token = Arc::clone(&tokens[stripe & (tokens.len() - 1)]);
        let inner = self.inner();
        inner.stripes[token.stripe]
            .0
            .admitted
            .fetch_add(1, Ordering::Relaxed);
        let start = if tick & inner.hot.0.sample_mask.load(Ordering::Relaxed) == 0 {
            inner.origin.elapsed_nanos()
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

    /// The current limit.
    #[must_use]
    pub fn limit(&self) -> u32 {
        self.inner().limit()
    }

    /// Calls holding a permit now.
    #[must_use]
    pub fn in_flight(&self) -> u32 {
        self.inner().in_flight()
    }

    /// Calls in `partition` holding a permit now (`None` for an unknown
    /// partition name).
    #[must_use]
    pub fn partition_in_flight(&self, partition: &str) -> Option<u32> {
        let inner = self.inner();
        let i = inner.partition_index(partition)?;
        Some(inner.partitions()[i].in_flight())
    }

    /// Calls waiting in the queue now.
    #[must_use]
    pub fn queued(&self) -> u32 {
        self.inner().queued()
    }

    /// Calls rejected since the limiter was built.
    #[must_use]
    pub fn rejected(&self) -> u64 {
        self.inner().rejected()
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

    /// The permit of a waiter the queue granted.
    pub(crate) fn granted(&self, waiter: &Waiter) -> Permit {
        self.permit(waiter.in_flight.load(Ordering::Acquire), waiter.partition)
    }
}
