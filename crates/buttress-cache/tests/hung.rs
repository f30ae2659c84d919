//! Loads whose backend never answers: every place the cache starts a load
//! is bounded, and the backend is asked again afterwards.

mod common;

use std::time::Duration;

use buttress_cache::store::QuickCacheStore;
use buttress_cache::{Cache, CacheBuilder, CacheLayer, CacheService, LoadTimedOut, Verdict};
use buttress_core::reject::{RejectionKind, rejection};
use buttress_core::time::Instant;
use common::{Answer, Backend, get, settle};
use tokio::time::advance;
use tower::{Layer, ServiceExt};

type Quick = QuickCacheStore<u64, Answer>;
type Svc = CacheService<Backend, u64, Answer, Quick, fn(&u64) -> Option<u64>>;

fn by_key(k: &u64) -> Option<u64> {
    Some(*k)
}

/// No jitter, no XFetch, seeded, loads bounded at 5 s.
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
    .load_timeout(BOUND)
}

const BOUND: Duration = Duration::from_secs(5);

fn is_timeout(result: &Result<Answer, tower::BoxError>) -> bool {
    matches!(result, Err(e) if e.downcast_ref::<LoadTimedOut>().is_some_and(|t| t.timeout() == BOUND))
}

/// A timed-out load is the shared vocabulary's deadline rejection, naming
/// the cache: what the HTTP and gRPC mappings answer 504 for, and what a
/// retry does not send again.
fn assert_deadline_of(result: &Result<Answer, tower::BoxError>, cache: &str) {
    let Err(err) = result else {
        panic!("{result:?} is not an error")
    };
    let timed_out = err.downcast_ref::<LoadTimedOut>().expect("a LoadTimedOut");
    assert_eq!(timed_out.name(), cache);
    let found = rejection(err).expect("found as a rejection");
    assert_eq!(found.kind(), RejectionKind::DeadlineExceeded);
    assert_eq!(found.name(), cache);
    assert!(!found.may_retry());
}

/// Nothing runs and nothing is waited for once the cache is idle.
fn assert_idle(cache: &Cache<u64, Answer, Quick>, backend: &Backend) {
    let stats = cache.snapshot();
    assert_eq!(
        (stats.loads_in_flight, stats.keys_loading),
        (0, 0),
        "no load is left in flight"
    );
    assert_eq!(
        backend.running(),
        0,
        "every backend call ended or was dropped"
    );
}

fn layer(cache: &Cache<u64, Answer, Quick>, backend: &Backend) -> Svc {
    CacheLayer::new(cache.clone(), by_key as fn(&u64) -> Option<u64>).layer(backend.clone())
}

/// Longer than any bound the cache may hold a caller for: a call that takes
/// this long hung.
const NEVER: Duration = Duration::from_secs(3600);

/// Issue #9's scenario, with the default load timeout (30 s).
#[tokio::test(start_paused = true)]
async fn a_hung_stale_while_revalidate_refresh_does_not_wedge_the_key() {
    let backend = Backend::default();
    let cache = Cache::builder(
        QuickCacheStore::builder(1 << 20)
            .estimated_entries(1000)
            .build()
            .unwrap(),
    )
    .ttl(Duration::from_secs(1))
    .ttl_jitter(0.0)
    .stale_while_revalidate(Duration::from_secs(10))
    .build()
    .unwrap();
    let svc = layer(&cache, &backend);
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 0));

    backend.set_hanging(true);
    advance(Duration::from_millis(1500)).await;
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 0), "stale, at once");
    settle().await;
    assert_eq!(backend.started(), 2, "the refresh started and hangs");
    backend.set_hanging(false);
    backend.set_version(1);

    // Past the stale window: the read joins the hung refresh, which the
    // load timeout ends 30 s after it started.
    advance(Duration::from_secs(20)).await;
    let started = Instant::now();
    let first = tokio::time::timeout(NEVER, get(&svc, 1))
        .await
        .expect("the read is bounded by the refresh's load timeout");
    assert!(first.is_err(), "the refresh timed out: {first:?}");
    assert_eq!(Instant::now() - started, Duration::from_secs(10));

    // The key is free: the backend is asked again.
    let again = tokio::time::timeout(NEVER, get(&svc, 1))
        .await
        .expect("the next read does not wait on the hung load");
    assert_eq!(again.unwrap(), (1, 1));
    assert_eq!(backend.started(), 3);
    assert_eq!(backend.running(), 0, "the hung call was dropped");
}

