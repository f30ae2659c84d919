//! The shared limiter: admission, sampling windows, the queue, partitions,
//! telemetry, and the [`AdaptiveLimit`] handle.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::task::Waker;
use std::time::Duration;

use buttress_core::classify::Outcome;
use buttress_core::time::{Instant, Origin, saturating_nanos};
use metrics::{Counter, Gauge};

use crate::algorithm::{Limit, Sample};
use crate::config::{Builder, Listener, QueueConfig, QueueOrder};
use crate::error::Overloaded;
use crate::stripe::{Padded, stripe_and_tick, stripes};

/// The partition index of a call outside every partition.
pub(crate) const NO_PARTITION: usize = usize::MAX;

/// Read on every call, written once per window: kept apart from the
/// in-flight counter, which every call writes.
struct Hot {
    limit: AtomicU32,
    /// A call's RTT is sampled when the thread's call count `& sample_mask`
    /// is 0: every call at low rates, about [`SAMPLES_PER_WINDOW`] per
    /// window at high ones.
    sample_mask: AtomicU32,
    window_end: AtomicU64,
    /// The algorithm pinned the limit for a measurement
    /// ([`Limit::is_pinned`]): partition guarantees do not apply.
    pinned: AtomicBool,
}

/// The RTT samples a window aims for: above this many calls per window, only
/// one call in 2^k has its RTT measured (two clock reads), the least k that
/// keeps about this many samples. The mean of a uniform subsample is an
/// unbiased estimate of the window's mean.
pub(crate) const SAMPLES_PER_WINDOW: u64 = 1024;

/// A permit whose call's RTT is not sampled.
const UNSAMPLED: u64 = u64::MAX;

/// One thread stripe's share of the open window.
#[derive(Default)]
struct Stripe {
    /// Sampled successes, counting those too fast to feed an RTT.
    measured: AtomicU32,
    rtt_sum: AtomicU64,
    samples: AtomicU32,
    drops: AtomicU32,
    max_in_flight: AtomicU32,
    /// RTT histogram, only for algorithms that ask for a percentile.
    histogram: Option<Box<[AtomicU32]>>,
}

/// Log-linear RTT histogram: 8 buckets per power of two from 1 µs
/// (2^10 ns) to about 18 min (2^40 ns), so a bucket's midpoint is within
/// 6.25 % of any RTT in it. RTTs outside the range land in the end buckets.
mod hist {
    pub(crate) const SUB: u32 = 8;
    const MIN_EXP: u32 = 10;
    const MAX_EXP: u32 = 40;
    pub(crate) const BUCKETS: usize = ((MAX_EXP - MIN_EXP) * SUB) as usize;

    #[inline]
    pub(crate) fn bucket(nanos: u64) -> usize {
        let nanos = nanos.clamp(1 << MIN_EXP, (1 << MAX_EXP) - 1);
        let exp = 63 - nanos.leading_zeros();
        let sub = ((nanos >> (exp - 3)) & u64::from(SUB - 1)) as u32;
        ((exp - MIN_EXP) * SUB + sub) as usize
    }

    /// The midpoint of bucket `i`, in nanoseconds.
    pub(crate) fn midpoint(i: usize) -> u64 {
        let i = i as u32;
        let exp = MIN_EXP + i / SUB;
        let sub = u64::from(i % SUB);
        let lo = (1u64 << exp) + (sub << (exp - 3));
        lo + (1u64 << (exp - 4))
    }
}

struct Partition {
    name: Arc<str>,
    share: f64,
    in_flight: Padded<AtomicU32>,
}

impl Partition {
    /// `max(1, ⌈L · share⌉)`.
    #[inline]
    fn guaranteed(&self, limit: u32) -> u32 {
        let g = (f64::from(limit) * self.share).ceil();
        if g >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            (g as u32).max(1)
        }
    }
}

const WAITING: u8 = 0;
const GRANTED: u8 = 1;
const CANCELLED: u8 = 2;

