//! The same read-through behaviour on `MokaStore`, and its maintenance.
#![cfg(feature = "moka")]

mod common;

use std::time::Duration;

use buttress_cache::store::{MokaStore, Store};
use buttress_cache::{Cache, CacheLayer};
use common::{Answer, Backend};
use tower::{Layer, ServiceExt};

#[tokio::test(start_paused = true)]
async fn moka_hits_coalesces_and_invalidates() {
    let backend = Backend::new(Duration::from_millis(100));
    let cache = Cache::builder(MokaStore::builder(1 << 20).build().unwrap())
        .ttl_jitter(0.0)
        .xfetch_beta(None)
        .build()
        .unwrap();
    let svc = CacheLayer::new(cache.clone(), |k: &u64| Some(*k)).layer(backend.clone());
    let tasks: Vec<_> = (0..1_000)
        .map(|_| tokio::spawn(svc.clone().oneshot(3)))
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), (3, 0));
    }
    assert_eq!(backend.started(), 1);
    assert_eq!(svc.clone().oneshot(3).await.unwrap(), (3, 0));
    assert_eq!(cache.snapshot().hits, 1);
    cache.invalidate(&3).await;
    assert!(cache.peek(&3).is_none());
    advance_and_reload(&svc, &backend).await;
}

async fn advance_and_reload<S>(svc: &S, backend: &Backend)
where
    S: tower::Service<u64, Response = Answer, Error = tower::BoxError> + Clone,
{
    backend.set_version(1);
    assert_eq!(svc.clone().oneshot(3).await.unwrap(), (3, 1));
    assert_eq!(backend.started(), 2);
}

#[tokio::test]
async fn moka_is_bounded_by_bytes_and_counts_size_evictions() {
    // 100 entries of 1,000 bytes in a 20,000-byte store.
    let store = MokaStore::builder(20_000)
        .maintenance_interval(Some(Duration::from_millis(10)))
        .build()
        .unwrap();
    let cache = Cache::builder(store)
        .weigher(|_: &u64, _: &Answer| 1_000)
        .build()
        .unwrap();
    let svc = CacheLayer::new(cache.clone(), |k: &u64| Some(*k)).layer(Backend::default());
    for k in 0..100 {
        svc.clone().oneshot(k).await.unwrap();
    }
    cache.store().inner().run_pending_tasks().await;
    assert!(cache.store().weighted_size() <= 20_000);
    assert!(
        cache.snapshot().evictions.size >= 80,
        "{:?}",
        cache.snapshot().evictions
    );
}

#[tokio::test]
async fn a_zero_size_or_maintenance_interval_is_a_config_error() {
    let err = MokaStore::builder(1 << 20)
        .maintenance_interval(Some(Duration::ZERO))
        .build::<u64, Answer>()
        .unwrap_err();
    assert_eq!(err.field(), "maintenance_interval");
    assert!(err.to_string().contains("`maintenance_interval`"), "{err}");
    let zero = MokaStore::builder(0).build::<u64, Answer>().unwrap_err();
    assert_eq!((zero.layer(), zero.field()), ("moka store", "max_bytes"));
    // `None` is how maintenance is turned off.
    assert!(
        MokaStore::builder(1 << 20)
            .maintenance_interval(None)
            .build::<u64, Answer>()
            .is_ok()
    );
}
