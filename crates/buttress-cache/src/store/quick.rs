//! `QuickCacheStore`: the default in-process store, on quick_cache 0.7.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use buttress_core::ConfigError;
use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};

use super::{EvictionCounters, Evictions, Store};
use crate::entry::Entry;

/// The average entry weight [`QuickCacheStoreBuilder::estimated_entries`]
/// assumes by default.
const DEFAULT_ENTRY_BYTES: u64 = 1024;

/// The layer name a [`ConfigError`] of this store reads with.
const LAYER: &str = "quick_cache store";

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

/// Builds a [`QuickCacheStore`], from [`QuickCacheStore::builder`].
///
/// ```
/// use buttress_cache::store::QuickCacheStore;
///
/// let store = QuickCacheStore::<u64, String>::builder(64 << 20) // 64 MiB
///     .estimated_entries(100_000)
///     .build()?;
/// assert_eq!(store.capacity(), 64 << 20);
///
/// // Zero, or more entries than bytes (the two numbers swapped), is refused.
/// let err = QuickCacheStore::<u64, String>::builder(10_000)
///     .estimated_entries(64 << 20)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "estimated_entries");
/// # Ok::<(), buttress_cache::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct QuickCacheStoreBuilder<K, V> {
    max_bytes: u64,
    estimated_entries: Option<usize>,
    _types: std::marker::PhantomData<fn(K, V)>,
}

impl<K, V> QuickCacheStoreBuilder<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// About how many entries the store will hold: quick_cache sizes its
    /// shards (at least 32 entries each) and its memory of recently
    /// evicted keys (CLOCK-Pro's ghost entries, up to half this many) from
    /// it. Within an order of magnitude is good enough: too low costs hit
    /// ratio (fewer ghosts) and contention (fewer shards), too high costs
    /// the memory of ghost entries. Default: `max_bytes / 1 KiB` (an
    /// average entry of 1 KiB), at least 1.
    pub fn estimated_entries(mut self, entries: usize) -> Self {
        self.estimated_entries = Some(entries);
        self
    }

    /// Validates the configuration and builds the store.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `max_bytes` when it is zero, or
    /// `estimated_entries` when it is zero or larger than `max_bytes`
    /// (every entry weighs at least one byte, so the store could never
    /// hold that many: the two numbers were likely swapped).
    pub fn build(self) -> Result<QuickCacheStore<K, V>, ConfigError> {
        if self.max_bytes == 0 {
            return Err(ConfigError::new(LAYER, "max_bytes", "must be at least 1"));
        }
        let entries = match self.estimated_entries {
            Some(0) => {
                return Err(ConfigError::new(
                    LAYER,
                    "estimated_entries",
                    "must be at least 1",
                ));
            }
            Some(n) if u64::try_from(n).is_ok_and(|n| n > self.max_bytes) => {
                return Err(ConfigError::new(
                    LAYER,
                    "estimated_entries",
                    format!(
                        "must be at most max_bytes ({}): every entry weighs at least one byte, \
                         so {n} entries cannot fit (are the two swapped?)",
                        self.max_bytes
                    ),
                ));
            }
            Some(n) => n,
            None => usize::try_from(self.max_bytes / DEFAULT_ENTRY_BYTES)
                .unwrap_or(usize::MAX)
                .max(1),
        };
        let evictions = EvictionCounters::new();
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(entries)
            .weight_capacity(self.max_bytes)
            .build()
            .map_err(|e| ConfigError::new(LAYER, "max_bytes", e.to_string()))?;
        let inner = Cache::with_options(
            options,
            EntryWeight,
            DefaultHashBuilder::default(),
            CountEvictions(Arc::clone(&evictions)),
        );
        Ok(QuickCacheStore {
            inner: Arc::new(inner),
            evictions,
        })
    }
}

/// An in-process store on [`quick_cache::sync::Cache`], bounded by the
/// total weight of its entries (bytes, as the layer's weigher estimates
/// them).
///
/// quick_cache keeps entries in sharded, read-write-locked tables with
/// CLOCK-Pro eviction (hot and cold queues with ghost entries): a hit is a
/// hash, a shared lock and an `Arc` clone, with no allocation and no
/// background work. Keys are hashed with quick_cache's default hasher
/// (foldhash, seeded per process), not SipHash. Each shard's capacity is
/// its share of `max_bytes`, and an entry heavier than most of a shard's
/// share is not kept. It is the default store: see `docs/cache.md` for
/// the comparison with [`MokaStore`](crate::store::MokaStore).
///
/// # Locks
///
/// Each shard is under a reader-writer lock whose kind quick_cache's own
/// features choose, and buttress enables none of them (quick_cache's
/// `parking_lot`, a default, and `sharded-lock` are mutually exclusive, so
/// enabling either could break an application that enables the other).
/// Without either, the lock is the standard library's: threads reading
/// one shard share its reader count, so hits on two threads scale less
/// than on separate caches. An application that does not use quick_cache
/// with its default features elsewhere can add
/// `quick_cache = { version = "0.7", default-features = false, features = ["sharded-lock"] }`
/// to its own dependencies: crossbeam's `ShardedLock` gives each reader
/// thread a lock of its own (a write takes them all, which a miss pays).
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
    /// A builder for a store holding at most `max_bytes` of entries (by
    /// the weight the cache's weigher gives them). Its evictions are
    /// published by the cache built on it, under that cache's name.
    pub fn builder(max_bytes: u64) -> QuickCacheStoreBuilder<K, V> {
        QuickCacheStoreBuilder {
            max_bytes,
            estimated_entries: None,
            _types: std::marker::PhantomData,
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
