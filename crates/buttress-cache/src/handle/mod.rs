//! The `Cache` handle: shared state, loads, coalescing, refreshes,
//! invalidation.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use buttress_core::ConfigError;
use buttress_core::rng::FastRng;
use buttress_core::sync::lock;
use buttress_core::telemetry::{Name, Publish};
use buttress_core::time::Instant;

use crate::cached_errors::ErrorTable;
use crate::config::{CacheBuilder, Config};
use crate::counters::{CacheSnapshot, Counters, bump};
use crate::entry::{Entry, MAX_WINDOW, Ticks};
use crate::error::LoadTimedOut;
use crate::store::Store;
use crate::tags::TagIndex;

mod flight;
mod load;
mod publish;
mod write;

use self::flight::Flight;
pub(crate) use self::load::Found;

/// Epoch stripes: an invalidation of one key bumps one stripe, so only
/// loads of keys on that stripe lose their write.
const EPOCH_STRIPES: usize = 64;

/// `−ln(U)` for `U` in `(0, 1]` drawn with 53 random bits is at most
/// `53·ln 2 ≈ 36.7`: an entry further than `37·δ·β` from expiry can never
/// be picked for an XFetch refresh, so no random number is drawn for it.
const XFETCH_MAX_LN: f64 = 37.0;

/// The shared state behind a cache layer: clone it to read its counters,
/// to invalidate entries from outside the request path, or to put
/// several layers (a read path and an [`InvalidateLayer`](crate::InvalidateLayer)
/// on a write path) on one cache.
///
/// ```
/// use std::time::Duration;
/// use buttress_cache::{Cache, CacheLayer, store::QuickCacheStore};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let cache = Cache::builder(QuickCacheStore::builder(1 << 20).build()?).build()?;
/// let db = service_fn(|id: u64| async move { Ok::<_, std::io::Error>(id * 10) });
/// let svc = CacheLayer::new(cache.clone(), |id: &u64| Some(*id)).layer(db);
///
/// assert_eq!(svc.clone().oneshot(4).await?, 40); // miss: the backend answers
/// assert_eq!(svc.clone().oneshot(4).await?, 40); // hit
/// assert_eq!(cache.snapshot().hits, 1);
/// cache.invalidate(&4).await;
/// assert!(cache.peek(&4).is_none());
/// # Ok(())
/// # }
/// ```
///
/// # Clone
///
/// Clones share everything: the store, the counters, the loads in flight.
pub struct Cache<K, V, St> {
    pub(crate) shared: Arc<Shared<K, V, St>>,
}

impl<K, V, St> Clone for Cache<K, V, St> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K, V, St: fmt::Debug> fmt::Debug for Cache<K, V, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.shared.cfg.name)
            .field("store", &self.shared.store)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared<K, V, St> {
    pub(crate) store: St,
    pub(crate) cfg: Config<K, V>,
    pub(crate) counters: Counters,
    inflight: Mutex<HashMap<K, Arc<Flight<V>>, foldhash::fast::RandomState>>,
    /// Errors an [`ErrorPolicy`] chose to cache. Only the miss path reads
    /// it, so a hit never touches it.
    errors: ErrorTable<K>,
    /// Which keys' entries carry each tag (see [`TagIndex`]).
    tags: TagIndex<K>,
    /// Writes hold it shared, invalidations exclusively: a write either
    /// lands before an invalidation (and is deleted by it) or sees the
    /// invalidation's epoch and is dropped.
    gate: tokio::sync::RwLock<()>,
    epochs: Box<[AtomicU64]>,
    versions: AtomicU64,
    rng: FastRng,
    hasher: RandomState,
}

impl<K, V, St> Cache<K, V, St>
where
    K: Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    St: Store<K, V>,
{
    /// A builder around `store` (the one required input besides the key
    /// extractor, which the [`CacheLayer`](crate::CacheLayer) takes).
    ///
    /// The cache is named after the line that calls this unless
    /// [`CacheBuilder::name`] names it.
    #[track_caller]
    pub fn builder(store: St) -> CacheBuilder<K, V, St> {
        CacheBuilder::new(store)
    }

    /// The cache from a validated configuration, publishing its counts
    /// under the name the configuration claimed.
    fn from_parts(store: St, cfg: Config<K, V>) -> Self {
        // Fix the entries' clock origin before any load reads the clock.
        let _ = crate::entry::origin();
        let rng = cfg.seed.map_or_else(FastRng::from_entropy, FastRng::seeded);
        let shared = Arc::new(Shared {
            store,
            counters: Counters::default(),
            inflight: Mutex::new(HashMap::default()),
            errors: ErrorTable::new(),
            tags: TagIndex::new(),
            gate: tokio::sync::RwLock::new(()),
            epochs: (0..EPOCH_STRIPES).map(|_| AtomicU64::new(0)).collect(),
            versions: AtomicU64::new(0),
            rng,
            hasher: RandomState::new(),
            cfg,
        });
        let source: Weak<dyn Publish> = Arc::downgrade(&shared) as _;
        shared.cfg.registration.attach(source);
        Self { shared }
    }
}

