//! The distributed stampede lease, against a real `redis-server` the tests
//! start themselves: two instances missing one key at once make one
//! backend call; a lease holder that is cancelled does not hold the others
//! back beyond the lease time.
//!
//! Real time throughout (a real server cannot follow tokio's paused
//! clock); the backend's load time and the lease are named constants.

#![cfg(feature = "redis")]

mod common;
mod redis_server;

use std::time::Duration;

use buttress_cache::CacheLayer;
use buttress_cache::store::RedisStore;
use buttress_core::time::Instant;
use common::Backend;
use redis_server::{RedisServer, cache_on};
use tower::{Layer, ServiceExt};

/// How long the backend takes to load.
const LOAD: Duration = Duration::from_millis(300);
/// The stampede lease: a little above the load time.
const LEASE: Duration = Duration::from_millis(600);
/// Slack for a busy machine's scheduling.
const SLACK: Duration = Duration::from_millis(400);

fn store(server: &RedisServer, ns: &str) -> RedisStore {
    RedisStore::builder(server.client(), ns)
        .stampede_lease(LEASE)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_missing_one_key_at_once_make_one_backend_call() {
    let server = RedisServer::start();
    let backend = Backend::new(LOAD);
    let (ra, rb) = (store(&server, "lease"), store(&server, "lease"));
    let svc_a = CacheLayer::new(cache_on(ra.clone()), |k: &u64| Some(*k)).layer(backend.clone());
    let svc_b = CacheLayer::new(cache_on(rb.clone()), |k: &u64| Some(*k)).layer(backend.clone());
    for key in 0..3 {
        let (a, b) = tokio::join!(svc_a.clone().oneshot(key), svc_b.clone().oneshot(key));
        assert_eq!((a.unwrap(), b.unwrap()), ((key, 0), (key, 0)));
    }
    assert_eq!(
        backend.started(),
        3,
        "one load per key across both instances"
    );
    let (sa, sb) = (ra.snapshot(), rb.snapshot());
    assert_eq!(sa.lease_waits + sb.lease_waits, 3, "{sa:?} {sb:?}");
    assert_eq!(sa.lease_fills + sb.lease_fills, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_lease_holder_holds_the_others_back_at_most_the_lease() {
    let server = RedisServer::start();
    let backend = Backend::new(LOAD);
    let (ra, rb) = (store(&server, "cancel"), store(&server, "cancel"));
    let svc_a = CacheLayer::new(cache_on(ra.clone()), |k: &u64| Some(*k)).layer(backend.clone());
    let svc_b = CacheLayer::new(cache_on(rb.clone()), |k: &u64| Some(*k)).layer(backend.clone());

    // A takes the lease and starts loading, then is cancelled.
    let start = Instant::now();
    let cancelled = tokio::time::timeout(LOAD / 3, svc_a.clone().oneshot(1)).await;
    assert!(cancelled.is_err(), "A's request was cut short");
    assert_eq!(backend.started(), 1);

    // B misses, waits on A's lease until it expires, then loads itself.
    assert_eq!(svc_b.clone().oneshot(1).await.unwrap(), (1, 0));
    let took = start.elapsed();
    assert_eq!(backend.started(), 2);
    assert!(took >= LEASE, "B waited for the lease to expire: {took:?}");
    assert!(took <= LEASE + LOAD + SLACK, "and no longer: {took:?}");
    assert_eq!(rb.snapshot().lease_waits, 1);
    assert_eq!(rb.snapshot().lease_fills, 0);

    // Without a lease holder, a miss does not wait.
    let start = Instant::now();
    assert_eq!(svc_b.clone().oneshot(2).await.unwrap(), (2, 0));
    assert!(start.elapsed() < LOAD + SLACK, "{:?}", start.elapsed());
    assert_eq!(rb.snapshot().lease_waits, 1);
}
