//! A scripted backend shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use buttress_cache::store::{QuickCacheStore, Store};
use buttress_cache::{CacheBuilder, CacheLayer, Entry};
use buttress_core::time::Instant;
use tokio::sync::Notify;
use tower::{BoxError, Layer, Service, ServiceExt};

/// A response: the key it answers and the backend's version when it did.
pub type Answer = (u64, u64);

/// A backend answering `(key, version)` after `delay` (paused time), or
/// failing while `fail` is set. Counts calls started, calls finished,
/// readiness polls and the most calls running at once.
#[derive(Clone, Default)]
pub struct Backend {
    pub started: Arc<AtomicUsize>,
    pub finished: Arc<AtomicUsize>,
    pub ready_polls: Arc<AtomicUsize>,
    pub running: Arc<AtomicUsize>,
    pub max_running: Arc<AtomicUsize>,
    pub version: Arc<AtomicU64>,
    pub fail: Arc<AtomicBool>,
    pub hang: Arc<AtomicBool>,
    pub delay: Duration,
}

impl Backend {
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    pub fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    pub fn set_version(&self, v: u64) {
        self.version.store(v, Ordering::SeqCst);
    }

    pub fn set_failing(&self, failing: bool) {
        self.fail.store(failing, Ordering::SeqCst);
    }

    /// Calls started while hanging never answer (until dropped).
    pub fn set_hanging(&self, hanging: bool) {
        self.hang.store(hanging, Ordering::SeqCst);
    }

    /// Calls running now: started and neither answered nor dropped.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

impl Service<u64> for Backend {
    type Response = Answer;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Answer>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.ready_polls.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, key: u64) -> Self::Future {
        self.started.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let this = self.clone();
        // The answer is as of the call, like a database read.
        let version = self.version.load(Ordering::SeqCst);
        let hang = self.hang.load(Ordering::SeqCst);
        Box::pin(async move {
            struct Done(Backend);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.running.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let done = Done(this);
            if hang {
                std::future::pending::<()>().await;
            }
            if !done.0.delay.is_zero() {
                tokio::time::sleep(done.0.delay).await;
            }
            done.0.finished.fetch_add(1, Ordering::SeqCst);
            if done.0.fail.load(Ordering::SeqCst) {
                Err(io::Error::other("backend down"))
            } else {
                Ok((key, version))
            }
        })
    }
}

/// A store that answers only asynchronously, as a remote one would: it
/// forwards every method to a [`QuickCacheStore`] but `try_get`, left to
/// the trait's default (`None`), so the layer always takes the async path.
///
/// It can also park the next `get` of one key, or the next `put` of one
/// key before it writes, until released, and leave every `put` pending
/// forever once it has written (a remote write whose reply never comes).
#[derive(Clone)]
pub struct AsyncOnly {
    pub inner: QuickCacheStore<u64, Answer>,
    park: Arc<Mutex<Option<u64>>>,
    park_put: Arc<Mutex<Option<u64>>>,
    parked: Arc<Notify>,
    release: Arc<Notify>,
    hang_puts: Arc<AtomicBool>,
}

impl AsyncOnly {
    pub fn new(max_bytes: u64) -> Self {
        Self {
            inner: QuickCacheStore::builder(max_bytes)
                .estimated_entries(1_000)
                .build()
                .unwrap(),
            park: Arc::default(),
            park_put: Arc::default(),
            parked: Arc::default(),
            release: Arc::default(),
            hang_puts: Arc::default(),
        }
    }

    /// The next `get(key)` waits for [`release`](Self::release).
    pub fn park_next_get(&self, key: u64) {
        *self.park.lock().unwrap() = Some(key);
    }

    /// The next `put(key, ..)` waits for [`release`](Self::release) before
    /// it writes.
    pub fn park_next_put(&self, key: u64) {
        *self.park_put.lock().unwrap() = Some(key);
    }

    /// Waits until a `get` or a `put` is parked; panics after a minute (of paused
    /// time, so at once) if none is.
    pub async fn wait_parked(&self) {
        tokio::time::timeout(Duration::from_secs(60), self.parked.notified())
            .await
            .expect("nothing was parked");
    }

    pub fn release(&self) {
        self.release.notify_one();
    }

