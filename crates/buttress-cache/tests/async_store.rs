//! Stale-while-revalidate and XFetch on a store that only answers
//! asynchronously (`try_get` returns `None`, as a remote store's would).

mod common;

use std::time::Duration;

use buttress_cache::{Cache, CacheBuilder, CacheLayer, CacheService};
use buttress_core::time::Instant;
use common::{Answer, AsyncOnly, Backend, assert_xfetch_keeps_hot_keys_fresh, get, settle};
use tokio::time::advance;
use tower::Layer;

type Svc = CacheService<Backend, u64, Answer, AsyncOnly, fn(&u64) -> Option<u64>>;

fn by_key(k: &u64) -> Option<u64> {
    Some(*k)
}

/// No jitter, no XFetch, seeded.
fn builder() -> CacheBuilder<u64, Answer, AsyncOnly> {
    Cache::builder(AsyncOnly::new(1 << 20))
        .ttl_jitter(0.0)
        .xfetch_beta(None)
        .seed(1)
}

fn layer(cache: &Cache<u64, Answer, AsyncOnly>, backend: &Backend) -> Svc {
    CacheLayer::new(cache.clone(), by_key as fn(&u64) -> Option<u64>).layer(backend.clone())
}

#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_answers_at_once_on_an_async_only_store() {
    let backend = Backend::new(Duration::from_secs(1));
    let cache = builder()
        .ttl(Duration::from_secs(10))
        .stale_while_revalidate(Duration::from_secs(5))
        .build()
        .unwrap();
    let svc = layer(&cache, &backend);
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 0));
    backend.set_version(1);

    advance(Duration::from_secs(11)).await;
    let before = Instant::now();
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 0), "stale, at once");
    assert_eq!(
        Instant::now(),
        before,
        "the read did not wait for the backend"
    );
    settle().await;
    assert_eq!(backend.started(), 2, "one background refresh");
    let stats = cache.snapshot();
    assert_eq!(
        (stats.stale_served, stats.refreshes, stats.misses),
        (1, 1, 1)
    );

    // While the refresh runs, stale reads start no other.
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 0));
    settle().await;
    assert_eq!(backend.started(), 2);
    assert_eq!(Instant::now(), before);

    advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 1), "refreshed");
    let stats = cache.snapshot();
    assert_eq!((stats.hits, stats.stale_served, stats.refreshes), (1, 2, 1));

    // Past the revalidate window a read is a miss that waits, as on a
    // synchronous store.
    backend.set_version(2);
    advance(Duration::from_secs(16)).await;
    let before = Instant::now();
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 2));
    assert_eq!(Instant::now() - before, Duration::from_secs(1));
    assert_eq!(cache.snapshot().misses, 2);
}

#[tokio::test(start_paused = true)]
async fn xfetch_refreshes_early_on_an_async_only_store() {
    // 5 hot keys for 30 s: about one refresh per key per 6.4 s window (see
    // the same test on quick_cache in cache.rs), 4–5 per key.
    assert_xfetch_keeps_hot_keys_fresh(builder(), 5, 3_000, 2.0..=8.0, 5).await;
}
