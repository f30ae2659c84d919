//! The tag index: which keys' entries carry each tag, swept of entries the
//! store no longer holds.
//!
//! The store does not tell the cache what it evicts (a remote store cannot),
//! so the index cannot follow evictions, expiry, deletions by key or
//! predicate, or untagged rewrites as they happen. Instead each (tag, key)
//! pair remembers the version of the write that carried the tag, and when
//! the index has grown to twice what the last sweep found live, a sweep
//! (on a task of its own) asks the store about every indexed key and drops
//! the pairs whose version is gone.
//!
//! # Why a sweep never loses a tagged entry
//!
//! [`Cache::invalidate_tag`](crate::Cache::invalidate_tag) must find every
//! key whose current entry carries the tag. A sweep removes the pair
//! `(tag, key, v)` only when
//!
//! 1. the pair was in the index when the sweep took its snapshot, and a
//!    write inserts its pairs only once the store's `put` of version `v`
//!    has completed, or was dropped unfinished (see [`PendingTags`]): so
//!    whatever that `put` did was done before the sweep asked the store
//!    about `key` (`try_get`, else `get_many`);
//! 2. the store then answered with no entry, another version, or version
//!    `v` no longer servable. Versions are unique per write and entries are
//!    immutable, so version `v` is gone for good (or never served again:
//!    time only moves forward). A key the store gave no answer for keeps
//!    its pairs;
//! 3. the index still holds exactly `v` for the pair when the sweep removes
//!    it (under the lock). A write of `key` with the tag since then has put
//!    its own, newer version in the pair, which is kept.
//!
//! So a removed pair only ever stood for an entry that no request can be
//! answered with, and every servable tagged entry keeps its pair.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use buttress_core::sync::lock;
use buttress_core::time::Instant;

use crate::entry::{Entry, Tag};
use crate::store::Store;

/// A sweep starts when the index holds more than twice
/// `max(pairs the last sweep found live, MIN_SWEEP_BASE)` pairs: sweeps
/// cost O(1) store lookups per insert amortised, and a small index is
/// never swept.
const MIN_SWEEP_BASE: usize = 1024;

/// Keys a sweep asks the store about at once (one `get_many` for a store
/// that cannot answer synchronously).
const SWEEP_BATCH: usize = 64;

/// `Tag -> key -> version of the write that carried the tag`.
pub(crate) struct TagIndex<K> {
    inner: Mutex<Inner<K>>,
    /// Set while a sweep is claimed or running: at most one at a time.
    sweeping: Arc<AtomicBool>,
}

struct Inner<K> {
    tags: HashMap<Tag, HashMap<K, u64>>,
    /// The number of (tag, key) pairs in `tags`.
    pairs: usize,
    /// A sweep is due when `pairs` exceeds this.
    sweep_above: usize,
}

/// The right to run the one sweep; dropping it (the sweep finished, or its
/// task was dropped unpolled) lets the next one start.
#[must_use]
pub(crate) struct SweepClaim(Arc<AtomicBool>);

impl Drop for SweepClaim {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The pairs of a write whose `put` is under way: inserted by
/// [`commit`](Self::commit) once the `put` has completed, or on drop if the
/// write's future is dropped during the `put` (which may have landed: the
/// pair must then exist, and a sweep removes it if the entry did not land).
pub(crate) struct PendingTags<'a, K: Hash + Eq + Clone> {
    index: &'a TagIndex<K>,
    key: K,
    version: u64,
    tags: Vec<Tag>,
}

impl<K: Hash + Eq + Clone> PendingTags<'_, K> {
    /// The tags of the write.
    pub(crate) fn tags(&self) -> &[Tag] {
        &self.tags
    }

    /// Inserts the pairs; returns the claim on a sweep if one is due.
    pub(crate) fn commit(mut self) -> Option<SweepClaim> {
        let tags = std::mem::take(&mut self.tags);
        self.index.insert(&self.key, self.version, &tags)
    }
}

impl<K: Hash + Eq + Clone> Drop for PendingTags<'_, K> {
    fn drop(&mut self) {
        if !self.tags.is_empty() {
            // Dropped mid-`put`: no sweep from here, the next insert
            // starts it.
            let _ = self.index.insert(&self.key, self.version, &self.tags);
        }
    }
}

impl<K> TagIndex<K> {
    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                tags: HashMap::new(),
                pairs: 0,
                sweep_above: 2 * MIN_SWEEP_BASE,
            }),
            sweeping: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The number of (tag, key) pairs held.
    pub(crate) fn pairs(&self) -> usize {
        lock(&self.inner).pairs
    }

    /// Forgets every pair.
    pub(crate) fn clear(&self) {
        let mut inner = lock(&self.inner);
        inner.tags.clear();
        inner.pairs = 0;
    }
}

