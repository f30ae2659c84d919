//! Coalescing: one load in flight per key, its leader and its waiters.

use std::error::Error;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use buttress_core::BoxError;
use tokio::sync::Notify;

use super::{Shared, lock};
use crate::error::CoalescedError;
use crate::policy::MakeError;
use crate::store::Store;

/// What a finished load hands its waiters.
pub(super) enum Outcome<V> {
    Value(V),
    Failed(Arc<dyn Error + Send + Sync>),
    /// The load failed with an error the policy chose to cache: every
    /// waiter gets its own copy, as later requests will.
    Error(MakeError),
    /// The leader's future was dropped: a waiter takes over.
    Abandoned,
}

impl<V: Clone> Clone for Outcome<V> {
    fn clone(&self) -> Self {
        match self {
            Self::Value(v) => Self::Value(v.clone()),
            Self::Failed(e) => Self::Failed(Arc::clone(e)),
            Self::Error(make) => Self::Error(Arc::clone(make)),
            Self::Abandoned => Self::Abandoned,
        }
    }
}

/// One load in flight, shared by its leader and its waiters.
pub(crate) struct Flight<V> {
    outcome: Mutex<Option<Outcome<V>>>,
    done: Notify,
}

impl<V: Clone> Flight<V> {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            outcome: Mutex::new(None),
            done: Notify::new(),
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
