//! The limiter's shared state ([`Inner`]): admission, release, completion,
//! the close of each sampling window, and the queue and partitions as the
//! limit sees them.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use buttress_core::classify::Outcome;
use buttress_core::stripe::Padded;
use buttress_core::telemetry::{Count, Name, Registration};
use buttress_core::time::Origin;

use super::partition::{NO_PARTITION, Partition};
use super::queue::{Queue, Waiter};
use super::snapshot::AdaptiveLimitSnapshot;
use super::window::{self, Stripe, UNSAMPLED};
use crate::algorithm::{Limit, Sample};
use crate::change::{LimitChange, Listener};
use crate::error::Overloaded;

/// Read on every call, written once per window: kept apart from the
/// in-flight counter, which every call writes.
pub(super) struct Hot {
    pub(super) limit: AtomicU32,
    /// A call's RTT is sampled when its stripe's admitted count (before
    /// it) `& sample_mask` is 0: every call at low rates, about
    /// [`SAMPLES_PER_WINDOW`](window::SAMPLES_PER_WINDOW) per second of
    /// window at high ones.
    pub(super) sample_mask: AtomicU32,
    pub(super) window_end: AtomicU64,
    /// The algorithm pinned the limit for a measurement
    /// ([`Limit::is_pinned`]): partition guarantees do not apply.
    pub(super) pinned: AtomicBool,
}

/// What the last fed window left for the RTT gauges, in nanoseconds.
#[derive(Default)]
pub(super) struct Rtts {
    /// The RTT of the last window fed to the algorithm.
    pub(super) window: AtomicU64,
    /// The algorithm's no-load RTT ([`Limit::no_load_rtt`]); 0 for none.
    pub(super) no_load: AtomicU64,
}

pub(crate) struct Inner {
    pub(super) in_flight: Padded<AtomicU32>,
    pub(super) hot: Padded<Hot>,
    pub(super) stripes: Box<[Padded<Stripe>]>,
    /// The window aggregate the algorithm asked for: a percentile, or the
    /// mean when `None`.
    pub(super) percentile: Option<f64>,
    pub(super) origin: Origin,
    /// Successes faster than this are not fed to the window.
    pub(super) sample_floor_nanos: u64,
    /// A fixed window's length, or `None` for windows scaled to the RTT.
    pub(super) window_fixed: Option<u64>,
    /// When the open window began.
    pub(super) window_start: AtomicU64,
    pub(super) window_samples: u32,
    pub(super) algorithm: Mutex<Box<dyn Limit>>,
    pub(super) algorithm_name: &'static str,
    pub(super) queue: Option<Queue>,
    pub(super) partitions: Box<[Partition]>,
    /// Calls shed, by the thread that shed them.
    pub(super) rejected: Count,
    /// Limit changes (once per window at most).
    pub(super) changes: AtomicU64,
    pub(super) rtts: Rtts,
    pub(super) listener: Option<Listener>,
    /// The claim on the limiter's name, held as long as the limiter lives.
    pub(super) registration: Registration,
}

impl Inner {
    /// The limiter's effective name.
    #[inline]
    pub(crate) fn name(&self) -> Name {
        self.registration.name()
    }

    pub(crate) fn partition_index(&self, name: &str) -> Option<usize> {
        self.partitions.iter().position(|p| &*p.name == name)
    }

    pub(crate) fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    pub(crate) fn has_partitions(&self) -> bool {
        !self.partitions.is_empty()
    }

    #[inline]
    pub(crate) fn has_queue(&self) -> bool {
        self.queue.is_some()
    }

    pub(crate) fn max_wait(&self) -> Option<Duration> {
        self.queue.as_ref().map(Queue::max_wait)
    }

    /// The next window's length: the fixed window, or
    /// [`WINDOW_RTTS`](window::WINDOW_RTTS) times the last window's RTT
    /// within [`MIN_WINDOW`](window::MIN_WINDOW) and
    /// [`MAX_WINDOW`](window::MAX_WINDOW).
    pub(super) fn window_len(&self) -> u64 {
        self.window_fixed
            .unwrap_or_else(|| window::rtt_scaled(self.rtts.window.load(Ordering::Relaxed)))
    }

