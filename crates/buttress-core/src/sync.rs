//! Small synchronisation helpers shared by the layers.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, taking over a poisoned lock: every buttress mutex guards
/// state that stays consistent if a holder panics (a panic inside a
/// user's callback must not take a layer down with it).
#[inline]
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
