//! `RedisStore` on a Redis Cluster of three masters the tests start
//! themselves (`redis-server --cluster-enabled yes` ×3, joined with
//! `redis-cli --cluster create`): the store's behaviour on one node, with
//! keys spread over every master's slots; batches across slots; values
//! that must never be served; and invalidation messages between instances
//! subscribed through different nodes.
//!
//! Real time throughout (a real server cannot follow tokio's paused
//! clock); the only real waits are bounded polls, each bounded by a named
//! constant.

#![cfg(feature = "redis")]

mod common;
mod redis_server;

use std::time::Duration;

use buttress_cache::redis::{self, AsyncCommands};
use buttress_cache::store::{RedisStore, Store};
use buttress_cache::{Cache, CacheLayer, Entry};
use common::{Answer, Backend};
use redis_server::{RedisCluster, cache_on, free_port, subscribed, tiered, until};
use tower::{Layer, ServiceExt};

/// Keys in the batch tests: enough to cover every master many times and
/// more than one `MGET` batch (256).
const N: u64 = 600;

fn store(nodes: Vec<redis::Client>, ns: &str) -> RedisStore {
    RedisStore::cluster_builder(nodes, ns)
        // A cold cluster connection asks a seed node for the slot map
        // within the first command's timeout.
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

fn entry(k: u64, v: u64) -> Entry<Answer> {
    Entry::fresh_for((k, v), Duration::from_secs(60))
}

async fn node(c: &redis::Client) -> redis::aio::MultiplexedConnection {
    c.get_multiplexed_async_connection().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_across_slots_stay_correct_and_spread_over_every_master() {
    let cluster = RedisCluster::start();
    let s = store(cluster.clients(), "clu");
    let entries: Vec<_> = (0..N).map(|k| (k, entry(k, 1))).collect();
    Store::<u64, Answer>::put_many(&s, entries).await;
    assert_eq!(s.snapshot().writes, N, "{:?}", s.snapshot());
    assert_eq!(s.snapshot().writes_dropped, 0);

    // Every master holds some of them: the batch really crossed slots.
    for c in cluster.clients() {
        let n: u64 = redis::cmd("DBSIZE")
            .query_async(&mut node(&c).await)
            .await
            .unwrap();
        assert!(n > N / 10, "a master holds {n} keys");
    }

    // get_many answers in order across slots (and several MGET batches),
    // misses included.
    let keys: Vec<u64> = (0..N + 50).rev().collect();
    let got = Store::<u64, Answer>::get_many(&s, &keys).await;
    for (k, e) in keys.iter().zip(&got) {
        match e {
            Some(e) => assert_eq!(*e.value(), (*k, 1)),
            None => assert!(*k >= N, "key {k} missed"),
        }
    }
    assert_eq!(s.snapshot().hits, N);

    // Single-key operations and deletes.
    let one: Option<Entry<Answer>> = s.get(&7).await;
    assert_eq!(one.map(|e| *e.value()), Some((7, 1)));
    Store::<u64, Answer>::delete(&s, &7).await;
    let gone: Option<Entry<Answer>> = s.get(&7).await;
    assert!(gone.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_values_on_a_cluster_are_misses_never_served() {
    let cluster = RedisCluster::start();
    let s = store(cluster.clients(), "foreign");
    let mut conn = redis::cluster::ClusterClient::new(
        cluster
            .ports()
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/")),
    )
    .unwrap()
    .get_async_connection()
    .await
    .unwrap();
    for k in 0..20u64 {
        let _: () = conn.set(s.key_of(&k).unwrap(), "foreign").await.unwrap();
    }
    let keys: Vec<u64> = (0..20).collect();
    let got = Store::<u64, Answer>::get_many(&s, &keys).await;
    assert!(got.iter().all(Option::is_none));
    assert_eq!(s.snapshot().decode_failures, 20);
}

/// Two instances through the layer, each a `Tiered` store subscribed
/// through a different node: one loads, the other finds it; one writes,
/// the other's L1 drops its copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_entries_and_invalidations_across_the_cluster() {
    let cluster = RedisCluster::start();
    let mut rotated = cluster.clients();
    rotated.rotate_left(2);
    let (ra, rb) = (store(cluster.clients(), "two"), store(rotated, "two"));
    let (ta, tb) = (tiered::<Answer>(&ra), tiered::<Answer>(&rb));
    subscribed(&ra).await;
    subscribed(&rb).await;
    let backend = Backend::default();
    let svc_a = CacheLayer::new(cache_on(ta.clone()), |k: &u64| Some(*k)).layer(backend.clone());
    let svc_b = CacheLayer::new(cache_on(tb.clone()), |k: &u64| Some(*k)).layer(backend.clone());
    for k in 0..30 {
        assert_eq!(svc_a.clone().oneshot(k).await.unwrap(), (k, 0));
        assert_eq!(svc_b.clone().oneshot(k).await.unwrap(), (k, 0));
    }
    assert_eq!(backend.started(), 30, "B found every entry A loaded");

    let received = rb.snapshot().invalidations_received;
    let fresh: Vec<_> = (0..30).map(|k| (k, entry(k, 5))).collect();
    ta.put_many(fresh).await;
    until(&rb, "B heard A's 30 writes", |s| {
        s.invalidations_received >= received + 30
    })
    .await;
    for k in 0..30 {
        assert_eq!(svc_b.clone().oneshot(k).await.unwrap(), (k, 5));
    }
    assert_eq!(backend.started(), 30);
}

/// Tags and the stampede lease on a cluster: a tag's set, its keys and
/// their leases live on different slots, and still work together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_the_lease_work_across_slots() {
    /// How long the backend takes to load, and the lease above it.
    const LOAD: Duration = Duration::from_millis(200);
    const LEASE: Duration = Duration::from_millis(2_000);
    let cluster = RedisCluster::start();
    let leased = |nodes| {
        RedisStore::cluster_builder(nodes, "tagged")
            .timeout(Duration::from_secs(2))
            .stampede_lease(LEASE)
            .build()
            .unwrap()
    };
    let (ra, rb) = (leased(cluster.clients()), leased(cluster.clients()));
    let backend = Backend::new(LOAD);
    let (cache_a, cache_b) = (cache_on(ra.clone()), cache_on(rb.clone()));
    let layer = |c: &Cache<u64, Answer, RedisStore>| {
        CacheLayer::new(c.clone(), |k: &u64| Some(*k))
            .policy(|a: &Answer| {
                buttress_cache::Verdict::cache().tag(if a.0.is_multiple_of(2) {
                    "even"
                } else {
                    "odd"
                })
            })
            .layer(backend.clone())
    };
    let (svc_a, svc_b) = (layer(&cache_a), layer(&cache_b));

    // Both instances miss the same keys at once: one load per key.
    for k in 0..6u64 {
        let (a, b) = tokio::join!(svc_a.clone().oneshot(k), svc_b.clone().oneshot(k));
        assert_eq!((a.unwrap(), b.unwrap()), ((k, 0), (k, 0)));
    }
    assert_eq!(backend.started(), 6);
    assert_eq!(ra.snapshot().lease_fills + rb.snapshot().lease_fills, 6);

    // A tag invalidated on a third instance, which loaded nothing, drops
    // the keys the others tagged, from every slot.
    let rc = leased(cluster.clients());
    cache_on::<Answer, _>(rc).invalidate_tag("even").await;
    for k in 0..6u64 {
        let e: Option<Entry<Answer>> = ra.get(&k).await;
        assert_eq!(e.is_some(), !k.is_multiple_of(2), "key {k}");
    }
}

/// Invalidation by predicate walks every master (a `SCAN` cursor is per
/// node) and deletes exactly the matching entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_where_walks_every_master() {
    let cluster = RedisCluster::start();
    let s = store(cluster.clients(), "pred");
    let entries: Vec<_> = (0..N).map(|k| (k, entry(k, 1))).collect();
    Store::<u64, Answer>::put_many(&s, entries).await;
    let pred = |k: &u64, _: &Entry<Answer>| k.is_multiple_of(3);
    Store::<u64, Answer>::delete_where(&s, &pred).await;
    let keys: Vec<u64> = (0..N).collect();
    let got = Store::<u64, Answer>::get_many(&s, &keys).await;
    for (k, e) in keys.iter().zip(&got) {
        assert_eq!(e.is_some(), !k.is_multiple_of(3), "key {k}");
    }
}

/// A seed node that does not answer is skipped: the store and its
/// invalidation listener go through the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_seed_node_is_skipped() {
    let cluster = RedisCluster::start();
    let dead = redis::Client::open(format!("redis://127.0.0.1:{}/", free_port())).unwrap();
    let mut nodes = vec![dead];
    nodes.extend(cluster.clients());
    let r = store(nodes, "dead");
    let t = tiered::<Answer>(&r);
    subscribed(&r).await;
    t.put(1, entry(1, 1)).await;
    let got: Option<Entry<Answer>> = r.get(&1).await;
    assert_eq!(got.map(|e| *e.value()), Some((1, 1)));
}