    /// The current limit.
    pub(crate) fn limit(&self) -> u32 {
        self.hot.0.limit.load(Ordering::Relaxed)
    }

    /// Calls holding a permit now.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.0.load(Ordering::Relaxed)
    }

    /// Every counter, read now (see [`AdaptiveLimit::snapshot`](crate::AdaptiveLimit::snapshot)).
    pub(crate) fn snapshot(&self) -> AdaptiveLimitSnapshot {
        let (admitted, failures) = self.stripes.iter().fold((0u64, 0u64), |(a, f), s| {
            (
                a.wrapping_add(s.0.admitted.load(Ordering::Relaxed)),
                f.wrapping_add(s.0.failures.load(Ordering::Relaxed)),
            )
        });
        let (queued, queue_entered, queue_timeouts) = self.queue.as_ref().map_or((0, 0, 0), |q| {
            (
                q.queued.load(Ordering::Relaxed),
                q.entered.load(Ordering::Relaxed),
                q.timeouts.load(Ordering::Relaxed),
            )
        });
        let nanos = |a: &AtomicU64| {
            let n = a.load(Ordering::Relaxed);
            (n > 0).then(|| Duration::from_nanos(n))
        };
        AdaptiveLimitSnapshot {
            limit: self.limit(),
            in_flight: self.in_flight(),
            queued,
            admitted,
            rejected: self.rejected.get(),
            failures,
            limit_changes: self.changes.load(Ordering::Relaxed),
            queue_entered,
            queue_timeouts,
            rtt: nanos(&self.rtts.window),
            no_load_rtt: nanos(&self.rtts.no_load),
        }
    }

    /// Takes a slot if the limit (or the partition's guarantee) allows;
    /// returns the in-flight count including this call.
    #[inline]
    pub(super) fn try_take(&self, partition: usize) -> Option<u32> {
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
    pub(super) fn release_slot(&self, partition: usize) {
        self.in_flight.0.fetch_sub(1, Ordering::Release);
        if let Some(p) = self.partitions.get(partition) {
            p.in_flight.0.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Counts a call in `partition` shed and returns its error.
    #[inline]
    pub(crate) fn reject(&self, partition: usize) -> Overloaded {
        self.rejected.incr();
        if let Some(p) = self.partitions.get(partition) {
            p.rejected.incr();
        }
        Overloaded::new(self.name())
    }

    /// Releases a finished call's permit and records its outcome.
    #[inline]
    pub(super) fn complete(
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
        if !matches!(outcome, Outcome::Success | Outcome::Failure) {
            return;
        }
        let s = &self.stripes[stripe & (self.stripes.len() - 1)].0;
        s.in_flight(in_flight);
        let now = if outcome == Outcome::Success {
            if start == UNSAMPLED {
                return;
            }
            let now = self.origin.elapsed_nanos();
            s.success(now.saturating_sub(start), self.sample_floor_nanos);
            now
        } else {
            s.failure();
            self.origin.elapsed_nanos()
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
        // A pinned algorithm aggregates its own measurement: a window too
        // small for a limit decision still carries its calls to it, so a
        // measurement completes however slow the calls.
        let needed = if algorithm.is_pinned() {
            1
        } else {
            self.window_samples
        };
        let len = self.window_len();
        // An RTT-scaled window with too few calls stays open, looked at
        // again every shortest window, up to the longest window, so a small
        // limit (or the first window, before any RTT) is fed as soon as it
        // has its calls.
        let age = now.saturating_sub(self.window_start.load(Ordering::Relaxed));
        if self.window_fixed.is_none() && age < window::MAX_WINDOW {
            let (count, mean) = window::so_far(&self.stripes);
            // Before any RTT, the first calls to complete are the fastest
            // of their cohort: the first window also lasts 4 of its RTTs.
            let first =
                self.rtts.window.load(Ordering::Relaxed) == 0 && age < window::rtt_scaled(mean);
            if count < needed || first {
                self.hot
                    .0
                    .window_end
                    .store(now.saturating_add(window::MIN_WINDOW), Ordering::Release);
                return;
            }
        }
        let w = window::drain(&self.stripes);
        self.window_start.store(now, Ordering::Relaxed);
        self.hot
            .0
            .window_end
            .store(now.saturating_add(len), Ordering::Release);
        let count = w.count();
        if self.percentile.is_some() && count < needed {
            window::take_percentile(&self.stripes, 0.5); // empties the histograms
        }
        let mask = self.hot.0.sample_mask.load(Ordering::Relaxed);
        let target = if self.window_fixed.is_some() {
            window::SAMPLES_PER_WINDOW
        } else {
            window::samples_for(len)
        };
        self.hot.0.sample_mask.store(
            window::next_sample_mask(w.measured, mask, target),
            Ordering::Relaxed,
        );
        if count < needed {
            return; // too few calls to say anything: discarded
        }
        let rtt = match (self.percentile, w.samples) {
            (Some(p), 1..) => window::take_percentile(&self.stripes, p).unwrap_or(w.mean()),
            _ => w.mean(),
        };
        let sample = Sample::new(
            Duration::from_nanos(now),
            Duration::from_nanos(rtt),
            w.max_in_flight,
            w.drops > 0,
        )
        .with_count(count);
        let from = self.hot.0.limit.load(Ordering::Relaxed);
        let to = algorithm.update(&sample).max(1);
        let pinned = algorithm.is_pinned();
        let no_load = algorithm
            .no_load_rtt()
            .map_or(0, buttress_core::time::saturating_nanos);
        drop(algorithm);
        if rtt > 0 {
            self.rtts.window.store(rtt, Ordering::Relaxed);
            if self.window_fixed.is_none() {
                // The next window scales with this one's RTT.
                self.hot
                    .0
                    .window_end
                    .store(now.saturating_add(self.window_len()), Ordering::Release);
            }
        }
        self.rtts.no_load.store(no_load, Ordering::Relaxed);
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
        self.changes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            name = %self.name(),
            algorithm = self.algorithm_name,
            from,
            to,
            rtt = ?sample.rtt(),
            in_flight = w.max_in_flight,
            dropped = w.drops > 0,
            "concurrency limit changed"
        );
        if let Some(listener) = &self.listener {
            listener(&LimitChange {
                name: self.name(),
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

    /// Queues a call at the limit.
    ///
    /// # Errors
    ///
    /// [`Overloaded`] (counted as shed) when there is no queue or it is
    /// full.
    pub(crate) fn enqueue(&self, partition: usize) -> Result<Arc<Waiter>, Overloaded> {
        let Some(q) = &self.queue else {
            return Err(self.reject(partition));
        };
        let waiter = q
            .enter(partition, self.origin.elapsed_nanos())
            .map_err(|_| self.reject(partition))?;
        self.dispatch();
        Ok(waiter)
    }

    /// Takes the waiter out of the queue; `false` if it was granted a
    /// permit first (the caller then owns that permit).
    pub(crate) fn cancel(&self, waiter: &Waiter) -> bool {
        self.queue.as_ref().is_some_and(|q| q.cancel(waiter))
    }

    /// Counts a cancelled waiter that waited the maximum wait as shed, and
    /// returns its error.
    pub(crate) fn timed_out(&self, waiter: &Waiter) -> Overloaded {
        if let Some(q) = &self.queue {
            q.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        self.reject(waiter.partition)
    }

    /// Grants permits to waiters while the limit allows.
    fn dispatch(&self) {
        if let Some(q) = &self.queue {
            q.dispatch(|p| self.try_take(p), |p| self.release_slot(p));
        }
    }

    /// Releases the permit a cancelled-too-late waiter was granted.
    pub(crate) fn release_granted(&self, waiter: &Waiter) {
        self.release_slot(waiter.partition);
        self.dispatch();
    }
}
