//! `QuickCacheStore`: the default in-process store, on quick_cache 0.7.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};

use super::{EvictionCounters, Evictions, Store};
use crate::entry::Entry;

#[derive(Clone, Copy, Debug)]
struct EntryWeight;

impl<K, V> Weighter<K, Entry<V>> for EntryWeight {
    #[inline]
    fn weight(&self, _key: &K, entry: &Entry<V>) -> u64 {
        // Zero-weight items are never evicted by quick_cache: keep >= 1.
        u64::from(entry.weight().max(1))
    }
}

#[derive(Clone, Debug)]
struct CountEvictions(Arc<EvictionCounters>);

impl<K, V> Lifecycle<K, V> for CountEvictions {
    type RequestState = ();

    #[inline]
    fn on_evict(&self, _state: &mut (), _key: K, _val: V) {
        self.0.size();
    }
}

type Inner<K, V> = Cache<K, Entry<V>, EntryWeight, DefaultHashBuilder, CountEvictions>;

/// An in-process store on [`quick_cache::sync::Cache`], bounded by the
/// total weight of its entries (bytes, as the layer's weigher estimates
/// them).
///
/// quick_cache keeps entries in sharded, read-write-locked tables with
/// CLOCK-Pro eviction (hot and cold queues with ghost entries): a hit is a
/// hash, a shared lock and an `Arc` clone, with no allocation and no
/// background work. Keys are hashed with quick_cache's default hasher
/// (foldhash, seeded per process), not SipHash, and each shard's lock is a
/// sharded reader-writer lock (crossbeam's `ShardedLock`): readers on
/// different threads do not contend, a write locks every slice. It is the
/// default store: see `docs/cache.md` for the
/// comparison with [`MokaStore`](crate::store::MokaStore).
///
/// Entries past their [`stale_until`](Entry::stale_until) are not dropped
/// eagerly: the layer never serves them, and they are replaced by the next
/// load or evicted like any cold entry.
///
/// # Clone
///
/// Clones share the same table.
pub struct QuickCacheStore<K, V> {
    inner: Arc<Inner<K, V>>,
    evictions: Arc<EvictionCounters>,
}

impl<K, V> Clone for QuickCacheStore<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            evictions: Arc::clone(&self.evictions),
        }
    }
}

impl<K: Eq + Hash, V: Clone> fmt::Debug for QuickCacheStore<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuickCacheStore")
            .field("capacity_bytes", &self.inner.capacity())
            .field("weight", &self.inner.weight())
            .field("len", &self.inner.len())
            .finish()
    }
}

impl<K, V> QuickCacheStore<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A store holding at most `max_bytes` of entries (by weight), sized
    /// for about `estimated_entries` entries (quick_cache preallocates its
    /// tables from it; a wrong guess costs memory or a rehash, not
    /// correctness). Its evictions are published by the cache built on it,
    /// under that cache's name.
    #[must_use]
    pub fn new(max_bytes: u64, estimated_entries: usize) -> Self {
        let evictions = EvictionCounters::new();
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(estimated_entries.max(1))
            .weight_capacity(max_bytes.max(1))
            .build()
            .expect("both quick_cache options are set");
        let inner = Cache::with_options(
            options,
            EntryWeight,
            DefaultHashBuilder::default(),
            CountEvictions(Arc::clone(&evictions)),
        );
        Self {
            inner: Arc::new(inner),
            evictions,
        }
    }

    /// The largest total weight the store holds.
    #[must_use]
    pub fn capacity(&self) -> u64 {
        self.inner.capacity()
    }
}

impl<K, V> Store<K, V> for QuickCacheStore<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    #[inline]
    async fn get(&self, key: &K) -> Option<Entry<V>> {
        self.inner.get(key)
    }

    #[inline]
    fn try_get(&self, key: &K) -> Option<Option<Entry<V>>> {
        Some(self.inner.get(key))
    }

    async fn put(&self, key: K, entry: Entry<V>) {
        self.inner.insert(key, entry);
    }

    async fn delete(&self, key: &K) {
        self.inner.remove(key);
    }

    async fn delete_where(&self, pred: &(dyn Fn(&K, &Entry<V>) -> bool + Send + Sync)) {
        self.inner.retain(|k, e| !pred(k, e));
    }

    fn evictions(&self) -> Evictions {
        self.evictions.snapshot()
    }

    fn weighted_size(&self) -> u64 {
        self.inner.weight()
    }

    fn len(&self) -> u64 {
        self.inner.len() as u64
    }
}