impl<K: Hash + Eq + Clone> TagIndex<K> {
    /// Pairs to insert once the `put` of `version` of `key` has completed;
    /// `None` when there are no tags.
    pub(crate) fn pending(
        &self,
        key: &K,
        version: u64,
        tags: Vec<Tag>,
    ) -> Option<PendingTags<'_, K>> {
        (!tags.is_empty()).then(|| PendingTags {
            index: self,
            key: key.clone(),
            version,
            tags,
        })
    }

    /// Records that version `version` of `key` carries `tags`. Returns the
    /// claim on a sweep when the index has grown past its bound and no
    /// sweep is running.
    fn insert(&self, key: &K, version: u64, tags: &[Tag]) -> Option<SweepClaim> {
        let due = {
            let mut guard = lock(&self.inner);
            let inner = &mut *guard;
            for tag in tags {
                let keys = inner.tags.entry(Arc::clone(tag)).or_default();
                match keys.entry(key.clone()) {
                    // The newest write's version: writes of one key are
                    // put in version order, and an older write whose
                    // future was dropped mid-`put` may insert late.
                    Slot::Occupied(mut slot) => {
                        let v = slot.get_mut();
                        *v = (*v).max(version);
                    }
                    Slot::Vacant(slot) => {
                        slot.insert(version);
                        inner.pairs += 1;
                    }
                }
            }
            inner.pairs > inner.sweep_above
        };
        if due
            && self
                .sweeping
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return Some(SweepClaim(Arc::clone(&self.sweeping)));
        }
        None
    }

    /// Removes `tag`'s pairs and returns them.
    pub(crate) fn remove_tag(&self, tag: &str) -> HashMap<K, u64> {
        let mut inner = lock(&self.inner);
        let keys = inner.tags.remove(tag).unwrap_or_default();
        inner.pairs -= keys.len();
        keys
    }

    /// Drops the pairs whose version the store no longer holds servable
    /// (see the module docs for why this never drops a live pair). Holds
    /// the index's lock only to copy it and to remove what it found.
    pub(crate) async fn sweep<V, St>(&self, store: &St, claim: SweepClaim)
    where
        K: Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        St: Store<K, V>,
    {
        let snapshot: Vec<(Tag, K, u64)> = {
            let inner = lock(&self.inner);
            let mut out = Vec::with_capacity(inner.pairs);
            for (tag, keys) in &inner.tags {
                for (key, &version) in keys {
                    out.push((Arc::clone(tag), key.clone(), version));
                }
            }
            out
        };
        let copied = snapshot.len();
        // By key, so a key with several tags is asked about once.
        let mut by_key: HashMap<K, Vec<(Tag, u64)>> = HashMap::new();
        for (tag, key, version) in snapshot {
            by_key.entry(key).or_default().push((tag, version));
        }
        let by_key: Vec<(K, Vec<(Tag, u64)>)> = by_key.into_iter().collect();
        let mut dead = Vec::new();
        for batch in by_key.chunks(SWEEP_BATCH) {
            // `None`: not known (yet), and then kept.
            let mut answers: Vec<Option<Option<Entry<V>>>> =
                batch.iter().map(|(key, _)| store.try_get(key)).collect();
            let unanswered: Vec<K> = batch
                .iter()
                .zip(&answers)
                .filter(|(_, answer)| answer.is_none())
                .map(|((key, _), _)| key.clone())
                .collect();
            if !unanswered.is_empty() {
                // One round trip per batch for a remote store.
                let mut fetched = store.get_many(&unanswered).await.into_iter();
                for answer in answers.iter_mut().filter(|a| a.is_none()) {
                    *answer = fetched.next();
                }
            }
            let now = Instant::now();
            for ((key, pairs), answer) in batch.iter().zip(answers) {
                let Some(entry) = answer else { continue };
                let current = entry.filter(|e| e.is_servable(now)).map(|e| e.version());
                for (tag, version) in pairs {
                    if current != Some(*version) {
                        dead.push((Arc::clone(tag), key.clone(), *version));
                    }
                }
            }
            // A long sweep on a runtime yields now and then.
            tokio::task::coop::consume_budget().await;
        }
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        let mut removed = 0;
        for (tag, key, version) in dead {
            let Some(keys) = inner.tags.get_mut(&tag) else {
                continue; // invalidated meanwhile
            };
            if keys.get(&key) == Some(&version) {
                keys.remove(&key);
                inner.pairs -= 1;
                removed += 1;
                if keys.is_empty() {
                    inner.tags.remove(&tag);
                }
            }
        }
        // From what this sweep found live, not from the pairs written
        // while it ran: those count towards the next sweep.
        inner.sweep_above = 2 * (copied - removed).max(MIN_SWEEP_BASE);
        drop(guard);
        drop(claim);
    }
}
