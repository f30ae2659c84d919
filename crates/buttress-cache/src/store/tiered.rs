//! `Tiered<L1, L2>`: an in-process store in front of a shared one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use buttress_core::time::Instant;

use super::{Evictions, Store};
use crate::entry::{Entry, Tag};

/// Two stores as one: a small, fast `L1` (an in-process store) in front of
/// a shared `L2` (a [`RedisStore`](super::RedisStore), say).
///
/// - A read answers from L1 when L1 holds a fresh entry: at once, and
///   synchronously (the layer's hit path stays the in-process one).
/// - Otherwise it reads L2; an entry found there is promoted into L1 as
///   it is, so L1 keeps it exactly as long as L2's copy stays fresh (its
///   timestamps travel with it). If L2 has nothing fresher, the L1 entry
///   (stale, still servable for stale-while-revalidate or stale-if-error)
///   is the answer.
/// - A write goes to L2, then L1; a delete drops L2's copy, then L1's.
///   A promotion that raced a write or a delete (it read L2 before the
///   write landed) is undone, so L1 never keeps a copy older than what a
///   completed write or delete left.
/// - The cache's coalescing spans both tiers: one backend call per key
///   per instance, whichever tier missed.
///
/// [`len`](Store::len), [`weighted_size`](Store::weighted_size) and
/// [`evictions`](Store::evictions) are L1's: what this process holds.
/// [`delete_where`](Store::delete_where) runs on both (on a
/// [`RedisStore`](super::RedisStore), L2's walks Redis with `SCAN` and
/// asks the other instances to empty their L1).
///
/// On a [`RedisStore`](super::RedisStore) L2,
/// [`subscribe_invalidations`](Self::subscribe_invalidations) keeps L1
/// coherent with the other instances' writes and deletes.
///
/// ```
/// use std::time::Duration;
/// use buttress_cache::{Cache, CacheLayer, store::{QuickCacheStore, Store, Tiered}};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// // In production L2 is a RedisStore shared by every instance.
/// let l2 = QuickCacheStore::builder(64 << 20).build()?;
/// let store = Tiered::new(QuickCacheStore::builder(1 << 20).build()?, l2.clone());
/// let cache = Cache::builder(store).ttl(Duration::from_secs(30)).build()?;
/// let svc = CacheLayer::new(cache, |id: &u64| Some(*id))
///     .layer(service_fn(|id: u64| async move { Ok::<_, std::io::Error>(id * 10) }));
/// assert_eq!(svc.oneshot(4).await?, 40);
/// assert_eq!(l2.len(), 1, "written through to L2");
/// # Ok(())
/// # }
/// ```
///
/// # Clone
///
/// Clones share both stores.
#[derive(Debug)]
pub struct Tiered<L1, L2> {
    l1: L1,
    l2: L2,
    /// Bumped by every write and delete between its L2 and L1 steps: a
    /// promotion that sees it move undoes itself.
    writes: Arc<AtomicU64>,
    /// The task that applies other instances' invalidations to L1, if
    /// any: it stops when the last clone of the store is dropped.
    listener: Option<Arc<Listener>>,
}

/// A background task bound to a [`Tiered`] store: aborted when the last
/// clone of the store is dropped.
#[derive(Debug)]
pub(crate) struct Listener(tokio::task::AbortHandle);

impl Listener {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn new(task: tokio::task::AbortHandle) -> Self {
        Self(task)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a listener may do to a [`Tiered`] store's L1: drop one key, or
/// everything, in the order that keeps a racing promotion from
/// reinstating what it dropped.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct L1Access<L1> {
    l1: L1,
    writes: Arc<AtomicU64>,
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl<L1> L1Access<L1> {
    /// Drops `key` from L1. The write count moves first, so a promotion
    /// that read L2 before this call and puts after it undoes its put.
    pub(crate) async fn drop_key<K, V>(&self, key: &K)
    where
        K: Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        L1: Store<K, V>,
    {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.l1.delete(key).await;
    }

    /// Empties L1 (same ordering as [`drop_key`](Self::drop_key)).
    pub(crate) async fn flush<K, V>(&self)
    where
        K: Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        L1: Store<K, V>,
    {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.l1.delete_where(&|_: &K, _: &Entry<V>| true).await;
    }
}

impl<L1: Clone, L2: Clone> Clone for Tiered<L1, L2> {
    fn clone(&self) -> Self {
        Self {
            l1: self.l1.clone(),
            l2: self.l2.clone(),
            writes: Arc::clone(&self.writes),
            listener: self.listener.clone(),
        }
    }
}

impl<L1, L2> Tiered<L1, L2> {
    /// `l1` in front of `l2`.
    #[must_use]
    pub fn new(l1: L1, l2: L2) -> Self {
        Self {
            l1,
            l2,
            writes: Arc::new(AtomicU64::new(0)),
            listener: None,
        }
    }

    /// The in-process tier.
    #[must_use]
    pub fn l1(&self) -> &L1 {
        &self.l1
    }

    /// The shared tier.
    #[must_use]
    pub fn l2(&self) -> &L2 {
        &self.l2
    }

    /// A handle on L1 for a listener task.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn l1_access(&self) -> L1Access<L1>
    where
        L1: Clone,
    {
        L1Access {
            l1: self.l1.clone(),
            writes: Arc::clone(&self.writes),
        }
    }

