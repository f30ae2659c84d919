//! The queue of calls waiting at the limit for a permit.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;

use buttress_core::sync::lock;

use crate::config::{QueueConfig, QueueOrder};

const WAITING: u8 = 0;
const GRANTED: u8 = 1;
const CANCELLED: u8 = 2;

/// A call waiting in the queue.
pub(crate) struct Waiter {
    state: AtomicU8,
    waker: Mutex<Option<Waker>>,
    pub(super) partition: usize,
    pub(super) in_flight: AtomicU32,
    /// When the call entered the queue (nanoseconds since the limiter's
    /// origin): a granted call is timed from here, so the wait counts in
    /// its round-trip time and the algorithm sees overload the queue
    /// absorbs.
    pub(super) since: u64,
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
        let mut slot = lock(&self.waker);
        match &mut *slot {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }
}

/// The queue was full.
#[derive(Debug)]
pub(super) struct Full;

/// The waiting calls and their counts.
pub(super) struct Queue {
    config: QueueConfig,
    waiters: Mutex<VecDeque<Arc<Waiter>>>,
    /// Calls waiting now.
    pub(super) queued: AtomicU32,
    /// Calls that entered the queue since the limiter was built.
    pub(super) entered: AtomicU64,
    /// Queued calls shed after waiting the maximum wait.
    pub(super) timeouts: AtomicU64,
}

impl Queue {
    pub(super) fn new(config: QueueConfig) -> Self {
        Self {
            config,
            waiters: Mutex::new(VecDeque::new()),
            queued: AtomicU32::new(0),
            entered: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        }
    }

    pub(super) fn max_wait(&self) -> Duration {
        self.config.max_wait
    }

    /// Adds a waiter for `partition` to the queue, unless it is full. The
    /// caller then [dispatches](Self::dispatch): a permit released between
    /// its failed take and this push would otherwise wake nobody.
    pub(super) fn enter(&self, partition: usize, since: u64) -> Result<Arc<Waiter>, Full> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.config.max_len {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Full);
        }
        self.entered.fetch_add(1, Ordering::Relaxed);
        let waiter = Arc::new(Waiter {
            state: AtomicU8::new(WAITING),
            waker: Mutex::new(None),
            partition,
            in_flight: AtomicU32::new(0),
            since,
        });
        let mut waiters = lock(&self.waiters);
        if waiters.len() >= 2 * self.config.max_len as usize {
            waiters.retain(|w| w.state.load(Ordering::Acquire) == WAITING);
        }
        waiters.push_back(Arc::clone(&waiter));
        Ok(waiter)
    }

    /// Takes the waiter out of the queue; `false` if it was granted a
    /// permit first (the caller then owns that permit).
    pub(super) fn cancel(&self, waiter: &Waiter) -> bool {
        let cancelled = waiter
            .state
            .compare_exchange(WAITING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if cancelled {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
        cancelled
    }

    /// Grants permits to waiters, in the configured order, while `take`
    /// finds a slot for the next one's partition (returning the in-flight
    /// count with it); `release` gives back a slot taken for a waiter that
    /// was cancelled meanwhile. Wakes the granted waiters after the lock.
    pub(super) fn dispatch(
        &self,
        mut take: impl FnMut(usize) -> Option<u32>,
        mut release: impl FnMut(usize),
    ) {
        let order = self.config.order;
        let mut wake = Vec::new();
        {
            let mut waiters = lock(&self.waiters);
            loop {
                let next = match order {
                    QueueOrder::Fifo => waiters.front(),
                    QueueOrder::Lifo => waiters.back(),
                };
                let Some(w) = next else { break };
                if w.state.load(Ordering::Acquire) != WAITING {
                    pop(&mut waiters, order);
                    continue;
                }
                let Some(in_flight) = take(w.partition) else {
                    break;
                };
                let Some(w) = pop(&mut waiters, order) else {
                    break;
                };
                w.in_flight.store(in_flight, Ordering::Release);
                if w.state
                    .compare_exchange(WAITING, GRANTED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    self.queued.fetch_sub(1, Ordering::AcqRel);
                    let waker = lock(&w.waker).take();
                    if let Some(waker) = waker {
                        wake.push(waker);
                    }
                } else {
                    release(w.partition);
                }
            }
        }
        for waker in wake {
            waker.wake();
        }
    }
}

fn pop(waiters: &mut VecDeque<Arc<Waiter>>, order: QueueOrder) -> Option<Arc<Waiter>> {
    match order {
        QueueOrder::Fifo => waiters.pop_front(),
        QueueOrder::Lifo => waiters.pop_back(),
    }
}