#[tokio::test(start_paused = true)]
async fn a_foreground_load_whose_backend_hangs_times_out_and_frees_the_key() {
    let backend = Backend::default();
    let cache = builder().build().unwrap();
    let svc = layer(&cache, &backend);

    backend.set_hanging(true);
    let started = Instant::now();
    let result = tokio::time::timeout(NEVER, get(&svc, 1))
        .await
        .expect("the load is bounded");
    assert!(is_timeout(&result), "{result:?}");
    assert_eq!(Instant::now() - started, BOUND);
    assert_idle(&cache, &backend);
    let stats = cache.snapshot();
    assert_eq!((stats.timeouts, stats.load_failures), (1, 1));

    backend.set_hanging(false);
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 0), "asked again");
    assert_eq!(backend.started(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_joining_a_hung_load_is_answered_when_it_times_out() {
    let backend = Backend::default();
    let cache = builder().name("hung-waiter").build().unwrap();
    let svc = layer(&cache, &backend);

    backend.set_hanging(true);
    let leader = tokio::spawn(timed(svc.clone().oneshot(1)));
    settle().await;
    advance(Duration::from_secs(2)).await;
    let waiter = tokio::spawn(timed(svc.clone().oneshot(1)));
    settle().await;
    assert_eq!(cache.snapshot().coalesced_waiters, 1);

    let (leader, leader_took) = tokio::time::timeout(NEVER, leader)
        .await
        .expect("the leader is bounded")
        .unwrap();
    let (waiter, waiter_took) = tokio::time::timeout(NEVER, waiter)
        .await
        .expect("the waiter is bounded")
        .unwrap();
    assert!(is_timeout(&leader), "{leader:?}");
    assert!(is_timeout(&waiter), "{waiter:?}");
    assert_deadline_of(&leader, "hung-waiter");
    assert_deadline_of(&waiter, "hung-waiter");
    assert_eq!(leader_took, BOUND);
    assert_eq!(
        waiter_took,
        BOUND - Duration::from_secs(2),
        "the load's bound ends the wait"
    );
    assert_eq!(backend.started(), 1, "the waiter joined, it did not call");
    assert_idle(&cache, &backend);

    backend.set_hanging(false);
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 0), "asked again");
    assert_eq!(backend.started(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_hung_refresh_is_bounded_and_a_read_past_the_stale_window_asks_again() {
    let backend = Backend::default();
    let cache = builder()
        .ttl(Duration::from_secs(1))
        .stale_while_revalidate(Duration::from_secs(10))
        .build()
        .unwrap();
    let svc = layer(&cache, &backend);
    get(&svc, 1).await.unwrap();

    backend.set_hanging(true);
    advance(Duration::from_millis(1500)).await;
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 0), "stale, at once");
    settle().await;
    assert_eq!(cache.snapshot().loads_in_flight, 1, "the refresh runs");
    advance(BOUND).await;
    settle().await;
    assert_idle(&cache, &backend);
    assert_eq!(cache.snapshot().timeouts, 1);

    backend.set_hanging(false);
    backend.set_version(1);
    advance(Duration::from_secs(15)).await;
    let started = Instant::now();
    assert_eq!(get(&svc, 1).await.unwrap(), (1, 1), "asked again at once");
    assert_eq!(Instant::now(), started);
    assert_eq!(backend.started(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_hung_xfetch_refresh_is_bounded_and_the_backend_is_asked_again() {
    let backend = Backend::new(Duration::from_secs(1));
    let cache = builder()
        .ttl(Duration::from_secs(10))
        .xfetch_beta(Some(1.0))
        .build()
        .unwrap();
    let svc = layer(&cache, &backend);
    get(&svc, 1).await.unwrap(); // loaded at 0 s in 1 s: fresh until 10 s

    backend.set_hanging(true);
    for _ in 0..90 {
        if cache.snapshot().refreshes > 0 {
            break;
        }
        advance(Duration::from_millis(100)).await;
        assert_eq!(get(&svc, 1).await.unwrap(), (1, 0), "a fresh hit");
    }
    assert_eq!(
        cache.snapshot().refreshes,
        1,
        "drawn before expiry (seeded)"
    );
    settle().await;
    assert_eq!(
        cache.snapshot().loads_in_flight,
        1,
        "the early refresh runs"
    );
    assert_eq!(backend.running(), 1);

    // Long past expiry: the read does not join the hung refresh.
    backend.set_hanging(false);
    backend.set_version(1);
    advance(Duration::from_secs(20)).await;
    settle().await;
    assert_idle(&cache, &backend);
    let started = Instant::now();
    let again = tokio::time::timeout(NEVER, get(&svc, 1))
        .await
        .expect("the read does not wait on the hung refresh");
    assert_eq!(again.unwrap(), (1, 1));
    assert_eq!(Instant::now() - started, Duration::from_secs(1), "one load");
    assert_eq!(backend.started(), 3);
    assert_eq!(cache.snapshot().timeouts, 1);
}

/// Waiters bound their own wait: when a leader's caller goes away, a
/// waiter takes over with a new load, and nobody waits for it past their
/// own bound.
#[tokio::test(start_paused = true)]
async fn no_caller_waits_past_the_bound_when_a_hung_loads_leader_is_dropped() {
    let backend = Backend::default();
    let cache = builder().build().unwrap();
    let svc = layer(&cache, &backend);

    backend.set_hanging(true);
    let leader = tokio::spawn(svc.clone().oneshot(1));
    settle().await;
    advance(Duration::from_secs(1)).await;
    let early = tokio::spawn(timed(svc.clone().oneshot(1)));
    settle().await;
    advance(Duration::from_secs(2)).await;
    let late = tokio::spawn(timed(svc.clone().oneshot(1)));
    settle().await;
    advance(Duration::from_secs(1)).await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());

    for waiter in [early, late] {
        let (result, took) = tokio::time::timeout(NEVER, waiter)
            .await
            .expect("bounded")
            .unwrap();
        assert!(is_timeout(&result), "{result:?}");
        assert!(took <= BOUND, "waited {took:?}");
    }
    assert_eq!(backend.started(), 2, "the dropped call and one takeover");
    assert_idle(&cache, &backend);
}

/// Invalidating a key, a tag, or everything cancels the key's background
/// refresh: the backend call is dropped at once, and a caller waiting on
/// the refresh leads a load of its own instead.
#[tokio::test(start_paused = true)]
async fn invalidation_cancels_an_in_flight_refresh() {
    let backend = Backend::default();
    let cache = builder()
        .ttl(Duration::from_secs(1))
        .stale_while_revalidate(Duration::from_secs(2))
        .build()
        .unwrap();
    let svc = CacheLayer::new(cache.clone(), by_key as fn(&u64) -> Option<u64>)
        .policy(|_: &Answer| Verdict::cache().tag("all"))
        .layer(backend.clone());

    for (round, how) in ["key", "tag", "all"].into_iter().enumerate() {
        let version = round as u64;
        backend.set_hanging(false);
        backend.set_version(version);
        assert_eq!(get(&svc, 1).await.unwrap(), (1, version));
        // Stale: a read starts a refresh, which hangs.
        backend.set_hanging(true);
        advance(Duration::from_millis(1500)).await;
        get(&svc, 1).await.unwrap();
        settle().await;
        assert_eq!(
            (backend.running(), cache.snapshot().loads_in_flight),
            (1, 1)
        );
        // Past the stale window (3 s), inside the refresh's bound (6.5 s),
        // a reader joins the refresh.
        advance(Duration::from_secs(2)).await;
        backend.set_hanging(false);
        backend.set_version(version + 10);
        let reader = tokio::spawn(timed(svc.clone().oneshot(1)));
        settle().await;

        match how {
            "key" => cache.invalidate(&1).await,
            "tag" => cache.invalidate_tag("all").await,
            _ => cache.invalidate_all().await,
        }
        settle().await;
        let (read, took) = tokio::time::timeout(NEVER, reader)
            .await
            .expect("the reader is not left waiting on the cancelled refresh")
            .unwrap();
        assert_eq!(
            read.unwrap(),
            (1, version + 10),
            "by {how}: the reader loads"
        );
        assert_eq!(
            took,
            Duration::ZERO,
            "by {how}: at once, not at the timeout"
        );
        assert_idle(&cache, &backend);
        assert_eq!(cache.snapshot().timeouts, 0);
        cache.invalidate_all().await;
    }
}

/// `fut`'s output and how long it took on tokio's clock.
async fn timed<F: std::future::Future>(fut: F) -> (F::Output, Duration) {
    let started = Instant::now();
    let out = fut.await;
    (out, Instant::now() - started)
}
