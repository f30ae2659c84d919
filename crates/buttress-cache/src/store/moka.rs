//! `MokaStore`: an in-process store on `moka::future::Cache`.

use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Weak};
use std::time::Duration;

use buttress_core::time::Instant;
use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;

use super::{EvictionCounters, Evictions, Store};
use crate::entry::Entry;
use crate::error::ConfigError;

/// The layer name a [`ConfigError`] of this store reads with.
const LAYER: &str = "moka store";

/// Expires an entry (in moka's own clock) when its `stale_until` passes:
/// only a memory bound, the layer judges freshness itself.
struct UntilStale;

impl<K, V> Expiry<K, Entry<V>> for UntilStale {
    fn expire_after_create(
        &self,
        _key: &K,
        entry: &Entry<V>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(
            entry
                .stale_until()
                .saturating_duration_since(Instant::now()),
        )
    }

    fn expire_after_update(
        &self,
        _key: &K,
        entry: &Entry<V>,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(
            entry
                .stale_until()
                .saturating_duration_since(Instant::now()),
        )
    }
}

/// Builds a [`MokaStore`], from [`MokaStore::builder`].
///
/// ```
/// use buttress_cache::store::MokaStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), buttress_cache::ConfigError> {
/// let store = MokaStore::builder(64 << 20).build::<u64, String>()?;
/// let zero = MokaStore::builder(0).build::<u64, String>().unwrap_err();
/// assert_eq!(zero.field(), "max_bytes");
/// # drop(store);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct MokaStoreBuilder {
    max_bytes: u64,
    name: String,
    maintenance_interval: Option<Duration>,
}

impl MokaStoreBuilder {
    /// moka's own name for the cache (see moka's `Cache::name`). Not a
    /// metric label: the cache built on the store publishes its evictions
    /// under the cache's name ([`CacheBuilder::name`](crate::CacheBuilder::name)).
    /// Default: `"moka"`.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// How often a background task runs moka's pending maintenance
    /// (evictions, expirations, listeners), or `None` for never. Default:
    /// 1 s. moka 0.12 does this work only inside cache calls (moka issues
    /// #349 and #544: a cache that is only read, or idle, keeps dead
    /// entries and never reports their eviction), so the store keeps it
    /// running. The task is spawned on the current tokio runtime when the
    /// store is built (none is spawned outside a runtime) and stops when
    /// the last clone of the store is dropped. A zero interval is
    /// rejected by [`build`](Self::build) (tokio's interval cannot tick
    /// at it); `None` is the way to turn maintenance off.
    pub fn maintenance_interval(mut self, every: Option<Duration>) -> Self {
        self.maintenance_interval = every;
        self
    }

    /// Validates the configuration and builds the store.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `max_bytes` when it is zero, or
    /// `maintenance_interval` when it is `Some(Duration::ZERO)`.
    pub fn build<K, V>(self) -> Result<MokaStore<K, V>, ConfigError>
    where
        K: Eq + Hash + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        if self.max_bytes == 0 {
            return Err(ConfigError::new(LAYER, "max_bytes", "must be at least 1"));
        }
        if self
            .maintenance_interval
            .is_some_and(|every| every.is_zero())
        {
            return Err(ConfigError::new(
                LAYER,
                "maintenance_interval",
                "must be greater than zero (`None` turns maintenance off)",
            ));
        }
        let evictions = EvictionCounters::new();
        let counters = Arc::clone(&evictions);
        let inner: Cache<K, Entry<V>> = Cache::builder()
            .name(&self.name)
            .max_capacity(self.max_bytes)
            .weigher(|_k: &K, e: &Entry<V>| e.weight().max(1))
            .expire_after(UntilStale)
            .eviction_listener(move |_k, _v, cause| match cause {
                RemovalCause::Size => counters.size(),
                RemovalCause::Expired => counters.expired(),
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            })
            .build();
        let alive = Arc::new(());
        if let (Some(every), Ok(rt)) = (
            self.maintenance_interval,
            tokio::runtime::Handle::try_current(),
        ) {
            let cache = inner.clone();
            let alive: Weak<()> = Arc::downgrade(&alive);
            rt.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if alive.upgrade().is_none() {
                        break;
                    }
                    cache.run_pending_tasks().await;
                }
            });
        }
        Ok(MokaStore {
            inner,
            evictions,
            _alive: alive,
        })
    }
}

/// An in-process store on [`moka::future::Cache`], bounded by the total
/// weight of its entries (bytes, as the layer's weigher estimates them).
///
/// moka's TinyLFU admission keeps the most frequently used entries; its
/// per-entry expiry is set to each entry's `stale_until`, only so that
/// memory is given back (the layer judges freshness itself, on tokio's
/// clock). A background task keeps moka's maintenance running: see
/// [`MokaStoreBuilder::maintenance_interval`].
///
/// moka's `get` is async; the store's [`try_get`](Store::try_get) polls it
/// once and answers when it is ready (it nearly always is on a hit), so
/// the layer's hit path stays synchronous.
///
/// # Clone
///
/// Clones share the same cache.
pub struct MokaStore<K, V> {
    inner: Cache<K, Entry<V>>,
    evictions: Arc<EvictionCounters>,
    _alive: Arc<()>,
}

impl<K, V> Clone for MokaStore<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            evictions: Arc::clone(&self.evictions),
            _alive: Arc::clone(&self._alive),
        }
    }
}

impl<K, V> fmt::Debug for MokaStore<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MokaStore")
            .field("name", &self.inner.name())
            .field("weighted_size", &self.inner.weighted_size())
            .field("entry_count", &self.inner.entry_count())
            .finish()
    }
}

impl MokaStore<(), ()> {
    /// A builder for a store holding at most `max_bytes` of entries (by
    /// the weight the cache's weigher gives them); its
    /// [`build`](MokaStoreBuilder::build) picks the key and value types.
    pub fn builder(max_bytes: u64) -> MokaStoreBuilder {
        MokaStoreBuilder {
            max_bytes,
            name: "moka".to_owned(),
            maintenance_interval: Some(Duration::from_secs(1)),
        }
    }
}

impl<K, V> MokaStore<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The moka cache underneath (for `run_pending_tasks`, statistics).
    #[must_use]
    pub fn inner(&self) -> &Cache<K, Entry<V>> {
        &self.inner
    }
}

impl<K, V> Store<K, V> for MokaStore<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    async fn get(&self, key: &K) -> Option<Entry<V>> {
        self.inner.get(key).await
    }

    #[inline]
    fn try_get(&self, key: &K) -> Option<Option<Entry<V>>> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let fut = std::pin::pin!(self.inner.get(key));
        match fut.poll(&mut cx) {
            std::task::Poll::Ready(found) => Some(found),
            std::task::Poll::Pending => None,
        }
    }

    async fn put(&self, key: K, entry: Entry<V>) {
        self.inner.insert(key, entry).await;
    }

    async fn delete(&self, key: &K) {
        self.inner.invalidate(key).await;
    }

    async fn delete_where(&self, pred: &(dyn Fn(&K, &Entry<V>) -> bool + Send + Sync)) {
        let doomed: Vec<K> = self
            .inner
            .iter()
            .filter(|(k, e)| pred(k, e))
            .map(|(k, _)| K::clone(&k))
            .collect();
        for key in doomed {
            self.inner.invalidate(&key).await;
        }
    }

    fn evictions(&self) -> Evictions {
        self.evictions.snapshot()
    }

    fn weighted_size(&self) -> u64 {
        self.inner.weighted_size()
    }

    fn len(&self) -> u64 {
        self.inner.entry_count()
    }
}
