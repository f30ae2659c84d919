//! Behaviour of the cache layer through its tower service and its handle.

mod common;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use buttress_cache::store::{QuickCacheStore, Store};
use buttress_cache::{
    Cache, CacheBuilder, CacheLayer, CacheService, CoalescedError, Entry, InvalidateLayer,
    Invalidation, Verdict,
};
use buttress_core::time::Instant;
use common::{Answer, Backend, assert_xfetch_keeps_hot_keys_fresh, get, settle};
use tokio::time::advance;
use tower::{Layer, ServiceExt, service_fn};

type Quick = QuickCacheStore<u64, Answer>;
type Svc = CacheService<Backend, u64, Answer, Quick, fn(&u64) -> Option<u64>>;

fn by_key(k: &u64) -> Option<u64> {
    Some(*k)
}

/// No jitter, no XFetch, seeded: every figure below is exact.
fn builder() -> CacheBuilder<u64, Answer, Quick> {
    Cache::builder(
        QuickCacheStore::builder(1 << 20)
            .estimated_entries(1000)
            .build()
            .unwrap(),
    )
    .ttl_jitter(0.0)
    .xfetch_beta(None)
    .seed(1)
}

fn layer(cache: &Cache<u64, Answer, Quick>, backend: &Backend) -> Svc {
    CacheLayer::new(cache.clone(), by_key as fn(&u64) -> Option<u64>).layer(backend.clone())
}

#[tokio::test(start_paused = true)]
async fn a_hit_is_served_without_calling_or_readying_the_backend() {
    let backend = Backend::default();
    let cache = builder().build().unwrap();
    let svc = layer(&cache, &backend);

    assert_eq!(get(&svc, 1).await.unwrap(), (1, 0));
    assert_eq!(backend.started(), 1);
    let polls = backend
        .ready_polls
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(polls, 1, "a miss readies the backend once");

    backend.set_version(5);
    for _ in 0..10 {
        assert_eq!(get(&svc, 1).await.unwrap(), (1, 0), "served from cache");
    }
    assert_eq!(backend.started(), 1);
    assert_eq!(
        backend
            .ready_polls
            .load(std::sync::atomic::Ordering::SeqCst),
        polls,
        "a hit never polls the inner service's readiness"
    );
    let stats = cache.snapshot();
    assert_eq!((stats.hits, stats.misses, stats.loads), (10, 1, 1));
    assert!((stats.hit_ratio() - 10.0 / 11.0).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn hits_share_the_value_instead_of_copying_it() {
    let cache = Cache::builder(
        QuickCacheStore::builder(1 << 20)
            .estimated_entries(100)
            .build()
            .unwrap(),
    )
    .build()
    .unwrap();
    let svc = CacheLayer::new(cache, |k: &u64| Some(*k)).layer(service_fn(|k: u64| async move {
        Ok::<_, io::Error>(Arc::<str>::from(format!("value {k}")))
    }));
    let a = svc.clone().oneshot(3).await.unwrap();
    let b = svc.clone().oneshot(3).await.unwrap();
    let c = svc.clone().oneshot(3).await.unwrap();
    assert_eq!(&*a, "value 3");
    assert!(Arc::ptr_eq(&b, &c), "two hits hand out the same allocation");
    assert!(Arc::ptr_eq(&a, &b), "the loader's value is the cached one");
}

#[tokio::test(start_paused = true)]
async fn entries_expire_at_their_ttl_on_tokios_clock() {
    let backend = Backend::default();
    let cache = builder().ttl(Duration::from_secs(10)).build().unwrap();
    let svc = layer(&cache, &backend);

    get(&svc, 1).await.unwrap();
    backend.set_version(1);
    advance(Duration::from_millis(9_999)).await;
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 0), "still fresh");
    advance(Duration::from_millis(1)).await;
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 1), "expired: reloaded");
    assert_eq!(backend.started(), 2);
}

