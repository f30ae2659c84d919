//! A cancellation storm on a two-worker runtime: coalesced misses on a few
//! keys, stale reads starting refreshes, invalidations cancelling them, and
//! callers (leaders and waiters alike) aborted at random points.

mod common;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use buttress_cache::store::QuickCacheStore;
use buttress_cache::{Cache, CacheLayer};
use common::Answer;
use tower::{Layer, ServiceExt, service_fn};

const KEYS: u64 = 4;
const CALLS: u64 = 4_000;
/// Far longer than the storm takes; a call that needs it hung.
const CALL_BOUND: Duration = Duration::from_secs(30);

/// SplitMix64: a deterministic stream of draws from a seed.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

async fn yield_times(n: u64) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_storm_leaves_nothing_in_flight_and_never_mixes_keys() {
    // The backend answers `(key, call number)` after a random number of
    // yields (so misses coalesce and cancellations land mid-call), and
    // fails one call in seven.
    let calls = Arc::new(AtomicU64::new(0));
    let backend = {
        let calls = Arc::clone(&calls);
        service_fn(move |k: u64| {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move {
                yield_times(mix(n) % 16).await;
                if mix(n ^ 0xFF).is_multiple_of(7) {
                    Err(io::Error::other("backend down"))
                } else {
                    Ok::<Answer, io::Error>((k, n))
                }
            }
        })
    };
    // Entries go stale at once and stay servable while refreshed, so
    // reads start background refreshes as well as loads.
    let cache = Cache::builder(
        QuickCacheStore::builder(1 << 20)
            .estimated_entries(1_000)
            .build()
            .unwrap(),
    )
    .ttl(Duration::from_micros(1))
    .ttl_jitter(0.0)
    .stale_while_revalidate(Duration::from_secs(3600))
    .load_timeout(Duration::from_secs(10))
    .seed(9)
    .build()
    .unwrap();
    let svc = CacheLayer::new(cache.clone(), |k: &u64| Some(*k)).layer(backend);

    // Phase one: invalidations throughout (loads are detached, refreshes
    // cancelled). Phase two: none, so that nothing but the loads' own
    // ends can empty the flight map before it is checked.
    let invalidator = {
        let cache = cache.clone();
        tokio::spawn(async move {
            for i in 0..400u64 {
                yield_times(mix(i << 8) % 8).await;
                if i % 50 == 49 {
                    cache.invalidate_all().await;
                } else {
                    cache.invalidate(&(mix(i) % KEYS)).await;
                }
            }
        })
    };
    storm(&svc, 0).await;
    invalidator.await.unwrap();
    let invalidations = cache.snapshot().invalidations;
    storm(&svc, CALLS).await;
    assert_eq!(cache.snapshot().invalidations, invalidations);

    // Background refreshes still running, or spawned and not yet started
    // (in the flight map, not yet counted as loads), end soon after: the
    // backend answers within a few yields.
    tokio::time::timeout(CALL_BOUND, async {
        loop {
            let stats = cache.snapshot();
            if stats.loads_in_flight == 0 && stats.keys_loading == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("every load ends");
    let stats = cache.snapshot();
    assert_eq!(stats.loads_in_flight, 0);
    assert_eq!(stats.keys_loading, 0, "the flight map is empty");
    assert_eq!(stats.timeouts, 0, "no load came near its bound");
    assert!(
        stats.coalesced_waiters > 0 && stats.refreshes > 0,
        "the storm coalesced and refreshed: {stats:?}"
    );

    // Nothing is wedged, and every key answers for itself, from the
    // backend and from the store.
    for key in 0..KEYS {
        let mut answer = Err("no try".into());
        for _ in 0..10 {
            answer = tokio::time::timeout(CALL_BOUND, svc.clone().oneshot(key))
                .await
                .expect("the key is not wedged");
            if answer.is_ok() {
                break; // one call in seven fails
            }
        }
        assert_eq!(answer.unwrap().0, key);
        let entry = cache.peek(&key).expect("cached");
        assert_eq!(entry.value().0, key);
    }
}

/// `CALLS` calls on `KEYS` keys, one in three aborted after a random
/// number of yields (some while they lead a load, some while they wait on
/// one). Every call that is not aborted finishes within [`CALL_BOUND`]
/// and answers for its own key.
async fn storm<S>(svc: &S, seed: u64)
where
    S: tower::Service<u64, Response = Answer, Error = tower::BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    let tasks: Vec<_> = (seed..seed + CALLS)
        .map(|i| {
            let key = mix(i) % KEYS;
            let call = svc.clone().oneshot(key);
            tokio::spawn(async move {
                let answer = tokio::time::timeout(CALL_BOUND, call)
                    .await
                    .expect("every call finishes within its bound");
                if let Ok((answered, _)) = answer {
                    assert_eq!(answered, key, "a value served for another key");
                }
            })
        })
        .collect();
    let mut aborted = 0;
    for (i, task) in tasks.iter().enumerate() {
        let draw = mix((seed + i as u64) ^ 0xA807);
        if draw.is_multiple_of(3) {
            yield_times(draw % 5).await;
            task.abort();
            aborted += 1;
        }
    }
    let mut finished = 0;
    for task in tasks {
        match task.await {
            Ok(()) => finished += 1,
            Err(e) if e.is_cancelled() => {}
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    assert!(
        aborted > CALLS / 4 && finished > CALLS / 4,
        "{aborted} aborted, {finished} finished"
    );
}