    /// Binds `listener` to this store (and its clones from now on),
    /// replacing any previous one.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn with_listener(mut self, listener: Listener) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    fn written(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }
}

impl<L1, L2> Tiered<L1, L2> {
    /// Puts `entry` (read from L2 after the write count was `seen`) into
    /// L1, unless a write or delete completed its L2 step meanwhile: then
    /// the entry may be older than L2's, and L1 drops the key instead.
    async fn promote<K, V>(&self, key: &K, entry: &Entry<V>, seen: u64)
    where
        K: Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        L1: Store<K, V>,
    {
        if self.writes.load(Ordering::SeqCst) != seen {
            return;
        }
        self.l1.put(key.clone(), entry.clone()).await;
        if self.writes.load(Ordering::SeqCst) != seen {
            self.l1.delete(key).await;
        }
    }
}

/// The better of an L1 entry that is not fresh and L2's: the one fresh
/// longer.
fn fresher<V>(l1: Option<Entry<V>>, l2: Option<Entry<V>>) -> (Option<Entry<V>>, bool) {
    match (l1, l2) {
        (Some(a), Some(b)) if b.fresh_until() > a.fresh_until() => (Some(b), true),
        (Some(a), _) => (Some(a), false),
        (None, b) => {
            let promote = b.is_some();
            (b, promote)
        }
    }
}

impl<K, V, L1, L2> Store<K, V> for Tiered<L1, L2>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    L1: Store<K, V>,
    L2: Store<K, V>,
{
    async fn get(&self, key: &K) -> Option<Entry<V>> {
        let local = self.l1.get(key).await;
        let now = Instant::now();
        if local.as_ref().is_some_and(|e| e.is_fresh(now)) {
            return local;
        }
        let seen = self.writes.load(Ordering::SeqCst);
        let remote = self
            .l2
            .get(key)
            .await
            .filter(|e| e.is_servable(Instant::now()));
        let (best, promote) = fresher(local, remote);
        if promote && let Some(entry) = &best {
            self.promote(key, entry, seen).await;
        }
        best
    }

    /// L1's entry if L1 holds one; otherwise `None`, and the layer asks
    /// [`get`](Store::get), which reads L2.
    #[inline]
    fn try_get(&self, key: &K) -> Option<Option<Entry<V>>> {
        // Returned as L1 answered it (not taken apart and rebuilt), so the
        // entry is not copied on the way: a hit costs what L1's does.
        let found = self.l1.try_get(key);
        if matches!(found, Some(Some(_))) {
            found
        } else {
            None
        }
    }

    async fn get_many(&self, keys: &[K]) -> Vec<Option<Entry<V>>> {
        let mut out = self.l1.get_many(keys).await;
        let now = Instant::now();
        let wanted: Vec<usize> = (0..keys.len())
            .filter(|&i| !out[i].as_ref().is_some_and(|e| e.is_fresh(now)))
            .collect();
        if wanted.is_empty() {
            return out;
        }
        let seen = self.writes.load(Ordering::SeqCst);
        let asked: Vec<K> = wanted.iter().map(|&i| keys[i].clone()).collect();
        let remote = self.l2.get_many(&asked).await;
        let now = Instant::now();
        for (&i, entry) in wanted.iter().zip(remote) {
            let entry = entry.filter(|e| e.is_servable(now));
            let (best, promote) = fresher(out[i].take(), entry);
            if promote && let Some(entry) = &best {
                self.promote(&keys[i], entry, seen).await;
            }
            out[i] = best;
        }
        out
    }

    async fn put(&self, key: K, entry: Entry<V>) {
        self.l2.put(key.clone(), entry.clone()).await;
        self.written();
        self.l1.put(key, entry).await;
    }

    async fn put_many(&self, entries: Vec<(K, Entry<V>)>) {
        self.l2.put_many(entries.clone()).await;
        self.written();
        self.l1.put_many(entries).await;
    }

    async fn put_tagged(&self, key: K, entry: Entry<V>, tags: &[Tag]) {
        self.l2.put_tagged(key.clone(), entry.clone(), tags).await;
        self.written();
        self.l1.put_tagged(key, entry, tags).await;
    }

    /// L2's [`delete_tag`](Store::delete_tag), then L1's. On a
    /// [`RedisStore`](super::RedisStore), the keys it drops are announced
    /// to every subscribed instance, this one included: this L1's copies
    /// of keys only other instances tagged go within one delivery.
    async fn delete_tag(&self, tag: &str) {
        self.l2.delete_tag(tag).await;
        self.written();
        self.l1.delete_tag(tag).await;
    }

    async fn delete(&self, key: &K) {
        self.l2.delete(key).await;
        self.written();
        self.l1.delete(key).await;
    }

    async fn delete_where(&self, pred: &(dyn Fn(&K, &Entry<V>) -> bool + Send + Sync)) {
        self.l2.delete_where(pred).await;
        self.written();
        self.l1.delete_where(pred).await;
    }

    fn evictions(&self) -> Evictions {
        self.l1.evictions()
    }

    fn weighted_size(&self) -> u64 {
        self.l1.weighted_size()
    }

    fn len(&self) -> u64 {
        self.l1.len()
    }
}
