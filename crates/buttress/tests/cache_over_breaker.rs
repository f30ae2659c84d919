//! The cache outside a circuit breaker: while the breaker is open, the
//! cache answers from stale entries (stale-if-error), and only keys it has
//! never seen fail, fast, with `CircuitOpen`.
#![cfg(all(feature = "cache", feature = "breaker"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use buttress::ServiceBuilderExt;
use buttress::breaker::{CircuitBreaker, CircuitOpen, State};
use buttress::cache::{Cache, CacheLayer, store::QuickCacheStore};
use buttress::core::error::find;
use tower::{ServiceBuilder, ServiceExt, service_fn};

#[tokio::test(start_paused = true)]
async fn stale_entries_are_served_while_the_breaker_is_open() {
    let down = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let backend = {
        let (down, calls) = (Arc::clone(&down), Arc::clone(&calls));
        service_fn(move |id: u64| {
            calls.fetch_add(1, Ordering::SeqCst);
            let failed = down.load(Ordering::SeqCst);
            async move {
                if failed {
                    Err(std::io::Error::other("backend down"))
                } else {
                    Ok(id * 10)
                }
            }
        })
    };
    let breaker = CircuitBreaker::builder()
        .count_window(4)
        .minimum_calls(4)
        .open_duration(Duration::from_secs(60))
        .open_duration_jitter(0.0)
        .build()
        .unwrap();
    let cache = Cache::builder(
        QuickCacheStore::builder(1 << 20)
            .estimated_entries(100)
            .build()
            .unwrap(),
    )
    .ttl(Duration::from_secs(10))
    .stale_if_error(Duration::from_secs(300))
    .xfetch_beta(None)
    .build()
    .unwrap();
    let svc = ServiceBuilder::new()
        .cache(CacheLayer::new(cache.clone(), |id: &u64| Some(*id)))
        .circuit_breaker(breaker.clone())
        .service(backend);

    assert_eq!(svc.clone().oneshot(1).await.unwrap(), 10);
    down.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(20)).await; // key 1 is stale
    // Trip the breaker with keys the cache has never seen.
    for id in 100..104 {
        svc.clone().oneshot(id).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::Open);
    let calls_when_open = calls.load(Ordering::SeqCst);

    // The stale entry is served; the breaker rejects without a backend call.
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), 10);
    let err = svc.clone().oneshot(7).await.unwrap_err();
    // Bare, or inside a coalesced waiter's error: found either way.
    assert!(
        find::<CircuitOpen>(&err).is_some(),
        "an unseen key fails fast: {err}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), calls_when_open);
    assert_eq!(cache.snapshot().stale_if_error, 1);
}
