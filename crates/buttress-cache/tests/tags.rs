//! The tag index: bounded by sweeps, and never losing a key whose entry
//! carries the tag.

mod common;

use std::time::Duration;

use buttress_cache::store::{QuickCacheStore, Store};
use buttress_cache::{Cache, CacheLayer, Verdict};
use common::{Answer, AsyncOnly, Backend, get, settle};
use tokio::time::advance;
use tower::{Layer, ServiceExt};

#[tokio::test(start_paused = true)]
async fn the_tag_index_stays_bounded_while_the_store_evicts_tagged_entries() {
    // Room for 100 entries of 100 bytes; 20,000 keys, each tagged "all"
    // and one of seven groups: 40,000 pairs if nothing were swept.
    let cache = Cache::builder(
        QuickCacheStore::builder(100 * 100)
            .estimated_entries(100)
            .build()
            .unwrap(),
    )
    .weigher(|_: &u64, _: &Answer| 100)
    .ttl_jitter(0.0)
    .xfetch_beta(None)
    .seed(1)
    .build()
    .unwrap();
    let svc = CacheLayer::new(cache.clone(), |k: &u64| Some(*k))
        .policy(|a: &Answer| Verdict::cache().tag("all").tag(format!("g{}", a.0 % 7)))
        .layer(Backend::default());
    let keys = 20_000u64;
    let mut most = 0;
    for k in 0..keys {
        get(&svc, k).await.unwrap();
        most = most.max(cache.snapshot().tag_index_pairs);
        if k % 100 == 0 {
            // A service's other tasks run now and then; so does the sweep.
            tokio::task::yield_now().await;
        }
    }
    settle().await;
    let stats = cache.snapshot();
    assert!(
        stats.evictions.size > keys - 200,
        "the store evicted: {:?}",
        stats.evictions
    );
    assert!(most < 5_000, "the index held up to {most} pairs");
    assert!(
        stats.tag_index_pairs < 5_000,
        "the index holds {} pairs",
        stats.tag_index_pairs
    );

    let cached: Vec<u64> = (0..keys).filter(|k| cache.peek(k).is_some()).collect();
    assert!(
        cached.iter().any(|k| k % 7 == 3) && cached.iter().any(|k| k % 7 != 3),
        "both groups are cached: {cached:?}"
    );
    cache.invalidate_tag("g3").await;
    for k in &cached {
        assert_eq!(
            cache.peek(k).is_none(),
            k % 7 == 3,
            "{k}: dropped if and only if it carried g3"
        );
    }
    cache.invalidate_tag("all").await;
    assert!(
        (0..keys).all(|k| cache.peek(&k).is_none()),
        "every cached key carried `all`"
    );
}

#[tokio::test(start_paused = true)]
async fn a_key_rewritten_with_its_tag_during_a_sweep_is_still_invalidated() {
    let store = AsyncOnly::new(1 << 30);
    let cache = Cache::builder(store.clone())
        .ttl_jitter(0.0)
        .xfetch_beta(None)
        .build()
        .unwrap();
    let backend = Backend::default();
    let svc = CacheLayer::new(cache.clone(), |k: &u64| Some(*k))
        .policy(|a: &Answer| Verdict::cache().tag(if a.0 == 1 { "hot" } else { "bulk" }))
        .layer(backend.clone());
    get(&svc, 1).await.unwrap();

    // 2,049 pairs start a sweep, which stops when it asks about key 1.
    store.park_next_get(1);
    for k in 2..=2_049 {
        get(&svc, k).await.unwrap();
    }
    store.wait_parked().await;

    // Meanwhile key 1 is dropped and written again, with its tag.
    cache.invalidate(&1).await;
    backend.set_version(1);
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 1));
    // The sweep now sees a version of key 1 other than the one it
    // copied, but must keep the pair: it stands for the new write.
    store.release();
    settle().await;
    assert_eq!(
        cache.snapshot().tag_index_pairs,
        2_049,
        "every entry is live"
    );

    cache.invalidate_tag("hot").await;
    assert!(
        store.get(&1).await.is_none(),
        "the rewritten key was dropped"
    );
    backend.set_version(2);
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 2), "and is loaded again");
    assert!(store.get(&2).await.is_some(), "other tags are left alone");
}