// `build` is here rather than beside the builder in `config.rs`, so that
// the configuration never needs the handle.
impl<K, V, St> CacheBuilder<K, V, St>
where
    K: Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    St: Store<K, V>,
{
    /// Validates the configuration and builds the handle.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the field when `name` is empty, `ttl`,
    /// `negative_ttl` or `load_timeout` is zero, `ttl_jitter` is outside
    /// `[0, 1)`, `xfetch_beta` is not positive and finite, or
    /// `max_entry_bytes` is zero.
    pub fn build(self) -> Result<Cache<K, V, St>, ConfigError> {
        let (store, config) = self.validate()?;
        Ok(Cache::from_parts(store, config))
    }
}

impl<K, V, St> Cache<K, V, St> {
    /// The cache's name: the `name` label on its metrics and the `name`
    /// field of its `tracing` spans and events (see [`CacheBuilder::name`]).
    #[must_use]
    pub fn name(&self) -> Name {
        self.shared.cfg.name
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &St {
        &self.shared.store
    }
}

impl<K, V, St> Cache<K, V, St>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    St: Store<K, V>,
{
    /// A snapshot of the counters.
    #[must_use]
    pub fn snapshot(&self) -> CacheSnapshot {
        let s = &self.shared;
        let keys_loading = lock(&s.inflight).len() as u64;
        s.counters
            .snapshot(s.store.evictions(), s.tags.pairs() as u64, keys_loading)
    }

    /// The entry for `key` if the store can answer synchronously and the
    /// entry is still servable (fresh or stale), without counting a hit.
    #[must_use]
    pub fn peek(&self, key: &K) -> Option<Entry<V>> {
        let now = Instant::now();
        self.shared
            .store
            .try_get(key)
            .flatten()
            .filter(|e| e.is_servable(now))
    }

    /// Drops `key` (its value or its cached error). Once this returns, no request is answered with the
    /// dropped value: loads that started before it do not write their
    /// result, and requests after it do not join them. A background
    /// refresh of `key` in flight is cancelled (its backend call dropped);
    /// a request's own load runs on for its caller, unwritten.
    pub async fn invalidate(&self, key: &K) {
        let s = &self.shared;
        let _gate = s.gate.write().await;
        s.epochs[s.stripe(key)].fetch_add(1, Ordering::SeqCst);
        let flight = lock(&s.inflight).remove(key);
        if let Some(flight) = flight {
            flight.cancel();
        }
        s.errors.remove(key);
        s.store.delete(key).await;
        s.invalidated("key");
    }

    /// Drops every entry whose response carried `tag` (see
    /// [`Verdict::tag`](crate::Verdict::tag)). Same guarantee as [`invalidate`](Self::invalidate).
    ///
    /// The tag index remembers which keys were written with each tag. As it
    /// grows, it is swept of keys whose tagged entry the store has since
    /// evicted, deleted or replaced, or which expired (see
    /// [`CacheSnapshot::tag_index_pairs`]). Until a sweep, invalidating
    /// the tag also drops a key whose entry was replaced without it (a
    /// spurious miss, never a stale read).
    pub async fn invalidate_tag(&self, tag: &str) {
        let s = &self.shared;
        let _gate = s.gate.write().await;
        s.bump_all();
        let keys = s.tags.remove_tag(tag);
        let flights: Vec<_> = {
            let mut inflight = lock(&s.inflight);
            keys.keys().filter_map(|key| inflight.remove(key)).collect()
        };
        for flight in flights {
            flight.cancel();
        }
        for key in keys.keys() {
            s.store.delete(key).await;
        }
        // A shared store also drops what other instances wrote with it.
        s.store.delete_tag(tag).await;
        s.invalidated("tag");
    }

    /// Drops every entry for which `pred(key, value)` is true, and every
    /// cached error (it has no value to test). Loads in flight are
    /// detached (their results are not written) and background refreshes
    /// cancelled. Same guarantee as
    /// [`invalidate`](Self::invalidate).
    pub async fn invalidate_where<F>(&self, pred: F)
    where
        F: Fn(&K, &V) -> bool + Send + Sync,
    {
        // The index keeps the pairs of dropped entries: a sweep collects
        // them.
        self.drop_where(pred, false).await;
    }

