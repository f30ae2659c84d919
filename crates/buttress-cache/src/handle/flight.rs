//! Coalescing: one load in flight per key, its leader and its waiters.

use std::error::Error;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use buttress_core::BoxError;
use buttress_core::sync::lock;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::Shared;
use crate::error::{CoalescedError, LoadTimedOut};
use crate::policy::MakeError;
use crate::store::Store;

/// What a finished load hands its waiters.
pub(super) enum Outcome<V> {
    Value(V),
    Failed(Arc<dyn Error + Send + Sync>),
    /// The load failed with an error the policy chose to cache: every
    /// waiter gets its own copy, as later requests will.
    Error(MakeError),
    /// The load ran past its deadline and was dropped.
    TimedOut(LoadTimedOut),
    /// The leader's future was dropped: a waiter takes over.
    Abandoned,
}

impl<V: Clone> Clone for Outcome<V> {
    fn clone(&self) -> Self {
        match self {
            Self::Value(v) => Self::Value(v.clone()),
            Self::Failed(e) => Self::Failed(Arc::clone(e)),
            Self::Error(make) => Self::Error(Arc::clone(make)),
            Self::TimedOut(e) => Self::TimedOut(e.clone()),
            Self::Abandoned => Self::Abandoned,
        }
    }
}

/// Whether a flight's load may still run.
enum Cancel {
    /// Not cancelled, and no task to abort (a request's own load, or a
    /// refresh whose task is being spawned).
    Open,
    /// A background refresh's task, aborted if the flight is cancelled.
    Task(AbortHandle),
    /// Cancelled: a task handed in later is aborted at once.
    Cancelled,
}

/// One load in flight, shared by its leader and its waiters.
pub(crate) struct Flight<V> {
    outcome: Mutex<Option<Outcome<V>>>,
    done: Notify,
    cancel: Mutex<Cancel>,
}

impl<V> Flight<V> {
    /// Cancels the flight's background refresh, if it is one: its task is
    /// aborted (now, or as soon as it is handed in), which drops the
    /// backend call and wakes its waiters to lead loads of their own. A
    /// request's own load is left to its caller.
    pub(crate) fn cancel(&self) {
        if let Cancel::Task(task) = std::mem::replace(&mut *lock(&self.cancel), Cancel::Cancelled) {
            task.abort();
        }
    }

    /// Hands in the task running this flight's refresh.
    pub(super) fn run_by(&self, task: AbortHandle) {
        let mut cancel = lock(&self.cancel);
        if matches!(*cancel, Cancel::Cancelled) {
            task.abort();
        } else {
            *cancel = Cancel::Task(task);
        }
    }
}

impl<V: Clone> Flight<V> {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            outcome: Mutex::new(None),
            done: Notify::new(),
            cancel: Mutex::new(Cancel::Open),
        })
    }

    pub(super) async fn wait(&self) -> Outcome<V> {
        loop {
            let notified = self.done.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(outcome) = lock(&self.outcome).as_ref() {
                return outcome.clone();
            }
            notified.await;
        }
    }
}

/// The leader's hold on a flight. Dropped unfinished (the leader's future
/// was cancelled), it marks the flight abandoned and wakes the waiters,
/// one of which leads the next attempt.
pub(crate) struct Lead<K: Hash + Eq, V: Clone, St> {
    shared: Arc<Shared<K, V, St>>,
    key: Option<K>,
    flight: Arc<Flight<V>>,
}

impl<K: Hash + Eq, V: Clone, St> Lead<K, V, St> {
    /// The flight, without holding it (a waiter counts as a strong
    /// reference).
    pub(super) fn flight(&self) -> std::sync::Weak<Flight<V>> {
        Arc::downgrade(&self.flight)
    }

    fn unregister(&mut self) -> Option<K> {
        let key = self.key.take()?;
        let mut map = lock(&self.shared.inflight);
        if map.get(&key).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
            map.remove(&key);
        }
        Some(key)
    }

    /// Hands `outcome()` to the waiters, if any.
    pub(super) fn finish(mut self, outcome: impl FnOnce() -> Outcome<V>) {
        // Unregistered: nobody can join any more, so a count of one means
        // nobody waits (and nothing needs to be stored or woken).
        if self.unregister().is_some() && Arc::strong_count(&self.flight) > 1 {
            *lock(&self.flight.outcome) = Some(outcome());
            self.flight.done.notify_waiters();
        }
    }

    /// Hands `error` to the waiters; returns what the leader's caller gets:
    /// the error itself when nobody waited, else a [`CoalescedError`].
    pub(super) fn fail(mut self, error: BoxError) -> BoxError {
        self.unregister();
        // Unregistered: nobody can join any more, so a count of one means
        // nobody waits.
        if Arc::strong_count(&self.flight) == 1 {
            return error;
        }
        let shared: Arc<dyn Error + Send + Sync> = Arc::from(error);
        *lock(&self.flight.outcome) = Some(Outcome::Failed(Arc::clone(&shared)));
        self.flight.done.notify_waiters();
        Box::new(CoalescedError::new(shared))
    }
}

impl<K: Hash + Eq, V: Clone, St> Drop for Lead<K, V, St> {
    fn drop(&mut self) {
        if self.unregister().is_some() {
            *lock(&self.flight.outcome) = Some(Outcome::Abandoned);
            self.flight.done.notify_waiters();
        }
    }
}

impl<K, V, St> Shared<K, V, St>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    St: Store<K, V>,
{
    /// Joins the flight for `key`, or starts one and leads it.
    pub(super) fn join(self: &Arc<Self>, key: &K) -> Result<Lead<K, V, St>, Arc<Flight<V>>> {
        let mut map = lock(&self.inflight);
        if let Some(flight) = map.get(key) {
            return Err(Arc::clone(flight));
        }
        let flight = Flight::new();
        map.insert(key.clone(), Arc::clone(&flight));
        Ok(Lead {
            shared: Arc::clone(self),
            key: Some(key.clone()),
            flight,
        })
    }
}
