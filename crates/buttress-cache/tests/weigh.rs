//! The default weigher measures what users store: with 10-byte and 10 MB
//! values mixed, the store's byte bound holds and an oversized value is
//! answered but not cached, without setting a weigher.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use buttress_cache::store::{QuickCacheStore, Store};
use buttress_cache::{Cache, CacheLayer, ENTRY_OVERHEAD_BYTES, Weigh};
use bytes::Bytes;
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};

const SMALL: usize = 10;
const LARGE: usize = 10 << 20;

/// Even keys answer 10 bytes, odd keys 10 MB; counts calls per parity.
fn mixed_backend(
    calls: Arc<[AtomicUsize; 2]>,
) -> impl Service<u64, Response = Bytes, Error = io::Error, Future: Send> + Clone + Send + 'static {
    service_fn(move |k: u64| {
        let calls = Arc::clone(&calls);
        async move {
            calls[(k % 2) as usize].fetch_add(1, Ordering::SeqCst);
            let len = if k.is_multiple_of(2) { SMALL } else { LARGE };
            Ok::<_, io::Error>(Bytes::from(vec![k as u8; len]))
        }
    })
}

async fn get<S>(svc: &S, k: u64) -> Bytes
where
    S: Service<u64, Response = Bytes, Error = BoxError> + Clone,
{
    svc.clone().oneshot(k).await.expect("the backend answers")
}

#[tokio::test]
async fn oversized_values_bypass_the_cache_by_default() {
    let store = QuickCacheStore::builder(64 << 20).build().unwrap();
    let cache = Cache::builder(store).build().unwrap();
    let calls = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let svc =
        CacheLayer::new(cache.clone(), |k: &u64| Some(*k)).layer(mixed_backend(calls.clone()));

    for round in 0..2 {
        for k in 0..20 {
            let value = get(&svc, k).await;
            let expected = if k % 2 == 0 { SMALL } else { LARGE };
            assert_eq!(value.len(), expected, "round {round}, key {k}");
        }
    }
    let counts = cache.snapshot();
    // The small values were cached (the second round hit them), the large
    // ones answered every time and never cached.
    assert_eq!(calls[0].load(Ordering::SeqCst), 10, "small values cached");
    assert_eq!(
        calls[1].load(Ordering::SeqCst),
        20,
        "large values never cached"
    );
    assert_eq!((counts.hits, counts.oversized), (10, 20));
    let store = cache.store();
    assert_eq!(store.len(), 10);
    // Each small entry weighs what it holds: a `Bytes` of 10 bytes, a
    // `u64` key and the per-entry overhead.
    let small = ENTRY_OVERHEAD_BYTES + 8 + Bytes::from_static(b"0123456789").weight();
    assert_eq!(store.weighted_size(), 10 * small);
}

#[tokio::test]
async fn the_byte_bound_holds_with_large_values() {
    // One shard (quick_cache shards hold at least 32 entries' estimate),
    // so that a 10 MB entry fits its share of the 32 MiB.
    let store = QuickCacheStore::builder(32 << 20)
        .estimated_entries(8)
        .build()
        .unwrap();
    let cache = Cache::builder(store)
        .max_entry_bytes(16 << 20)
        .build()
        .unwrap();
    let calls = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let svc =
        CacheLayer::new(cache.clone(), |k: &u64| Some(*k)).layer(mixed_backend(calls.clone()));

    for k in 0..40 {
        get(&svc, k).await;
    }
    let store = cache.store();
    assert!(
        store.weighted_size() <= 32 << 20,
        "{} bytes held",
        store.weighted_size()
    );
    let large_held = (0..40)
        .filter(|k| k % 2 == 1 && cache.peek(k).is_some())
        .count();
    assert!(
        (1..=3).contains(&large_held),
        "{large_held} entries of 10 MB held in 32 MiB"
    );
    assert_eq!(cache.snapshot().oversized, 0);
}

#[cfg(feature = "moka")]
#[tokio::test]
async fn the_byte_bound_holds_on_moka_too() {
    use buttress_cache::store::MokaStore;
    let store = MokaStore::builder(32 << 20)
        .maintenance_interval(None)
        .build()
        .unwrap();
    let cache = Cache::builder(store)
        .max_entry_bytes(16 << 20)
        .build()
        .unwrap();
    let calls = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let svc =
        CacheLayer::new(cache.clone(), |k: &u64| Some(*k)).layer(mixed_backend(calls.clone()));
    for k in 0..40 {
        get(&svc, k).await;
    }
    cache.store().inner().run_pending_tasks().await;
    let held = cache.store().weighted_size();
    assert!(held <= 32 << 20, "{held} bytes held");
    let large_held = (0..40)
        .filter(|k| k % 2 == 1 && cache.peek(k).is_some())
        .count();
    assert!(
        large_held <= 3,
        "{large_held} entries of 10 MB held in 32 MiB"
    );
}

/// A value type of the user's own, weighed through its `Weigh`.
#[derive(Clone)]
struct Page {
    body: String,
}

impl Weigh for Page {
    fn weight(&self) -> u64 {
        size_of::<Self>() as u64 + self.body.capacity() as u64
    }
}

#[tokio::test]
async fn weigh_values_measures_the_users_own_type() {
    let page = |len: usize| {
        Arc::new(Page {
            body: "x".repeat(len),
        })
    };
    let backend = service_fn(move |k: u64| async move {
        Ok::<_, io::Error>(page(if k == 1 { LARGE } else { SMALL }))
    });
    // By default `Arc<Page>` weighs its pointer: the large page is cached.
    let store = QuickCacheStore::builder(64 << 20).build().unwrap();
    let unmeasured = Cache::builder(store).build().unwrap();
    let svc = CacheLayer::new(unmeasured.clone(), |k: &u64| Some(*k)).layer(backend);
    svc.clone().oneshot(1).await.unwrap();
    assert_eq!(unmeasured.snapshot().oversized, 0);

    // With `weigh_values`, it weighs its body and is not cached.
    let store = QuickCacheStore::builder(64 << 20).build().unwrap();
    let measured = Cache::builder(store).weigh_values().build().unwrap();
    let svc = CacheLayer::new(measured.clone(), |k: &u64| Some(*k)).layer(backend);
    svc.clone().oneshot(1).await.unwrap();
    svc.clone().oneshot(2).await.unwrap();
    let counts = measured.snapshot();
    assert_eq!(counts.oversized, 1);
    assert!(measured.peek(&2).is_some());
}

#[cfg(feature = "http")]
#[tokio::test]
async fn http_responses_are_measured() {
    let backend = service_fn(|k: u64| async move {
        let len = if k == 1 { LARGE } else { SMALL };
        Ok::<_, io::Error>(
            http::Response::builder()
                .header("content-type", "application/octet-stream")
                .body(Bytes::from(vec![0u8; len]))
                .unwrap(),
        )
    });
    let store = QuickCacheStore::builder(64 << 20).build().unwrap();
    let cache = Cache::builder(store).build().unwrap();
    let svc = CacheLayer::new(cache.clone(), |k: &u64| Some(*k)).layer(backend);
    for k in [1, 2, 1, 2] {
        svc.clone().oneshot(k).await.unwrap();
    }
    let counts = cache.snapshot();
    assert_eq!((counts.hits, counts.oversized), (1, 2));
}