    pub fn hang_puts(&self, hang: bool) {
        self.hang_puts.store(hang, Ordering::SeqCst);
    }
}

impl AsyncOnly {
    async fn park_if(&self, park: &Mutex<Option<u64>>, key: u64) {
        let park = {
            let mut park = park.lock().unwrap();
            *park == Some(key) && park.take().is_some()
        };
        if park {
            self.parked.notify_one();
            self.release.notified().await;
        }
    }
}

impl Store<u64, Answer> for AsyncOnly {
    async fn get(&self, key: &u64) -> Option<Entry<Answer>> {
        self.park_if(&self.park, *key).await;
        self.inner.get(key).await
    }

    async fn put(&self, key: u64, entry: Entry<Answer>) {
        self.park_if(&self.park_put, key).await;
        self.inner.put(key, entry).await;
        if self.hang_puts.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }

    async fn delete(&self, key: &u64) {
        self.inner.delete(key).await;
    }

    async fn delete_where(&self, pred: &(dyn Fn(&u64, &Entry<Answer>) -> bool + Send + Sync)) {
        self.inner.delete_where(pred).await;
    }

    fn evictions(&self) -> buttress_cache::Evictions {
        self.inner.evictions()
    }

    fn weighted_size(&self) -> u64 {
        self.inner.weighted_size()
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }
}

/// One request for `k` through a clone of `svc`.
pub async fn get<S>(svc: &S, k: u64) -> Result<Answer, BoxError>
where
    S: Service<u64, Response = Answer, Error = BoxError> + Clone,
{
    svc.clone().oneshot(k).await
}

/// Lets spawned tasks (background refreshes, sweeps) run without moving
/// time.
pub async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// Loads keys `0..keys` together (so every key starts with a full TTL),
/// then for `steps` steps of 10 ms bumps the backend's version and reads
/// every key, asserting that each read answers its own key at once (never
/// waiting for a load). Returns the versions served.
pub async fn read_steadily<S>(
    svc: &S,
    backend: &Backend,
    keys: u64,
    steps: u64,
) -> std::collections::HashSet<u64>
where
    S: Service<u64, Response = Answer, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    let loads: Vec<_> = (0..keys)
        .map(|k| tokio::spawn(svc.clone().oneshot(k)))
        .collect();
    for load in loads {
        load.await.unwrap().unwrap();
    }
    let mut seen_versions = std::collections::HashSet::new();
    for step in 0..steps {
        backend.set_version(step);
        tokio::time::advance(Duration::from_millis(10)).await;
        for k in 0..keys {
            let before = Instant::now();
            let (key, version) = get(svc, k).await.unwrap();
            assert_eq!(key, k);
            assert_eq!(Instant::now(), before, "a read never waited for a load");
            seen_versions.insert(version);
        }
    }
    seen_versions
}

/// XFetch under steady load, on any store: δ = 1 s loads, a 10 s TTL,
/// `keys` hot keys read every 10 ms for `steps` steps. No read may wait for
/// a load (no synchronous miss at expiry, nothing served stale), each key
/// is refreshed in the background `per_key` times (a range), and more than
/// `min_versions` refreshed values are served.
pub async fn assert_xfetch_keeps_hot_keys_fresh<St>(
    builder: CacheBuilder<u64, Answer, St>,
    keys: u64,
    steps: u64,
    per_key: std::ops::RangeInclusive<f64>,
    min_versions: usize,
) where
    St: Store<u64, Answer>,
{
    let backend = Backend::new(Duration::from_secs(1));
    let cache = builder
        .ttl(Duration::from_secs(10))
        .xfetch_beta(Some(1.0))
        .seed(7)
        .build()
        .unwrap();
    let svc = CacheLayer::new(cache.clone(), |k: &u64| Some(*k)).layer(backend.clone());
    let seen_versions = read_steadily(&svc, &backend, keys, steps).await;
    let stats = cache.snapshot();
    assert_eq!(stats.misses, keys, "no synchronous miss at expiry");
    assert_eq!(stats.stale_served, 0);
    let refreshes = stats.refreshes as f64 / keys as f64;
    assert!(
        per_key.contains(&refreshes),
        "refreshes per key: {refreshes}"
    );
    assert!(
        seen_versions.len() > min_versions,
        "refreshed values were served"
    );
}
