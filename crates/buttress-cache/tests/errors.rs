//! Negative caching of chosen errors (`CacheLayer::cache_errors`).

mod common;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use buttress_cache::store::{QuickCacheStore, Store};
use buttress_cache::{Cache, CacheBuilder, CacheLayer, CoalescedError, Entry};
use common::{Answer, get};
use tokio::time::advance;
use tower::{BoxError, Layer, Service, ServiceExt};

type Quick = QuickCacheStore<u64, Answer>;

/// The backend's error: `NotFound` is worth caching, `Timeout` is not.
#[derive(Clone, Debug, PartialEq, Eq)]
enum DbError {
    NotFound(u64),
    Timeout(u64),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for DbError {}

const OK: u8 = 0;
const NOT_FOUND: u8 = 1;
const TIMEOUT: u8 = 2;
const NOT_READY: u8 = 3;

/// Answers `(key, calls so far)` after `delay`, or fails as `mode` says.
#[derive(Clone, Default)]
struct Db {
    calls: Arc<AtomicUsize>,
    mode: Arc<AtomicU8>,
    delay: Duration,
}

impl Db {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

impl Service<u64> for Db {
    type Response = Answer;
    type Error = DbError;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, DbError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), DbError>> {
        if self.mode.load(Ordering::SeqCst) == NOT_READY {
            // A readiness failure that would be worth caching if it came
            // from `call`.
            return Poll::Ready(Err(DbError::NotFound(u64::MAX)));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, key: u64) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) as u64 + 1;
        let mode = self.mode.load(Ordering::SeqCst);
        let delay = self.delay;
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            match mode {
                NOT_FOUND => Err(DbError::NotFound(key)),
                TIMEOUT => Err(DbError::Timeout(key)),
                _ => Ok((key, n)),
            }
        })
    }
}

fn builder() -> CacheBuilder<u64, Answer, Quick> {
    Cache::builder(
        QuickCacheStore::builder(1 << 20)
            .estimated_entries(1000)
            .build()
            .unwrap(),
    )
    .ttl(Duration::from_secs(60))
    .ttl_jitter(0.0)
    .xfetch_beta(None)
    .seed(1)
}

/// `NotFound` is cached for 5 s, `Timeout` never.
fn not_found_for_5s(e: &DbError) -> Option<Duration> {
    matches!(e, DbError::NotFound(_)).then_some(Duration::from_secs(5))
}

fn layer(
    cache: &Cache<u64, Answer, Quick>,
    db: &Db,
) -> impl Service<u64, Response = Answer, Error = BoxError, Future: Send> + Clone + Send + 'static {
    CacheLayer::new(cache.clone(), |k: &u64| Some(*k))
        .cache_errors(not_found_for_5s)
        .layer(db.clone())
}

fn db_error(e: &BoxError) -> &DbError {
    e.downcast_ref::<DbError>()
        .unwrap_or_else(|| panic!("the backend's own error type, got {e}"))
}

#[tokio::test(start_paused = true)]
async fn a_chosen_error_is_served_from_cache_for_its_ttl_then_reloaded() {
    let db = Db::default();
    let cache = builder().build().unwrap();
    let svc = layer(&cache, &db);
    db.set(NOT_FOUND);

    let first = get(&svc, 4).await.unwrap_err();
    assert_eq!(db_error(&first), &DbError::NotFound(4));
    assert_eq!(db.calls(), 1);

    db.set(OK);
    advance(Duration::from_millis(4_999)).await;
    for _ in 0..3 {
        let err = get(&svc, 4).await.unwrap_err();
        assert_eq!(db_error(&err), &DbError::NotFound(4), "the same error");
    }
    assert_eq!(db.calls(), 1, "answered from the cache");
    assert!(cache.peek(&4).is_none(), "no value was cached");
    assert_eq!(get(&svc, 5).await.unwrap(), (5, 2), "other keys load");

    advance(Duration::from_millis(1)).await; // t = 5 s: the TTL ends
    assert_eq!(get(&svc, 4).await.unwrap(), (4, 3), "reloaded");
    assert_eq!(get(&svc, 4).await.unwrap(), (4, 3), "the value is a hit");
    assert_eq!(db.calls(), 3);
    let stats = cache.snapshot();
    assert_eq!(stats.errors_served, 3);
    assert_eq!(stats.load_failures, 1);
    assert_eq!(stats.hits, 4, "3 cached errors + 1 value");
}

#[tokio::test(start_paused = true)]
async fn an_unchosen_error_is_never_cached() {
    let db = Db::default();
    let cache = builder().build().unwrap();
    let svc = layer(&cache, &db);
    db.set(TIMEOUT);
    for n in 1..=3 {
        let err = get(&svc, 4).await.unwrap_err();
        assert_eq!(db_error(&err), &DbError::Timeout(4));
        assert_eq!(db.calls(), n, "every request calls the backend");
    }
    assert_eq!(cache.snapshot().errors_served, 0);

    // Without `cache_errors`, even a `NotFound` is not cached.
    let plain = CacheLayer::new(cache.clone(), |k: &u64| Some(*k)).layer(db.clone());
    db.set(NOT_FOUND);
    for n in 4..=5 {
        get(&plain, 9).await.unwrap_err();
        assert_eq!(db.calls(), n);
    }
}

#[tokio::test(start_paused = true)]
async fn a_readiness_error_is_never_cached() {
    let db = Db::default();
    let cache = builder().build().unwrap();
    let svc = layer(&cache, &db);
    db.set(NOT_READY);
    get(&svc, 4).await.unwrap_err();
    db.set(OK);
    assert_eq!(get(&svc, 4).await.unwrap(), (4, 1));
}

