//! The `Cache` handle: shared state, loads, coalescing, refreshes,
//! invalidation.

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use buttress_core::BoxError;
use buttress_core::rng::FastRng;
use buttress_core::time::{Instant, saturating_nanos};
use tokio::sync::Notify;
use tower_service::Service;

use crate::cached_errors::ErrorTable;
use crate::config::{Builder, Config};
use crate::entry::{Entry, MAX_WINDOW, Ticks, later};
use crate::error::CoalescedError;
use crate::policy::{CachePolicy, ErrorPolicy, ErrorVerdict, Kind, MakeError, Verdict};
use crate::stats::{Counters, Metrics, Stats, bump};
use crate::store::Store;
use crate::tags::{SweepClaim, TagIndex};

/// Epoch stripes: an invalidation of one key bumps one stripe, so only
/// loads of keys on that stripe lose their write.
const EPOCH_STRIPES: usize = 64;

/// `−ln(U)` for `U` in `(0, 1]` drawn with 53 random bits is at most
/// `53·ln 2 ≈ 36.7`: an entry further than `37·δ·β` from expiry can never
/// be picked for an XFetch refresh, so no random number is drawn for it.
const XFETCH_MAX_LN: f64 = 37.0;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned map is still consistent: every critical section here (and
    // in the tag index) is a single insert or remove, or a loop of them
    // that keeps the map and its counts in step.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

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
/// let cache = Cache::builder(QuickCacheStore::new(1 << 20, 1000)).build()?;
/// let db = service_fn(|id: u64| async move { Ok::<_, std::io::Error>(id * 10) });
/// let svc = CacheLayer::new(cache.clone(), |id: &u64| Some(*id)).layer(db);
///
/// assert_eq!(svc.clone().oneshot(4).await?, 40); // miss: the backend answers
/// assert_eq!(svc.clone().oneshot(4).await?, 40); // hit
/// assert_eq!(cache.stats().hits, 1);
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
    pub(crate) metrics: Metrics,
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

/// What [`Shared::judge`] made of a found entry.
pub(crate) enum Found<V, Req> {
    /// Answered from the entry: fresh, or stale while a refresh runs.
    Served(V),
    /// A load is needed: the request back, and the entry if it may still
    /// answer a failed load (stale-if-error).
    Load(Req, Option<Entry<V>>),
}

/// What a finished load hands its waiters.
enum Outcome<V> {
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

    async fn wait(&self) -> Outcome<V> {
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
    fn finish(mut self, outcome: impl FnOnce() -> Outcome<V>) {
        // Unregistered: nobody can join any more, so a count of one means
        // nobody waits (and nothing needs to be stored or woken).
        if self.unregister().is_some() && Arc::strong_count(&self.flight) > 1 {
            *lock(&self.flight.outcome) = Some(outcome());
            self.flight.done.notify_waiters();
        }
    }

    /// Hands `error` to the waiters; returns what the leader's caller gets:
    /// the error itself when nobody waited, else a [`CoalescedError`].
    fn fail(mut self, error: BoxError) -> BoxError {
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

impl<K, V, St> Cache<K, V, St>
where
    K: Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    St: Store<K, V>,
{
    /// A builder around `store` (the one required input besides the key
    /// extractor, which the [`CacheLayer`](crate::CacheLayer) takes).
    pub fn builder(store: St) -> Builder<K, V, St> {
        Builder::new(store)
    }
}

impl<K, V, St> Cache<K, V, St> {
    pub(crate) fn from_parts(store: St, cfg: Config<K, V>) -> Self {
        // Fix the entries' clock origin before any load reads the clock.
        let _ = crate::entry::origin();
        let rng = cfg.seed.map_or_else(FastRng::from_entropy, FastRng::seeded);
        let metrics = Metrics::new(&cfg.name);
        Self {
            shared: Arc::new(Shared {
                store,
                metrics,
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
            }),
        }
    }

    /// The cache's name (its metrics label).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.cfg.name
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
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        s.counters
            .snapshot(s.store.evictions(), s.tags.pairs() as u64)
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
    /// result, and requests after it do not join them.
    pub async fn invalidate(&self, key: &K) {
        let s = &self.shared;
        let _gate = s.gate.write().await;
        s.epochs[s.stripe(key)].fetch_add(1, Ordering::SeqCst);
        lock(&s.inflight).remove(key);
        s.errors.remove(key);
        s.store.delete(key).await;
        s.invalidated("key");
    }

    /// Drops every entry whose response carried `tag` (see
    /// [`Verdict::tag`]). Same guarantee as [`invalidate`](Self::invalidate).
    ///
    /// The tag index remembers which keys were written with each tag. As it
    /// grows, it is swept of keys whose tagged entry the store has since
    /// evicted, deleted or replaced, or which expired (see
    /// [`Stats::tag_index_pairs`]). Until a sweep, invalidating the tag also
    /// drops a key whose entry was replaced without it (a spurious miss,
    /// never a stale read).
    pub async fn invalidate_tag(&self, tag: &str) {
        let s = &self.shared;
        let _gate = s.gate.write().await;
        s.bump_all();
        let keys = s.tags.remove_tag(tag);
        {
            let mut inflight = lock(&s.inflight);
            for key in keys.keys() {
                inflight.remove(key);
            }
        }
        for key in keys.keys() {
            s.store.delete(key).await;
        }
        s.invalidated("tag");
    }

    /// Drops every entry for which `pred(key, value)` is true, and every
    /// cached error (it has no value to test). Loads in flight are
    /// detached (their results are not written). Same guarantee as
    /// [`invalidate`](Self::invalidate).
    pub async fn invalidate_where<F>(&self, pred: F)
    where
        F: Fn(&K, &V) -> bool + Send + Sync,
    {
        // The index keeps the pairs of dropped entries: a sweep collects
        // them.
        self.drop_where(pred, false).await;
    }

    /// Drops everything.
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
        lock(&s.inflight).clear();
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

    fn invalidated(&self, by: &'static str) {
        bump(&self.counters.invalidations);
        self.metrics.invalidations.increment(1);
        tracing::debug!(cache = %self.cfg.name, by, "cache invalidation");
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
        self.metrics.hit.increment(1);
    }

    #[inline]
    pub(crate) fn count_stale(&self) {
        self.counters.stale_served.add(1);
        self.metrics.stale.increment(1);
    }

    pub(crate) fn count_bypass(&self) {
        bump(&self.counters.bypassed);
        self.metrics.bypass.increment(1);
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

impl<K, V, St> Shared<K, V, St>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    St: Store<K, V>,
{
    /// Joins the flight for `key`, or starts one and leads it.
    fn join(self: &Arc<Self>, key: &K) -> Result<Lead<K, V, St>, Arc<Flight<V>>> {
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

    /// Writes a loaded value (fresh for its TTL from `started`), unless the policy, the weight bound, an
    /// invalidation since `epoch0`, or (for a refresh) a change of the
    /// entry since it was read says not to.
    #[allow(clippy::too_many_arguments)]
    async fn write(
        self: &Arc<Self>,
        key: K,
        value: V,
        verdict: Verdict,
        started: Instant,
        load_time: Duration,
        epoch0: u64,
        expect_version: Option<u64>,
    ) {
        if verdict.kind == Kind::Skip {
            return;
        }
        let weight = (self.cfg.weigher)(&key, &value);
        if weight > self.cfg.max_entry_bytes {
            bump(&self.counters.oversized);
            self.metrics.oversized.increment(1);
            return;
        }
        let negative = verdict.kind == Kind::Negative;
        let base = verdict.ttl.unwrap_or(if negative {
            self.cfg.negative_ttl
        } else {
            self.cfg.ttl
        });
        // The TTL counts from when the backend was asked: the value is at
        // most that fresh (as RFC 9111 counts age from the request).
        let fresh_until = later(started, self.jittered(base));
        let (revalidate_until, stale_until) = if negative {
            (fresh_until, fresh_until)
        } else {
            let swr = self.cfg.stale_while_revalidate;
            (
                later(fresh_until, swr),
                later(fresh_until, swr.max(self.cfg.stale_if_error)),
            )
        };
        let early_from = self.early_from(started, fresh_until, load_time);
        let version = self.versions.fetch_add(1, Ordering::Relaxed) + 1;
        let gate = self.gate.read().await;
        if !self.may_write(&key, epoch0, expect_version).await {
            return;
        }
        self.errors.remove(&key);
        let entry = Entry::new(
            value,
            fresh_until,
            revalidate_until,
            stale_until,
            early_from,
            load_time,
            weight,
            version,
            negative,
        );
        // The tag pairs go in once the entry is in the store (or, if this
        // future is dropped during the `put`, when it is dropped), still
        // under the gate: a sweep then only sees pairs of written entries
        // (see `tags.rs`), and an invalidation sees the pairs of every
        // write it does not stop.
        let pending = self.tags.pending(&key, version, verdict.tags);
        self.store.put(key, entry).await;
        let claim = pending.and_then(|p| p.commit());
        drop(gate);
        if let Some(claim) = claim {
            self.sweep_tags(claim).await;
        }
    }

    /// Sweeps the tag index on a task of its own, so that no request waits
    /// for it; inline when there is no tokio runtime to spawn on.
    async fn sweep_tags(self: &Arc<Self>, claim: SweepClaim) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let shared = Arc::clone(self);
                runtime.spawn(async move { shared.tags.sweep(&shared.store, claim).await });
            }
            Err(_) => self.tags.sweep(&self.store, claim).await,
        }
    }

    /// Whether a load of `key` that started at `epoch0` may write (the
    /// caller holds the gate shared): not if an invalidation came since,
    /// nor, for a refresh, if the entry changed since it was read.
    async fn may_write(&self, key: &K, epoch0: u64, expect_version: Option<u64>) -> bool {
        if self.epoch(key) != epoch0 {
            if expect_version.is_some() {
                bump(&self.counters.refreshes_dropped);
            }
            return false;
        }
        if let Some(expected) = expect_version {
            let current = self.store.get(key).await.map(|e| e.version());
            if current != Some(expected) {
                bump(&self.counters.refreshes_dropped);
                tracing::debug!(cache = %self.cfg.name, "refresh dropped: the entry changed");
                return false;
            }
        }
        true
    }

    /// Caches an error the policy chose, for its jittered TTL from
    /// `started`, under the same rules as [`write`](Self::write). The
    /// key's entry, if any, is dropped: the error is now its answer.
    async fn write_error(
        &self,
        key: K,
        verdict: &ErrorVerdict,
        started: Instant,
        epoch0: u64,
        expect_version: Option<u64>,
    ) {
        let until = later(started, self.jittered(verdict.ttl));
        let _gate = self.gate.read().await;
        if !self.may_write(&key, epoch0, expect_version).await {
            return;
        }
        if !self
            .errors
            .insert(key.clone(), Arc::clone(&verdict.make), until)
        {
            tracing::debug!(cache = %self.cfg.name, "error not cached: the table is full");
            return;
        }
        self.store.delete(&key).await;
    }

    /// A request answered with the error cached for `key`, counted as a
    /// hit.
    fn cached_error(&self, key: &K) -> Option<BoxError> {
        let make = self.errors.get(key)?;
        bump(&self.counters.errors_served);
        self.count_hit();
        Some(make())
    }

    /// Leads one load: calls the backend, writes, hands the result to the
    /// waiters. On failure, answers with `stale` if it is still servable
    /// (stale-if-error).
    #[allow(clippy::too_many_arguments)]
    async fn lead<S, Req, P, N>(
        self: &Arc<Self>,
        lead: Lead<K, V, St>,
        key: K,
        req: Req,
        mut svc: S,
        (policy, errors): (&P, &N),
        stale: Option<Entry<V>>,
        expect_version: Option<u64>,
    ) -> Result<V, BoxError>
    where
        S: Service<Req, Response = V>,
        S::Error: Into<BoxError>,
        P: CachePolicy<V>,
        N: ErrorPolicy<S::Error>,
    {
        let epoch0 = self.epoch(&key);
        let start = Instant::now();
        let ready: Result<(), BoxError> = std::future::poll_fn(|cx| svc.poll_ready(cx))
            .await
            .map_err(Into::into);
        // Only `call`'s errors are about the key; a readiness error is
        // about the service and is never cached.
        let mut error_verdict = None;
        let result = match ready {
            Ok(()) => svc.call(req).await.map_err(|e| {
                error_verdict = errors.verdict(&e);
                e.into()
            }),
            Err(e) => Err(e),
        };
        let load_time = start.elapsed();
        bump(&self.counters.loads);
        self.counters
            .load_nanos
            .fetch_add(saturating_nanos(load_time), Ordering::Relaxed);
        self.metrics.load_seconds.record(load_time.as_secs_f64());
        match result {
            Ok(value) => {
                let verdict = policy.verdict(&value);
                self.write(
                    key,
                    value.clone(),
                    verdict,
                    start,
                    load_time,
                    epoch0,
                    expect_version,
                )
                .await;
                lead.finish(|| Outcome::Value(value.clone()));
                Ok(value)
            }
            Err(error) => {
                bump(&self.counters.load_failures);
                self.metrics.load_failures.increment(1);
                tracing::debug!(cache = %self.cfg.name, error = %error, "cache load failed");
                if let Some(value) = self.stale_on_error(stale.as_ref()) {
                    lead.finish(|| Outcome::Value(value.clone()));
                    return Ok(value);
                }
                if let Some(verdict) = error_verdict {
                    self.write_error(key, &verdict, start, epoch0, expect_version)
                        .await;
                    // Waiters get a copy each; the caller keeps the
                    // original.
                    lead.finish(|| Outcome::Error(verdict.make));
                    return Err(error);
                }
                Err(lead.fail(error))
            }
        }
    }

    fn stale_on_error(&self, stale: Option<&Entry<V>>) -> Option<V> {
        let entry = stale?;
        if entry.is_negative() || !entry.is_servable(Instant::now()) {
            return None;
        }
        bump(&self.counters.stale_if_error);
        self.metrics.stale_if_error.increment(1);
        Some(entry.value().clone())
    }

    /// The miss path: look the key up if the caller could not (then
    /// answer a hit, or a stale read with a background refresh, as the
    /// caller's synchronous path does), then join or lead a load. Leaders'
    /// and waiters' futures are interchangeable: if the leader's is
    /// dropped, a waiter leads with its own request.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn read_through<S, Req, P, N>(
        self: Arc<Self>,
        key: K,
        mut req: Req,
        svc: S,
        policy: P,
        errors: N,
        mut stale: Option<Entry<V>>,
        looked_up: bool,
    ) -> Result<V, BoxError>
    where
        S: Service<Req, Response = V> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
        Req: Send + 'static,
        P: CachePolicy<V> + Clone + Send + Sync + 'static,
        N: ErrorPolicy<S::Error> + Clone + Send + Sync + 'static,
    {
        if !looked_up && let Some(entry) = self.store.get(&key).await {
            match self.judge(entry, Instant::now(), &key, req, &svc, (&policy, &errors)) {
                Found::Served(value) => return Ok(value),
                Found::Load(given_back, servable) => {
                    req = given_back;
                    stale = servable;
                }
            }
        }
        if let Some(error) = self.cached_error(&key) {
            return Err(error);
        }
        bump(&self.counters.misses);
        self.metrics.miss.increment(1);
        let mut waited = false;
        loop {
            match self.join(&key) {
                Ok(lead) => {
                    // Another load may have landed between our lookup and
                    // the join.
                    if let Some(entry) = self.store.get(&key).await
                        && entry.is_fresh(Instant::now())
                    {
                        let value = entry.value().clone();
                        lead.finish(|| Outcome::Value(value.clone()));
                        return Ok(value);
                    }
                    if let Some(make) = self.errors.get(&key) {
                        let error = make();
                        lead.finish(|| Outcome::Error(make));
                        return Err(error);
                    }
                    return self
                        .lead(lead, key, req, svc, (&policy, &errors), stale, None)
                        .await;
                }
                Err(flight) => {
                    if !waited {
                        waited = true;
                        bump(&self.counters.coalesced);
                        self.metrics.coalesced.increment(1);
                    }
                    match flight.wait().await {
                        Outcome::Value(value) => return Ok(value),
                        Outcome::Error(make) => {
                            if let Some(value) = self.stale_on_error(stale.as_ref()) {
                                return Ok(value);
                            }
                            return Err(make());
                        }
                        Outcome::Failed(error) => {
                            if let Some(value) = self.stale_on_error(stale.as_ref()) {
                                return Ok(value);
                            }
                            return Err(Box::new(CoalescedError::new(error)));
                        }
                        Outcome::Abandoned => continue,
                    }
                }
            }
        }
    }

    /// Answers a request at `at` from the entry found for `key`, as every
    /// lookup does (the synchronous one in `CacheService::call` and the
    /// asynchronous one in [`read_through`](Self::read_through)): a fresh
    /// entry is a hit (starting an XFetch refresh when one is drawn); a
    /// stale one inside its revalidate window is served while one
    /// background refresh runs; otherwise the request is given back for a
    /// load, with the entry if it may still answer a failed one.
    pub(crate) fn judge<S, Req, P, N>(
        self: &Arc<Self>,
        entry: Entry<V>,
        at: Instant,
        key: &K,
        req: Req,
        svc: &S,
        policies: (&P, &N),
    ) -> Found<V, Req>
    where
        S: Service<Req, Response = V> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
        Req: Send + 'static,
        P: CachePolicy<V> + Clone + Send + Sync + 'static,
        N: ErrorPolicy<S::Error> + Clone + Send + Sync + 'static,
    {
        if entry.settled_at(at) {
            self.count_hit();
            return Found::Served(entry.into_value());
        }
        let now = Ticks::from_instant(at);
        if entry.fresh_at(now) {
            self.count_hit();
            if self.xfetch_due(&entry, at) {
                // Without a runtime the early refresh is simply not made.
                let _ = self.refresh(key, req, svc, policies, &entry);
            }
            return Found::Served(entry.into_value());
        }
        let mut req = req;
        if entry.revalidating_at(now) {
            match self.refresh(key, req, svc, policies, &entry) {
                Ok(()) => {
                    self.count_stale();
                    return Found::Served(entry.into_value());
                }
                // No runtime to refresh on: load now instead.
                Err(given_back) => req = given_back,
            }
        }
        Found::Load(req, entry.servable_at(now).then_some(entry))
    }

    /// Starts one background refresh of `key` (stale-while-revalidate,
    /// XFetch) unless a load of it is already running. Gives the request
    /// back when there is no tokio runtime to spawn on.
    pub(crate) fn refresh<S, Req, P, N>(
        self: &Arc<Self>,
        key: &K,
        req: Req,
        svc: &S,
        (policy, errors): (&P, &N),
        entry: &Entry<V>,
    ) -> Result<(), Req>
    where
        S: Service<Req, Response = V> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
        Req: Send + 'static,
        P: CachePolicy<V> + Clone + Send + Sync + 'static,
        N: ErrorPolicy<S::Error> + Clone + Send + Sync + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(req);
        };
        let Ok(lead) = self.join(key) else {
            return Ok(()); // a load is already running
        };
        bump(&self.counters.refreshes);
        self.metrics.refreshes.increment(1);
        let shared = Arc::clone(self);
        let stale = entry.clone();
        let expected = entry.version();
        let (key, svc, policy, errors) = (key.clone(), svc.clone(), policy.clone(), errors.clone());
        runtime.spawn(async move {
            let _ = shared
                .lead(
                    lead,
                    key,
                    req,
                    svc,
                    (&policy, &errors),
                    Some(stale),
                    Some(expected),
                )
                .await;
        });
        Ok(())
    }
}