#[tokio::test(start_paused = true)]
async fn entries_replaced_without_the_tag_or_expired_leave_the_index_after_a_sweep() {
    let backend = Backend::default();
    let cache = Cache::builder(
        QuickCacheStore::builder(1 << 30)
            .estimated_entries(4_000)
            .build()
            .unwrap(),
    )
    .ttl(Duration::from_secs(10))
    .ttl_jitter(0.0)
    .xfetch_beta(None)
    .build()
    .unwrap();
    // Only answers of backend version 0 carry the tag.
    let svc = CacheLayer::new(cache.clone(), |k: &u64| Some(*k))
        .policy(|a: &Answer| {
            if a.1 == 0 {
                Verdict::cache().tag("v0")
            } else {
                Verdict::cache()
            }
        })
        .layer(backend.clone());
    for k in 0..1_500 {
        get(&svc, k).await.unwrap();
    }
    // All expire; the first half is loaded again, without the tag.
    advance(Duration::from_secs(11)).await;
    backend.set_version(1);
    for k in 0..750 {
        assert_eq!(get(&svc, k).await.unwrap(), (k, 1));
    }
    settle().await;
    assert_eq!(cache.snapshot().tag_index_pairs, 1_500, "no sweep yet");

    // 600 new tagged keys take the index past 2,048 pairs: a sweep.
    backend.set_version(0);
    for k in 10_000..10_600 {
        get(&svc, k).await.unwrap();
    }
    settle().await;
    assert_eq!(
        cache.snapshot().tag_index_pairs,
        600,
        "only the new keys' pairs are left"
    );

    cache.invalidate_tag("v0").await;
    assert!(
        (0..750).all(|k| cache.peek(&k).is_some()),
        "keys rewritten without the tag are no longer dropped with it"
    );
    assert!((10_000..10_600).all(|k| cache.peek(&k).is_none()));
}

#[tokio::test(start_paused = true)]
async fn a_write_dropped_during_its_put_still_indexes_its_tags() {
    let store = AsyncOnly::new(1 << 20);
    let cache = Cache::builder(store.clone()).build().unwrap();
    let svc = CacheLayer::new(cache.clone(), |k: &u64| Some(*k))
        .policy(|_: &Answer| Verdict::cache().tag("t"))
        .layer(Backend::default());

    // The put lands but never returns; the caller gives up.
    store.hang_puts(true);
    let gave_up = tokio::time::timeout(Duration::from_secs(1), get(&svc, 5)).await;
    assert!(gave_up.is_err(), "the request was stuck in the put");
    store.hang_puts(false);
    assert!(store.get(&5).await.is_some(), "the entry landed");

    cache.invalidate_tag("t").await;
    assert!(store.get(&5).await.is_none(), "and the tag still finds it");
}

#[tokio::test(start_paused = true)]
async fn a_sweep_during_a_tagged_put_does_not_lose_its_pair() {
    let store = AsyncOnly::new(1 << 30);
    let cache = Cache::builder(store.clone()).build().unwrap();
    let svc = CacheLayer::new(cache.clone(), |k: &u64| Some(*k))
        .policy(|a: &Answer| Verdict::cache().tag(if a.0 == 1 { "hot" } else { "bulk" }))
        .layer(Backend::default());

    // Key 1's write is slow to reach the store.
    store.park_next_put(1);
    let slow = tokio::spawn(svc.clone().oneshot(1));
    store.wait_parked().await;
    // Meanwhile 2,049 other pairs start a sweep, which finds no entry for
    // key 1 in the store.
    for k in 2..=2_050 {
        get(&svc, k).await.unwrap();
    }
    settle().await;
    assert!(
        store.get(&1).await.is_none(),
        "key 1 is still being written"
    );
    store.release();
    slow.await.unwrap().unwrap();
    assert!(store.get(&1).await.is_some());

    cache.invalidate_tag("hot").await;
    assert!(store.get(&1).await.is_none(), "the tag still finds key 1");
}