#[tokio::test(start_paused = true)]
async fn ttl_jitter_spreads_expiry_within_its_bounds() {
    let backend = Backend::default();
    let cache = builder()
        .ttl(Duration::from_secs(100))
        .ttl_jitter(0.1)
        .build()
        .unwrap();
    let svc = layer(&cache, &backend);
    let t0 = Instant::now();
    let mut ttls = Vec::new();
    for k in 0..1000 {
        get(&svc, k).await.unwrap();
        let entry = cache.peek(&k).expect("cached");
        ttls.push(entry.fresh_until().duration_since(t0).as_secs_f64());
    }
    let (min, max) = ttls
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    assert!(min >= 90.0 && max <= 110.0, "ttl·(1 ± 0.1): {min}..{max}");
    assert!(
        min < 91.0 && max > 109.0,
        "jitter uses its whole range: {min}..{max}"
    );
    let mean = ttls.iter().sum::<f64>() / ttls.len() as f64;
    assert!((mean - 100.0).abs() < 1.0, "centred on the ttl: {mean}");
}

#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let backend = Backend::new(Duration::from_secs(1));
    let cache = builder()
        .ttl(Duration::from_secs(10))
        .stale_while_revalidate(Duration::from_secs(5))
        .build()
        .unwrap();
    let svc = layer(&cache, &backend);
    get(&svc, 1).await.unwrap();
    backend.set_version(1);

    advance(Duration::from_secs(11)).await;
    let before = Instant::now();
    for _ in 0..5 {
        assert_eq!(get(&svc, 1).await.unwrap(), (1, 0), "stale, at once");
    }
    assert_eq!(Instant::now(), before, "nobody waited for the backend");
    settle().await;
    assert_eq!(
        backend.started(),
        2,
        "one background refresh for five stale reads"
    );

    advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 1), "refreshed");
    let stats = cache.snapshot();
    assert_eq!((stats.refreshes, stats.stale_served), (1, 5));

    // Past the revalidate window a read is a plain (synchronous) miss.
    backend.set_version(2);
    advance(Duration::from_secs(16)).await;
    let before = Instant::now();
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 2));
    assert_eq!(Instant::now() - before, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_refresh_is_dropped_when_the_entry_changed_meanwhile() {
    let backend = Backend::new(Duration::from_secs(1));
    let cache = builder()
        .ttl(Duration::from_secs(10))
        .stale_while_revalidate(Duration::from_secs(5))
        .build()
        .unwrap();
    let svc = layer(&cache, &backend);
    get(&svc, 1).await.unwrap();
    backend.set_version(1);
    advance(Duration::from_secs(11)).await;
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 0));
    settle().await;
    assert_eq!(backend.started(), 2, "refresh running");

    // Someone writes the entry while the refresh runs.
    cache
        .store()
        .put(1, Entry::fresh_for((1, 99), Duration::from_secs(60)))
        .await;
    advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 99), "the newer write wins");
    assert_eq!(cache.snapshot().refreshes_dropped, 1);
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_serves_stale_up_to_its_bound_and_never_caches_the_error() {
    let backend = Backend::default();
    let cache = builder()
        .ttl(Duration::from_secs(10))
        .stale_if_error(Duration::from_secs(60))
        .build()
        .unwrap();
    let svc = layer(&cache, &backend);
    get(&svc, 1).await.unwrap();

    backend.set_failing(true);
    advance(Duration::from_secs(30)).await;
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 0), "stale on error");
    advance(Duration::from_secs(39)).await; // t = 69 s < 10 + 60
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 0));
    advance(Duration::from_secs(1)).await; // t = 70 s: the bound
    let err = get(&svc, 1).await.unwrap_err();
    assert!(
        err.downcast_ref::<io::Error>().is_some(),
        "the backend's own error: {err}"
    );
    let stats = cache.snapshot();
    assert_eq!((stats.stale_if_error, stats.load_failures), (2, 3));

    backend.set_failing(false);
    backend.set_version(7);
    assert_eq!(
        get(&svc, 1).await.unwrap(),
        (1, 7),
        "the error was not cached"
    );
}