/// A call waiting in the queue.
pub(crate) struct Waiter {
    state: AtomicU8,
    waker: Mutex<Option<Waker>>,
    partition: usize,
    in_flight: AtomicU32,
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Waiter {
    pub(crate) fn is_granted(&self) -> bool {
        self.state.load(Ordering::Acquire) == GRANTED
    }

    pub(crate) fn register(&self, waker: &Waker) {
        let mut slot = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *slot {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }
}

struct Queue {
    config: QueueConfig,
    waiters: Mutex<VecDeque<Arc<Waiter>>>,
    queued: AtomicU32,
}

struct Telemetry {
    success: Counter,
    failure: Counter,
    ignored: Counter,
    rejected: Counter,
    changes: Counter,
    limit: Gauge,
    in_flight: Gauge,
    queued: Gauge,
}

impl Telemetry {
    fn new(name: &str) -> Self {
        let label = name.to_owned();
        let calls = |outcome: &'static str| metrics::counter!("buttress_limit_calls_total", "limiter" => label.clone(), "outcome" => outcome);
        Self {
            success: calls("success"),
            failure: calls("failure"),
            ignored: calls("ignored"),
            rejected: metrics::counter!("buttress_limit_rejected_total", "limiter" => label.clone()),
            changes: metrics::counter!("buttress_limit_changes_total", "limiter" => label.clone()),
            limit: metrics::gauge!("buttress_limit_limit", "limiter" => label.clone()),
            in_flight: metrics::gauge!("buttress_limit_in_flight", "limiter" => label.clone()),
            queued: metrics::gauge!("buttress_limit_queued", "limiter" => label),
        }
    }
}

pub(crate) struct Inner {
    in_flight: Padded<AtomicU32>,
    hot: Padded<Hot>,
    stripes: Box<[Padded<Stripe>]>,
    /// The window aggregate the algorithm asked for: a percentile, or the
    /// mean when `None`.
    percentile: Option<f64>,
    origin: Origin,
    min_rtt_nanos: u64,
    window_nanos: u64,
    window_samples: u32,
    algorithm: Mutex<Box<dyn Limit>>,
    algorithm_name: &'static str,
    queue: Option<Queue>,
    partitions: Box<[Partition]>,
    rejected: AtomicU64,
    name: Arc<str>,
    listener: Option<Listener>,
    telemetry: Telemetry,
}

/// A per-stripe handle on the shared limiter. A call's permit holds one, so
/// threads clone and drop different reference counts instead of one.
#[repr(align(128))]
pub(crate) struct Token {
    inner: Arc<Inner>,
    stripe: usize,
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
/// assert!(limit.try_acquire().is_err(), "at the limit");
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

/// A change of the limit, passed to the
/// [`on_limit_change`](Builder::on_limit_change) listener.
#[derive(Clone, Debug)]
pub struct LimitChange {
    limiter: Arc<str>,
    from: u32,
    to: u32,
    at: Instant,
    sample: Sample,
}

impl LimitChange {
    /// The limiter's name.
    #[must_use]
    pub fn limiter(&self) -> &str {
        &self.limiter
    }

    /// The limit before the change.
    #[must_use]
    pub fn from(&self) -> u32 {
        self.from
    }

    /// The limit after the change.
    #[must_use]
    pub fn to(&self) -> u32 {
        self.to
    }

    /// When the window that caused it closed.
    #[must_use]
    pub fn at(&self) -> Instant {
        self.at
    }

    /// The window's sample that the algorithm was fed.
    #[must_use]
    pub fn sample(&self) -> &Sample {
        &self.sample
    }
}

impl AdaptiveLimit {
    /// A [`Builder`] around `algorithm`.
    #[must_use]
    pub fn builder(algorithm: impl Limit + 'static) -> Builder {
        Builder::new(algorithm)
    }

    pub(crate) fn from_builder(b: Builder, queue: Option<QueueConfig>) -> Self {
        let telemetry = Telemetry::new(&b.name);
        let limit = b.algorithm.limit().max(1);
        let percentile = b
            .algorithm
            .rtt_percentile()
            .filter(|p| p.is_finite() && *p > 0.0 && *p <= 1.0);
        telemetry.limit.set(f64::from(limit));
        let window_nanos = saturating_nanos(b.window).max(1);
        let stripes = stripes();
        let inner = Arc::new(Inner {
            in_flight: Padded(AtomicU32::new(0)),
            hot: Padded(Hot {
                limit: AtomicU32::new(limit),
                sample_mask: AtomicU32::new(0),
                window_end: AtomicU64::new(window_nanos),
                pinned: AtomicBool::new(b.algorithm.is_pinned()),
            }),
            stripes: (0..stripes)
                .map(|_| {
                    Padded(Stripe {
                        histogram: percentile
                            .map(|_| (0..hist::BUCKETS).map(|_| AtomicU32::new(0)).collect()),
                        ..Stripe::default()
                    })
                })
                .collect(),
            percentile,
            origin: Origin::now(),
            min_rtt_nanos: saturating_nanos(b.min_rtt),
            window_nanos,
            window_samples: b.window_samples,
            algorithm_name: b.algorithm.name(),
            algorithm: Mutex::new(b.algorithm),
            queue: queue.map(|config| Queue {
                config,
                waiters: Mutex::new(VecDeque::new()),
                queued: AtomicU32::new(0),
            }),
            partitions: b
                .partitions
                .into_iter()
                .map(|(name, share)| Partition {
                    name,
                    share,
                    in_flight: Padded(AtomicU32::new(0)),
                })
                .collect(),
            rejected: AtomicU64::new(0),
            name: b.name,
            listener: b.listener,
            telemetry,
        });
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
    /// start time if the call is sampled.
    #[inline]
    fn permit(&self, in_flight: u32, partition: usize) -> Permit {
        let (stripe, tick) = stripe_and_tick();
        let tokens = &self.shared.tokens;
        let token = Arc::clone(&tokens[stripe & (tokens.len() - 1)]);
        let inner = self.inner();
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

    /// The limiter's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner().name
    }

    /// The algorithm's name (`"vegas"`, `"gradient2"`, …).
    #[must_use]
    pub fn algorithm(&self) -> &'static str {
        self.inner().algorithm_name
    }

    /// The current limit.
    #[must_use]
    pub fn limit(&self) -> u32 {
        self.inner().hot.0.limit.load(Ordering::Relaxed)
    }

    /// Calls holding a permit now.
    #[must_use]
    pub fn in_flight(&self) -> u32 {
        self.inner().in_flight.0.load(Ordering::Relaxed)
    }

    /// Calls in `partition` holding a permit now (`None` for an unknown
    /// partition name).
    #[must_use]
    pub fn partition_in_flight(&self, partition: &str) -> Option<u32> {
        let inner = self.inner();
        let i = inner.partition_index(partition)?;
        Some(inner.partitions[i].in_flight.0.load(Ordering::Relaxed))
    }

    /// Calls waiting in the queue now.
    #[must_use]
    pub fn queued(&self) -> u32 {
        self.inner()
            .queue
            .as_ref()
            .map_or(0, |q| q.queued.load(Ordering::Relaxed))
    }

    /// Calls rejected since the limiter was built.
    #[must_use]
    pub fn rejected(&self) -> u64 {
        self.inner().rejected.load(Ordering::Relaxed)
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
    pub(crate) fn acquire_in(&self, partition: usize) -> Result<Permit, Overloaded> {
        let inner = self.inner();
        match inner.try_take(partition) {
            Some(in_flight) => Ok(self.permit(in_flight, partition)),
            None => Err(inner.reject()),
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

/// Permission for one call, released when recorded or dropped.
///
/// From [`AdaptiveLimit::try_acquire`] (the layer's futures hold one too).
/// Report its outcome with [`record`](Self::record); dropping it unrecorded
/// releases it as an ignored (cancelled) call.
pub struct Permit {
    // `None` once recorded (an 8-byte store: no flag byte for a later wide
    // load to trip over).
    token: Option<Arc<Token>>,
    start: u64,
    in_flight: u32,
    partition: usize,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl Permit {
    /// Records the call's outcome and releases the permit: a success feeds
    /// its round-trip time to the window, a failure counts as a drop, an
    /// ignored call only releases.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    /// Records the outcome and releases, once.
    #[inline]
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if let Some(token) = self.token.take() {
            token.inner.complete(
                token.stripe,
                self.start,
                self.in_flight,
                self.partition,
                outcome,
            );
        }
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        self.finish(Outcome::Ignored);
    }
}

impl Inner {
    pub(crate) fn partition_index(&self, name: &str) -> Option<usize> {
        self.partitions.iter().position(|p| &*p.name == name)
    }

    pub(crate) fn has_partitions(&self) -> bool {
        !self.partitions.is_empty()
    }

    #[inline]
    pub(crate) fn has_queue(&self) -> bool {
        self.queue.is_some()
    }

    pub(crate) fn max_wait(&self) -> Option<Duration> {
        self.queue.as_ref().map(|q| q.config.max_wait)
    }

    /// Takes a slot if the limit (or the partition's guarantee) allows;
    /// returns the in-flight count including this call.
    #[inline]
    fn try_take(&self, partition: usize) -> Option<u32> {
        let limit = self.hot.0.limit.load(Ordering::Relaxed);
        let in_flight = &self.in_flight.0;
        // Cheap rejection: a load, no read-modify-write.
        if partition == NO_PARTITION && in_flight.load(Ordering::Relaxed) >= limit {
            return None;
        }
        let prev = in_flight.fetch_add(1, Ordering::Acquire);
        if prev < limit {
            if let Some(p) = self.partitions.get(partition) {
                p.in_flight.0.fetch_add(1, Ordering::Relaxed);
            }
            return Some(prev + 1);
        }
        // The whole limit is in use: the partition's guarantee applies,
        // unless the algorithm pinned the limit for a measurement, which
        // holds only if no call is admitted past it.
        if let Some(p) = self.partitions.get(partition)
            && !self.hot.0.pinned.load(Ordering::Relaxed)
        {
            let held = p.in_flight.0.fetch_add(1, Ordering::Relaxed);
            if held < p.guaranteed(limit) {
                return Some(prev + 1);
            }
            p.in_flight.0.fetch_sub(1, Ordering::Relaxed);
        }
        in_flight.fetch_sub(1, Ordering::Release);
        None
    }

    #[inline]
    fn release_slot(&self, partition: usize) {
        self.in_flight.0.fetch_sub(1, Ordering::Release);
        if let Some(p) = self.partitions.get(partition) {
            p.in_flight.0.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Counts a shed call and returns its error.
    #[inline]
    pub(crate) fn reject(&self) -> Overloaded {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.telemetry.rejected.increment(1);
        Overloaded::new()
    }

    /// Releases a finished call's permit and records its outcome.
    #[inline]
    fn complete(
        &self,
        stripe: usize,
        start: u64,
        in_flight: u32,
        partition: usize,
        outcome: Outcome,
    ) {
        self.release_slot(partition);
        if let Some(q) = &self.queue
            && q.queued.load(Ordering::Acquire) > 0
        {
            self.dispatch();
        }
        let s = &self.stripes[stripe & (self.stripes.len() - 1)].0;
        if !matches!(outcome, Outcome::Success | Outcome::Failure) {
            self.telemetry.ignored.increment(1);
            return;
        }
        if in_flight > s.max_in_flight.load(Ordering::Relaxed) {
            s.max_in_flight.fetch_max(in_flight, Ordering::Relaxed);
        }
        let now = match outcome {
            Outcome::Success => {
                self.telemetry.success.increment(1);
                if start == UNSAMPLED {
                    return;
                }
                let now = self.origin.elapsed_nanos();
                let rtt = now.saturating_sub(start);
                s.measured.fetch_add(1, Ordering::Relaxed);
                if rtt >= self.min_rtt_nanos {
                    s.rtt_sum.fetch_add(rtt, Ordering::Relaxed);
                    s.samples.fetch_add(1, Ordering::Relaxed);
                    if let Some(h) = &s.histogram {
                        h[hist::bucket(rtt)].fetch_add(1, Ordering::Relaxed);
                    }
                }
                now
            }
            Outcome::Failure => {
                self.telemetry.failure.increment(1);
                s.drops.fetch_add(1, Ordering::Relaxed);
                self.origin.elapsed_nanos()
            }
            _ => return,
        };
        if now >= self.hot.0.window_end.load(Ordering::Acquire) {
            self.close_window(now);
        }
    }

    /// Aggregates the window, feeds the algorithm, publishes the new limit.
    #[cold]
    fn close_window(&self, now: u64) {
        let mut algorithm = match self.algorithm.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return, // another thread is closing it
        };
        if now < self.hot.0.window_end.load(Ordering::Acquire) {
            return;
        }
        let (mut sum, mut samples, mut drops, mut max_in_flight) = (0u64, 0u32, 0u32, 0u32);
        let mut measured = 0u64;
        for s in &self.stripes {
            let s = &s.0;
            measured += u64::from(s.measured.swap(0, Ordering::Relaxed));
            sum = sum.saturating_add(s.rtt_sum.swap(0, Ordering::Relaxed));
            samples = samples.saturating_add(s.samples.swap(0, Ordering::Relaxed));
            drops = drops.saturating_add(s.drops.swap(0, Ordering::Relaxed));
            max_in_flight = max_in_flight.max(s.max_in_flight.swap(0, Ordering::Relaxed));
        }
        self.hot
            .0
            .window_end
            .store(now.saturating_add(self.window_nanos), Ordering::Release);
        self.telemetry
            .in_flight
            .set(f64::from(self.in_flight.0.load(Ordering::Relaxed)));
        if let Some(q) = &self.queue {
            self.telemetry
                .queued
                .set(f64::from(q.queued.load(Ordering::Relaxed)));
        }
        let count = samples.saturating_add(drops);
        // A pinned algorithm aggregates its own measurement: a window too
        // small for a limit decision still carries its calls to it, so a
        // measurement completes however slow the calls.
        let needed = if algorithm.is_pinned() {
            1
        } else {
            self.window_samples
        };
        if self.percentile.is_some() && count < needed {
            self.take_percentile(0.5); // empties the histograms
        }
        // Sample every call next window at low rates, else the fewest that
        // keep about SAMPLES_PER_WINDOW.
        let mask = self.hot.0.sample_mask.load(Ordering::Relaxed);
        let calls = measured * (u64::from(mask) + 1);
        let next_mask = if calls < 2 * SAMPLES_PER_WINDOW {
            0
        } else {
            let every = (calls / SAMPLES_PER_WINDOW).min(1 << 16);
            (1u32 << (63 - every.leading_zeros())) - 1
        };
        self.hot.0.sample_mask.store(next_mask, Ordering::Relaxed);
        if count < needed {
            return; // too few calls to say anything: discarded
        }
        let mean = if samples == 0 {
            0
        } else {
            sum / u64::from(samples)
        };
        let rtt = match (self.percentile, samples) {
            (Some(p), 1..) => self.take_percentile(p).unwrap_or(mean),
            _ => mean,
        };
        let sample = Sample::new(
            Duration::from_nanos(now),
            Duration::from_nanos(rtt),
            max_in_flight,
            drops > 0,
        )
        .with_count(count);
        let from = self.hot.0.limit.load(Ordering::Relaxed);
        let to = algorithm.update(&sample).max(1);
        let pinned = algorithm.is_pinned();
        drop(algorithm);
        // Set before a pinned limit is published and cleared after the
        // limit that ends the pin, so no window opens with partition
        // guarantees over a pinned limit.
        if pinned {
            self.hot.0.pinned.store(true, Ordering::Release);
        }
        if to != from {
            self.hot.0.limit.store(to, Ordering::Release);
        }
        if !pinned {
            self.hot.0.pinned.store(false, Ordering::Release);
        }
        if to == from {
            return;
        }
        self.telemetry.limit.set(f64::from(to));
        self.telemetry.changes.increment(1);
        tracing::debug!(limiter = %self.name, from, to, rtt = ?sample.rtt(), in_flight = max_in_flight, dropped = drops > 0, "concurrency limit changed");
        if let Some(listener) = &self.listener {
            listener(&LimitChange {
                limiter: Arc::clone(&self.name),
                from,
                to,
                at: self.origin.to_instant(now),
                sample,
            });
        }
        if to > from && self.queue.is_some() {
            self.dispatch();
        }
    }

    /// Empties the window's histograms and returns their `p` percentile.
    fn take_percentile(&self, p: f64) -> Option<u64> {
        let mut merged = [0u64; hist::BUCKETS];
        for s in &self.stripes {
            if let Some(h) = &s.0.histogram {
                for (m, b) in merged.iter_mut().zip(h.iter()) {
                    *m += u64::from(b.swap(0, Ordering::Relaxed));
                }
            }
        }
        let total: u64 = merged.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * p).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, n) in merged.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(hist::midpoint(i));
            }
        }
        None
    }

    /// Queues a call at the limit.
    pub(crate) fn enqueue(&self, partition: usize) -> Result<Arc<Waiter>, Overloaded> {
        let Some(q) = &self.queue else {
            return Err(self.reject());
        };
        if q.queued.fetch_add(1, Ordering::AcqRel) >= q.config.max_len {
            q.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(self.reject());
        }
        let waiter = Arc::new(Waiter {
            state: AtomicU8::new(WAITING),
            waker: Mutex::new(None),
            partition,
            in_flight: AtomicU32::new(0),
        });
        {
            let mut waiters = q.waiters.lock().unwrap_or_else(PoisonError::into_inner);
            if waiters.len() >= 2 * q.config.max_len as usize {
                waiters.retain(|w| w.state.load(Ordering::Acquire) == WAITING);
            }
            waiters.push_back(Arc::clone(&waiter));
        }
        // A permit released between the failed take and the push would
        // otherwise wake nobody.
        self.dispatch();
        Ok(waiter)
    }

    /// Takes the waiter out of the queue; `false` if it was granted a
    /// permit first (the caller then owns that permit).
    pub(crate) fn cancel(&self, waiter: &Waiter) -> bool {
        if waiter
            .state
            .compare_exchange(WAITING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            if let Some(q) = &self.queue {
                q.queued.fetch_sub(1, Ordering::AcqRel);
            }
            true
        } else {
            false
        }
    }

    /// Grants permits to waiters while the limit allows.
    fn dispatch(&self) {
        let Some(q) = &self.queue else { return };
        let mut wake = Vec::new();
        {
            let mut waiters = q.waiters.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                let next = match q.config.order {
                    QueueOrder::Fifo => waiters.front(),
                    QueueOrder::Lifo => waiters.back(),
                };
                let Some(w) = next else { break };
                if w.state.load(Ordering::Acquire) != WAITING {
                    pop(&mut waiters, q.config.order);
                    continue;
                }
                let Some(in_flight) = self.try_take(w.partition) else {
                    break;
                };
                let Some(w) = pop(&mut waiters, q.config.order) else {
                    break;
                };
                w.in_flight.store(in_flight, Ordering::Release);
                if w.state
                    .compare_exchange(WAITING, GRANTED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    q.queued.fetch_sub(1, Ordering::AcqRel);
                    let waker = w
                        .waker
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take();
                    if let Some(waker) = waker {
                        wake.push(waker);
                    }
                } else {
                    self.release_slot(w.partition);
                }
            }
        }
        for waker in wake {
            waker.wake();
        }
    }

    /// Releases the permit a cancelled-too-late waiter was granted.
    pub(crate) fn release_granted(&self, waiter: &Waiter) {
        self.release_slot(waiter.partition);
        if self.queue.is_some() {
            self.dispatch();
        }
    }
}

fn pop(waiters: &mut VecDeque<Arc<Waiter>>, order: QueueOrder) -> Option<Arc<Waiter>> {
    match order {
        QueueOrder::Fifo => waiters.pop_front(),
        QueueOrder::Lifo => waiters.pop_back(),
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::hist;

    #[test]
    fn histogram_buckets_are_within_five_percent() {
        for nanos in [
            1_024u64,
            100_000,
            123_456,
            20_000_000,
            999_999_999,
            60_000_000_000,
        ] {
            let mid = hist::midpoint(hist::bucket(nanos)) as f64;
            let err = (mid - nanos as f64).abs() / nanos as f64;
            assert!(err <= 0.0625, "{nanos}: midpoint {mid}, error {err}");
        }
        let mut last = 0;
        for i in 0..hist::BUCKETS {
            let m = hist::midpoint(i);
            assert!(m > last);
            assert_eq!(hist::bucket(m), i);
            last = m;
        }
    }
}