    /// Drops everything, and cancels every background refresh.
    pub async fn invalidate_all(&self) {
        self.drop_where(|_, _| true, true).await;
    }

    async fn drop_where<F>(&self, pred: F, clear_tags: bool)
    where
        F: Fn(&K, &V) -> bool + Send + Sync,
    {
        let s = &self.shared;
        let _gate = s.gate.write().await;
        s.bump_all();
        if clear_tags {
            // Under the gate: a write after this one keeps its pairs.
            s.tags.clear();
        }
        let flights: Vec<_> = lock(&s.inflight).drain().map(|(_, f)| f).collect();
        for flight in flights {
            flight.cancel();
        }
        // A cached error has no value to test: drop them all (a spurious
        // miss, never a stale answer).
        s.errors.clear();
        s.store
            .delete_where(&|k: &K, e: &Entry<V>| pred(k, e.value()))
            .await;
        s.invalidated("predicate");
    }
}

impl<K, V, St> Shared<K, V, St> {
    fn stripe(&self, key: &K) -> usize
    where
        K: Hash,
    {
        (self.hasher.hash_one(key) as usize) % EPOCH_STRIPES
    }

    fn epoch(&self, key: &K) -> u64
    where
        K: Hash,
    {
        self.epochs[self.stripe(key)].load(Ordering::SeqCst)
    }

    fn bump_all(&self) {
        for e in &*self.epochs {
            e.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// How many (tag, key) pairs the tag index holds.
    pub(crate) fn tag_index_pairs(&self) -> u64 {
        self.tags.pairs() as u64
    }

    fn invalidated(&self, by: &'static str) {
        bump(&self.counters.invalidations);
        tracing::debug!(name = %self.cfg.name, by, "cache invalidation");
    }

    /// The instant from which XFetch may pick an entry fresh until
    /// `fresh_until`: `37·δ·β` before it (`fresh_until` itself, so never,
    /// when XFetch is off or δ is zero).
    /// If that is before the clock's start, `started` (the load's start,
    /// which every later read is after) stands in for it.
    fn early_from(&self, started: Instant, fresh_until: Instant, load_time: Duration) -> Instant {
        match self.cfg.xfetch_beta {
            Some(beta) if !load_time.is_zero() => {
                let secs = load_time.as_secs_f64() * beta * XFETCH_MAX_LN;
                match Duration::try_from_secs_f64(secs) {
                    Ok(window) => fresh_until
                        .checked_sub(window)
                        .unwrap_or(started)
                        .max(started),
                    // A window beyond any duration: eligible at once.
                    Err(_) => started,
                }
            }
            _ => fresh_until,
        }
    }

    /// Whether a fresh hit at `at` should start an XFetch early refresh.
    pub(crate) fn xfetch_due(&self, entry: &Entry<V>, at: Instant) -> bool {
        // Before `early_refresh_from` no draw can succeed: none is made.
        if entry.settled_at(at) {
            return false;
        }
        let Some(beta) = self.cfg.xfetch_beta else {
            return false;
        };
        let delta = entry.load_time().as_secs_f64() * beta;
        if delta <= 0.0 {
            return false;
        }
        let remaining = entry.fresh_secs_left(Ticks::from_instant(at));
        // U in (0, 1]: ln(U) is finite and <= 0.
        let u = self.rng.next_f64_nonzero();
        delta * -u.ln() >= remaining
    }

    #[inline]
    pub(crate) fn count_hit(&self) {
        self.counters.hits.add(1);
    }

    #[inline]
    pub(crate) fn count_stale(&self) {
        self.counters.stale_served.add(1);
    }

    pub(crate) fn count_bypass(&self) {
        bump(&self.counters.bypassed);
    }

    /// When a load starting now must be done: `load_timeout` from now, or
    /// never (`None`) outside a tokio runtime, where no timer can end it.
    fn deadline(&self) -> Option<Instant> {
        tokio::runtime::Handle::try_current().ok()?;
        Instant::now().checked_add(self.cfg.load_timeout)
    }

    fn timed_out(&self) -> LoadTimedOut {
        bump(&self.counters.timeouts);
        LoadTimedOut::new(self.cfg.name, self.cfg.load_timeout)
    }

    fn jittered(&self, ttl: Duration) -> Duration {
        let j = self.cfg.ttl_jitter;
        if j == 0.0 {
            return ttl;
        }
        let factor = 1.0 + j * (2.0 * self.rng.next_f64() - 1.0);
        // factor is in [1 - j, 1 + j] with j < 1: positive and finite.
        ttl.min(MAX_WINDOW).mul_f64(factor)
    }
}