#[tokio::test(start_paused = true)]
async fn invalidation_drops_a_cached_error() {
    let db = Db::default();
    let cache = builder().build().unwrap();
    let svc = layer(&cache, &db);
    db.set(NOT_FOUND);
    for k in [1, 2, 3] {
        get(&svc, k).await.unwrap_err();
    }
    db.set(OK);

    cache.invalidate(&1).await;
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 4), "dropped by key");
    assert!(get(&svc, 2).await.is_err(), "other keys keep theirs");
    cache.invalidate_tag("anything").await;
    assert!(get(&svc, 2).await.is_err(), "a cached error has no tags");
    cache.invalidate_where(|_, _| false).await;
    assert_eq!(get(&svc, 2).await.unwrap(), (2, 5), "dropped by predicate");
    assert_eq!(get(&svc, 3).await.unwrap(), (3, 6));
    assert_eq!(db.calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn an_error_loaded_during_an_invalidation_is_not_cached() {
    let db = Db {
        delay: Duration::from_secs(1),
        ..Db::default()
    };
    let cache = builder().build().unwrap();
    let svc = layer(&cache, &db);
    db.set(NOT_FOUND);
    let before = tokio::spawn(svc.clone().oneshot(5));
    while db.calls() == 0 {
        tokio::task::yield_now().await;
    }
    cache.invalidate(&5).await;
    let err = before.await.unwrap().unwrap_err();
    assert_eq!(
        db_error(&err),
        &DbError::NotFound(5),
        "its caller is answered"
    );
    db.set(OK);
    assert_eq!(get(&svc, 5).await.unwrap(), (5, 2), "but it was not cached");
}

#[tokio::test(start_paused = true)]
async fn coalesced_waiters_all_see_a_cached_error() {
    let db = Db {
        delay: Duration::from_millis(100),
        ..Db::default()
    };
    let cache = builder().build().unwrap();
    let svc = layer(&cache, &db);
    db.set(NOT_FOUND);
    let tasks: Vec<_> = (0..100)
        .map(|_| tokio::spawn(svc.clone().oneshot(7)))
        .collect();
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(db_error(&err), &DbError::NotFound(7), "not wrapped");
    }
    assert_eq!(db.calls(), 1);
    assert_eq!(cache.snapshot().coalesced_waiters, 99);
    get(&svc, 7).await.unwrap_err();
    assert_eq!(db.calls(), 1, "and it is cached");

    // An error not chosen still reaches waiters as a `CoalescedError`.
    db.set(TIMEOUT);
    let tasks: Vec<_> = (0..10)
        .map(|_| tokio::spawn(svc.clone().oneshot(8)))
        .collect();
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert!(err.downcast_ref::<CoalescedError>().is_some(), "{err}");
    }
    assert_eq!(db.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_comes_before_caching_the_error() {
    let db = Db::default();
    let cache = builder()
        .ttl(Duration::from_secs(10))
        .stale_if_error(Duration::from_secs(60))
        .build()
        .unwrap();
    let svc = layer(&cache, &db);
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 1));
    db.set(NOT_FOUND);
    advance(Duration::from_secs(20)).await;
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 1), "stale on error");
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 1));
    assert_eq!(db.calls(), 3, "the error was not cached");
    assert_eq!(cache.snapshot().stale_if_error, 2);

    // Past the stale bound, the error is the answer, and is cached.
    advance(Duration::from_secs(60)).await;
    get(&svc, 1).await.unwrap_err();
    get(&svc, 1).await.unwrap_err();
    assert_eq!(db.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_value_written_by_hand_is_served_over_a_cached_error() {
    let db = Db::default();
    let cache = builder().build().unwrap();
    let svc = layer(&cache, &db);
    db.set(NOT_FOUND);
    get(&svc, 3).await.unwrap_err();
    cache
        .store()
        .put(3, Entry::fresh_for((3, 42), Duration::from_secs(60)))
        .await;
    assert_eq!(get(&svc, 3).await.unwrap(), (3, 42));
}

#[test]
fn the_layer_with_an_error_policy_is_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    type L = CacheLayer<
        u64,
        Answer,
        Quick,
        fn(&u64) -> Option<u64>,
        buttress_cache::CacheSuccesses,
        fn(&DbError) -> Option<Duration>,
    >;
    send_sync::<L>();
    send_sync::<<L as Layer<Db>>::Service>();
}

#[tokio::test(start_paused = true)]
async fn a_rejection_is_never_cached_whatever_the_error_policy_says() {
    use buttress_core::reject::CircuitOpen;
    use buttress_core::telemetry::Name;

    let calls = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (c, o) = (Arc::clone(&calls), Arc::clone(&open));
    // A breaker inside the cache, open for the first call.
    let backend = tower::service_fn(move |k: u64| {
        let n = c.fetch_add(1, Ordering::SeqCst) as u64 + 1;
        let refused = o.load(Ordering::SeqCst);
        async move {
            if refused {
                Err(CircuitOpen::new(Name::new("inner-breaker"), None))
            } else {
                Ok::<Answer, CircuitOpen>((k, n))
            }
        }
    });
    let cache = builder().build().unwrap();
    let svc = CacheLayer::new(cache.clone(), |k: &u64| Some(*k))
        .cache_errors(|_: &CircuitOpen| Some(Duration::from_secs(60)))
        .layer(backend);
    let err = get(&svc, 1).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    open.store(false, Ordering::SeqCst);
    assert_eq!(
        get(&svc, 1).await.unwrap(),
        (1, 2),
        "the rejection was not cached"
    );
    assert_eq!(cache.snapshot().errors_served, 0);
}
