//! The storage abstraction, the in-process stores, the Redis store
//! (feature `redis`) and the two-tier store.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::entry::{Entry, Tag};

#[cfg(feature = "moka")]
mod moka;
#[cfg(feature = "quick_cache")]
mod quick;
#[cfg(feature = "redis")]
mod redis;
mod tiered;

#[cfg(feature = "moka")]
#[cfg_attr(docsrs, doc(cfg(feature = "moka")))]
pub use self::moka::{MokaStore, MokaStoreBuilder};
#[cfg(feature = "quick_cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "quick_cache")))]
pub use self::quick::{QuickCacheStore, QuickCacheStoreBuilder};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{Codec, REDIS_METRICS, RedisStore, RedisStoreBuilder, RedisStoreSnapshot};
pub use self::tiered::Tiered;

/// Where entries live: the one storage abstraction of the cache.
///
/// Every method is async so that a remote store (Redis) fits; in-process
/// stores also answer [`try_get`](Self::try_get) synchronously, which is
/// what keeps the layer's hit path free of boxing and of any future: the
/// layer calls `try_get` first and only falls back to [`get`](Self::get)
/// (inside a boxed miss future) when it returns `None`.
///
/// A store never judges freshness: entries carry their own timestamps and
/// the layer judges them. A store may drop entries at any time (memory
/// bound), and should drop them after [`Entry::stale_until`].
pub trait Store<K, V>: Send + Sync + 'static
where
    K: Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The entry for `key`, if any.
    fn get(&self, key: &K) -> impl Future<Output = Option<Entry<V>>> + Send;

    /// Synchronous lookup: `Some(answer)` when the store can answer without
    /// waiting (an in-process store), `None` to make the caller use
    /// [`get`](Self::get). The default answers `None`.
    #[inline]
    fn try_get(&self, key: &K) -> Option<Option<Entry<V>>> {
        let _ = key;
        None
    }

    /// Writes `entry` under `key`, replacing what was there.
    fn put(&self, key: K, entry: Entry<V>) -> impl Future<Output = ()> + Send;

    /// Drops `key`. After the returned future completes, no `get` or
    /// `try_get` returns the dropped entry.
    fn delete(&self, key: &K) -> impl Future<Output = ()> + Send;

    /// Drops every entry for which `pred` is true (invalidation by
    /// predicate). Same guarantee as [`delete`](Self::delete).
    fn delete_where(
        &self,
        pred: &(dyn Fn(&K, &Entry<V>) -> bool + Send + Sync),
    ) -> impl Future<Output = ()> + Send;

    /// Writes `entry` under `key`, as [`put`](Self::put) does, for a
    /// response that carried `tags` (never empty). A store shared between
    /// instances records the pairs so that [`delete_tag`](Self::delete_tag)
    /// finds keys other instances tagged too; the default ignores the tags
    /// (the cache's own per-process tag index has them).
    fn put_tagged(&self, key: K, entry: Entry<V>, tags: &[Tag]) -> impl Future<Output = ()> + Send {
        let _ = tags;
        self.put(key, entry)
    }

    /// Drops the entries a shared store recorded with `tag` (see
    /// [`put_tagged`](Self::put_tagged)), whichever instance wrote them;
    /// called by [`Cache::invalidate_tag`](crate::Cache::invalidate_tag)
    /// after it dropped the keys of its own index. The default does
    /// nothing.
    fn delete_tag(&self, tag: &str) -> impl Future<Output = ()> + Send {
        let _ = tag;
        async {}
    }

    /// The entries for `keys`, in order. The default asks one by one.
    fn get_many(&self, keys: &[K]) -> impl Future<Output = Vec<Option<Entry<V>>>> + Send {
        async move {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(self.get(key).await);
            }
            out
        }
    }

    /// Writes every entry. The default writes one by one.
    fn put_many(&self, entries: Vec<(K, Entry<V>)>) -> impl Future<Output = ()> + Send {
        async move {
            for (key, entry) in entries {
                self.put(key, entry).await;
            }
        }
    }

    /// Evictions the store made on its own, by cause: published by the
    /// cache built on the store as `buttress_cache_evictions_total`
    /// (labelled with the cache's name). The default reports none.
    fn evictions(&self) -> Evictions {
        Evictions::default()
    }

    /// The total weight held (bytes, as the weigher estimates them).
    fn weighted_size(&self) -> u64;

    /// The number of entries held.
    fn len(&self) -> u64;

    /// Whether the store holds no entry.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Evictions a store made on its own, by cause (explicit deletes are not
/// evictions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Evictions {
    /// Dropped to stay within the weight bound.
    pub size: u64,
    /// Dropped because its `stale_until` passed.
    pub expired: u64,
}

/// Eviction counters a store updates from its listener. The cache built
/// on the store publishes them as `buttress_cache_evictions_total`,
/// labelled with the cache's `name` and the `cause`.
#[cfg_attr(not(any(feature = "moka", feature = "quick_cache")), allow(dead_code))]
#[derive(Debug, Default)]
pub(crate) struct EvictionCounters {
    size: AtomicU64,
    expired: AtomicU64,
}

#[cfg_attr(not(any(feature = "moka", feature = "quick_cache")), allow(dead_code))]
impl EvictionCounters {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn size(&self) {
        self.size.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg_attr(not(feature = "moka"), allow(dead_code))]
    pub(crate) fn expired(&self) {
        self.expired.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Evictions {
        Evictions {
            size: self.size.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
        }
    }
}

impl<V> Entry<V> {
    /// An entry whose value is judged by its caller (the HTTP cache of
    /// `buttress-http` keeps RFC 9111's times inside the value): fresh
    /// until `fresh_until`, kept until `stale_until`, weighing `weight`
    /// (bytes, for the store's bound).
    pub fn with_bounds(
        value: V,
        fresh_until: buttress_core::time::Instant,
        stale_until: buttress_core::time::Instant,
        weight: u32,
    ) -> Self {
        Self::new(
            value,
            fresh_until,
            fresh_until,
            stale_until,
            fresh_until,
            std::time::Duration::ZERO,
            weight,
            0,
            false,
        )
    }
}