#[tokio::test(start_paused = true)]
async fn xfetch_refreshes_hot_keys_early_so_steady_load_never_misses() {
    // 10 hot keys for 100 s. Each key is refreshed about once per TTL
    // window: the refresh starts about δ·ln(100 reads/s) ≈ 4.6 s early and
    // takes 1 s, so a window is ≈ 6.4 s, about 16 refreshes per key.
    assert_xfetch_keeps_hot_keys_fresh(builder(), 10, 10_000, 9.0..=25.0, 10).await;
}

#[tokio::test(start_paused = true)]
async fn negative_answers_are_cached_for_their_own_short_ttl() {
    let backend = Backend::default();
    let cache = builder()
        .ttl(Duration::from_secs(60))
        .negative_ttl(Duration::from_secs(2))
        .build()
        .unwrap();
    // Version 0 means "not found".
    let svc = CacheLayer::new(cache.clone(), by_key as fn(&u64) -> Option<u64>)
        .policy(|a: &Answer| {
            if a.1 == 0 {
                Verdict::negative()
            } else {
                Verdict::cache()
            }
        })
        .layer(backend.clone());
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 0));
    assert!(cache.peek(&1).unwrap().is_negative());
    backend.set_version(1);
    advance(Duration::from_millis(1_999)).await;
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 0), "negative entry served");
    advance(Duration::from_millis(1)).await;
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 1), "found now");
    advance(Duration::from_secs(30)).await;
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 1), "positive ttl applies");
    assert_eq!(backend.started(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_policy_can_refuse_to_cache() {
    let backend = Backend::default();
    let cache = builder().build().unwrap();
    let svc = CacheLayer::new(cache.clone(), by_key as fn(&u64) -> Option<u64>)
        .policy(|a: &Answer| {
            if a.0 == 13 {
                Verdict::skip()
            } else {
                Verdict::cache()
            }
        })
        .layer(backend.clone());
    get(&svc, 13).await.unwrap();
    get(&svc, 13).await.unwrap();
    get(&svc, 12).await.unwrap();
    get(&svc, 12).await.unwrap();
    assert_eq!(backend.started(), 3, "13 is never cached, 12 once");
    assert!(cache.peek(&13).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_stampede_of_10_000_makes_one_backend_call() {
    let backend = Backend::new(Duration::from_millis(100));
    let cache = builder().build().unwrap();
    let svc = layer(&cache, &backend);
    let tasks: Vec<_> = (0..10_000)
        .map(|_| tokio::spawn(svc.clone().oneshot(7)))
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), (7, 0));
    }
    assert_eq!(backend.started(), 1);
    let stats = cache.snapshot();
    assert_eq!((stats.misses, stats.coalesced_waiters), (10_000, 9_999));
}

#[tokio::test(start_paused = true)]
async fn a_stampede_survives_its_leader_being_cancelled() {
    let backend = Backend::new(Duration::from_millis(100));
    let cache = builder().build().unwrap();
    let svc = layer(&cache, &backend);
    let leader = tokio::spawn(svc.clone().oneshot(7));
    while backend.started() == 0 {
        tokio::task::yield_now().await;
    }
    let waiters: Vec<_> = (0..9_999)
        .map(|_| tokio::spawn(svc.clone().oneshot(7)))
        .collect();
    while cache.snapshot().coalesced_waiters < 9_999 {
        tokio::task::yield_now().await;
    }
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    for task in waiters {
        assert_eq!(task.await.unwrap().unwrap(), (7, 0), "nobody hangs");
    }
    assert_eq!(backend.started(), 2, "the cancelled call and one takeover");
    assert_eq!(
        backend.finished.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn an_error_goes_to_every_waiter_and_is_not_cached() {
    let backend = Backend::new(Duration::from_millis(100));
    backend.set_failing(true);
    let cache = builder().build().unwrap();
    let svc = layer(&cache, &backend);
    let tasks: Vec<_> = (0..100)
        .map(|_| tokio::spawn(svc.clone().oneshot(7)))
        .collect();
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        let shared = err
            .downcast_ref::<CoalescedError>()
            .expect("a shared load's error");
        assert_eq!(shared.inner().to_string(), "backend down");
    }
    assert_eq!(backend.started(), 1);
    backend.set_failing(false);
    assert_eq!(get(&svc, 7).await.unwrap(), (7, 0));
    assert_eq!(backend.started(), 2, "the error was not cached");
}

#[tokio::test(start_paused = true)]
async fn invalidation_by_key_tag_and_predicate() {
    let backend = Backend::default();
    let cache = builder().build().unwrap();
    let svc = CacheLayer::new(cache.clone(), by_key as fn(&u64) -> Option<u64>)
        .policy(|a: &Answer| {
            Verdict::cache().tag(if a.0.is_multiple_of(2) { "even" } else { "odd" })
        })
        .layer(backend.clone());
    for k in 1..=6 {
        get(&svc, k).await.unwrap();
    }
    cache.invalidate(&1).await;
    assert!(cache.peek(&1).is_none());
    assert!(cache.peek(&3).is_some());
    cache.invalidate_tag("even").await;
    for k in [2, 4, 6] {
        assert!(cache.peek(&k).is_none(), "{k} carried the tag");
    }
    assert!(cache.peek(&5).is_some());
    cache.invalidate_where(|k, _| *k == 5).await;
    assert!(cache.peek(&5).is_none());
    assert!(cache.peek(&3).is_some());
    assert_eq!(cache.snapshot().invalidations, 3);
}

#[tokio::test(start_paused = true)]
async fn a_load_in_flight_during_an_invalidation_is_not_written() {
    let backend = Backend::new(Duration::from_secs(1));
    let cache = builder().build().unwrap();
    let svc = layer(&cache, &backend);
    let before = tokio::spawn(svc.clone().oneshot(5));
    while backend.started() == 0 {
        tokio::task::yield_now().await;
    }
    cache.invalidate(&5).await;
    backend.set_version(1);
    advance(Duration::from_millis(500)).await;
    let after = tokio::spawn(svc.clone().oneshot(5));
    assert_eq!(
        before.await.unwrap().unwrap(),
        (5, 0),
        "its caller is answered"
    );
    assert!(
        cache.peek(&5).is_none(),
        "the load that raced the invalidation did not write"
    );
    assert_eq!(
        after.await.unwrap().unwrap(),
        (5, 1),
        "a later request did not join it"
    );
    assert_eq!(backend.started(), 2);
    assert_eq!(cache.peek(&5).unwrap().value(), &(5, 1));
}

#[tokio::test(start_paused = true)]
async fn the_invalidate_layer_drops_keys_after_a_successful_write_only() {
    let backend = Backend::default();
    let cache = builder().build().unwrap();
    let read = layer(&cache, &backend);
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writes = {
        let fail = Arc::clone(&fail);
        service_fn(move |_: (u64, &'static str)| {
            let failed = fail.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                if failed {
                    Err(io::Error::other("write failed"))
                } else {
                    Ok(())
                }
            }
        })
    };
    let write = InvalidateLayer::new(cache.clone(), |(k, _): &(u64, &'static str)| {
        Invalidation::new().key(*k)
    })
    .layer(writes);
    get(&read, 1).await.unwrap();
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    write.clone().oneshot((1, "x")).await.unwrap_err();
    assert!(
        cache.peek(&1).is_some(),
        "a failed write invalidates nothing"
    );
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    write.clone().oneshot((1, "x")).await.unwrap();
    assert!(cache.peek(&1).is_none());
}

#[tokio::test(start_paused = true)]
async fn requests_without_a_key_bypass_and_oversized_values_are_not_cached() {
    let backend = Backend::default();
    let cache = builder()
        .max_entry_bytes(100)
        .weigher(|k: &u64, _: &Answer| if *k == 9 { 1_000 } else { 10 })
        .build()
        .unwrap();
    let svc =
        CacheLayer::new(cache.clone(), |k: &u64| (*k != 0).then_some(*k)).layer(backend.clone());
    get(&svc, 0).await.unwrap();
    get(&svc, 0).await.unwrap();
    get(&svc, 9).await.unwrap();
    get(&svc, 9).await.unwrap();
    get(&svc, 1).await.unwrap();
    get(&svc, 1).await.unwrap();
    assert_eq!(backend.started(), 5);
    let stats = cache.snapshot();
    assert_eq!((stats.bypassed, stats.oversized, stats.hits), (2, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn warming_loads_every_key_with_bounded_concurrency() {
    let backend = Backend::new(Duration::from_millis(100));
    let cache = builder().build().unwrap();
    let svc = layer(&cache, &backend);
    let report = svc.warm(0..100u64, 8).await;
    assert_eq!((report.loaded, report.failed), (100, 0));
    assert_eq!(
        backend
            .max_running
            .load(std::sync::atomic::Ordering::SeqCst),
        8
    );
    for k in 0..100 {
        assert!(cache.peek(&k).is_some());
    }
}

#[test]
fn build_names_the_bad_field() {
    let field = |b: CacheBuilder<u64, Answer, Quick>| b.build().unwrap_err().field();
    assert_eq!(field(builder().ttl(Duration::ZERO)), "ttl");
    assert_eq!(field(builder().ttl_jitter(1.0)), "ttl_jitter");
    assert_eq!(field(builder().xfetch_beta(Some(f64::NAN))), "xfetch_beta");
    assert_eq!(
        field(builder().negative_ttl(Duration::ZERO)),
        "negative_ttl"
    );
    assert_eq!(field(builder().max_entry_bytes(0)), "max_entry_bytes");
    assert_eq!(
        field(builder().load_timeout(Duration::ZERO)),
        "load_timeout"
    );
    let err = builder().ttl(Duration::ZERO).build().unwrap_err();
    assert_eq!(err.layer(), "cache");
    assert!(err.to_string().contains("`ttl`"), "{err}");
}

#[test]
fn store_builders_refuse_zero_and_swapped_bounds() {
    let quick = |max_bytes: u64, entries: Option<usize>| {
        let builder = QuickCacheStore::<u64, Answer>::builder(max_bytes);
        let builder = match entries {
            Some(n) => builder.estimated_entries(n),
            None => builder,
        };
        builder.build().map(|_| ()).map_err(|e| e.field())
    };
    assert_eq!(quick(0, None), Err("max_bytes"));
    assert_eq!(quick(0, Some(10)), Err("max_bytes"));
    assert_eq!(quick(1 << 20, Some(0)), Err("estimated_entries"));
    // `builder(10_000).estimated_entries(64 << 20)`: the two swapped.
    assert_eq!(quick(10_000, Some(64 << 20)), Err("estimated_entries"));
    assert_eq!(quick(64 << 20, Some(10_000)), Ok(()));
    assert_eq!(quick(1, None), Ok(()), "the default estimate is at least 1");
    let err = QuickCacheStore::<u64, Answer>::builder(0)
        .build()
        .unwrap_err();
    assert_eq!(err.layer(), "quick_cache store");
}

#[test]
fn services_futures_and_handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Cache<u64, Answer, Quick>>();
    send_sync::<Svc>();
    send::<buttress_cache::future::ResponseFuture<Answer>>();
    #[cfg(feature = "moka")]
    send_sync::<Cache<u64, Answer, buttress_cache::store::MokaStore<u64, Answer>>>();
}

#[tokio::test(start_paused = true)]
async fn extreme_durations_never_panic_at_request_time() {
    let backend = Backend::new(Duration::from_millis(5));
    let cache = builder()
        .ttl(Duration::MAX)
        .ttl_jitter(0.5)
        .stale_while_revalidate(Duration::MAX)
        .stale_if_error(Duration::MAX)
        .xfetch_beta(Some(1e300))
        .load_timeout(Duration::MAX)
        .build()
        .unwrap();
    let svc = CacheLayer::new(cache.clone(), by_key as fn(&u64) -> Option<u64>)
        .policy(|a: &Answer| Verdict::cache_for(Duration::MAX).tag(format!("k{}", a.0)))
        .layer(backend.clone());
    for _ in 0..3 {
        assert_eq!(get(&svc, 1).await.unwrap(), (1, 0));
    }
    settle().await;
    let entry = cache.peek(&1).unwrap();
    assert!(entry.fresh_until() > Instant::now() + Duration::from_secs(3600 * 24 * 365));
}
