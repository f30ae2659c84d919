//! Cross-instance invalidation of `Tiered` L1s over Redis pub/sub, against
//! a real `redis-server` the tests start themselves: two instances (each a
//! `Tiered` store with its own L1 and its own `RedisStore` on one Redis)
//! see each other's writes and invalidations within one delivery, and a
//! dropped subscription empties L1 when it is made again.
//!
//! Real time throughout (a real server cannot follow tokio's paused
//! clock); the only real waits are bounded polls for a message to arrive
//! or a subscription to be made again, each bounded by a named constant.

#![cfg(feature = "redis")]

mod common;
mod redis_server;

use std::time::Duration;

use buttress_cache::redis;
use buttress_cache::store::{QuickCacheStore, RedisStore, Store, Tiered};
use buttress_cache::{Cache, CacheLayer, Entry, Verdict};
use buttress_core::time::Instant;
use common::{Answer, Backend};
use redis_server::{
    DELIVERY_DEADLINE, Outage, POLL, RedisServer, cache_on, kill_under_load, outage_breaker,
    subscribed, tiered, until, until_used_again,
};
use tower::{Layer, ServiceExt};

type Instance = Tiered<QuickCacheStore<u64, Answer>, RedisStore>;

fn instance(server: &RedisServer, ns: &str) -> (Instance, RedisStore) {
    let l2 = RedisStore::builder(server.client(), ns).build().unwrap();
    (tiered(&l2), l2)
}

fn l1_holds(t: &Instance, key: u64) -> bool {
    Store::<u64, Answer>::try_get(t.l1(), &key)
        .flatten()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_or_an_invalidation_on_one_instance_drops_the_others_l1_copy() {
    let server = RedisServer::start();
    let backend = Backend::default();
    let (ta, ra) = instance(&server, "inv");
    let (tb, rb) = instance(&server, "inv");
    subscribed(&ra).await;
    subscribed(&rb).await;
    let cache_a = cache_on(ta.clone());
    let svc_a = CacheLayer::new(cache_a.clone(), |k: &u64| Some(*k)).layer(backend.clone());
    let svc_b = CacheLayer::new(cache_on(tb.clone()), |k: &u64| Some(*k)).layer(backend.clone());

    // B loads key 1 into its L1 (and Redis); A reads it through Redis.
    assert_eq!(svc_b.clone().oneshot(1).await.unwrap(), (1, 0));
    assert!(l1_holds(&tb, 1));
    // A hears of B's write before it reads (a late message would drop
    // what A promotes: conservative, and not what this checks).
    until(&ra, "A heard B's write", |s| s.invalidations_received == 1).await;
    // A's read promoted (no write): B keeps its copy.
    assert_eq!(svc_a.clone().oneshot(1).await.unwrap(), (1, 0));
    assert_eq!(backend.started(), 1);
    assert!(l1_holds(&ta, 1) && l1_holds(&tb, 1));

    // A writes a new version: B's L1 drops its copy within one delivery,
    // and B's next read is the new version, from Redis.
    let received = rb.snapshot().invalidations_received;
    ta.put(1, Entry::fresh_for((1, 7), Duration::from_secs(60)))
        .await;
    until(&rb, "B got A's write", |s| {
        s.invalidations_received > received
    })
    .await;
    assert!(!l1_holds(&tb, 1), "B's stale copy dropped");
    assert!(
        l1_holds(&ta, 1),
        "A's own write is not undone by its message"
    );
    assert_eq!(svc_b.clone().oneshot(1).await.unwrap(), (1, 7));
    assert_eq!(backend.started(), 1, "from Redis, not the backend");

    // A invalidates: B's copy goes too, and B loads afresh.
    let received = rb.snapshot().invalidations_received;
    cache_a.invalidate(&1).await;
    until(&rb, "B got A's invalidation", |s| {
        s.invalidations_received > received
    })
    .await;
    assert!(!l1_holds(&tb, 1));
    backend.set_version(2);
    assert_eq!(svc_b.clone().oneshot(1).await.unwrap(), (1, 2));
    assert_eq!(backend.started(), 2);
    assert!(
        ra.snapshot().invalidations_published >= 2,
        "{:?}",
        ra.snapshot()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_subscription_empties_l1_when_it_is_made_again() {
    let server = RedisServer::start();
    let (tb, rb) = instance(&server, "kill");
    subscribed(&rb).await;
    let backend = Backend::default();
    let svc_b = CacheLayer::new(cache_on(tb.clone()), |k: &u64| Some(*k)).layer(backend.clone());
    assert_eq!(svc_b.clone().oneshot(5).await.unwrap(), (5, 0));
    assert!(l1_holds(&tb, 5));

    // Another program (or an instance whose message is lost) changes the
    // entry without a message reaching B: B's L1 is now stale.
    let silent = RedisStore::builder(server.client(), "kill")
        .publish_invalidations(false)
        .build()
        .unwrap();
    silent
        .put(
            5u64,
            Entry::fresh_for((5u64, 9u64), Duration::from_secs(60)),
        )
        .await;
    assert_eq!(silent.snapshot().writes, 1);
    assert_eq!(svc_b.clone().oneshot(5).await.unwrap(), (5, 0), "stale L1");

    // The subscription's connection is killed; the listener makes it
    // again and, having possibly missed messages, empties L1.
    let mut conn = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let killed: u64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub"])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(killed, 1);
    until(&rb, "resubscribed", |s| s.invalidation_reconnects >= 1).await;
    assert!(rb.snapshot().l1_flushes >= 2, "{:?}", rb.snapshot());
    assert!(!l1_holds(&tb, 5), "L1 flushed on resubscription");
    assert_eq!(svc_b.clone().oneshot(5).await.unwrap(), (5, 9), "fresh");
    assert_eq!(backend.started(), 1);

    // And messages flow again on the new subscription.
    let received = rb.snapshot().invalidations_received;
    let (ta, ra) = instance(&server, "kill");
    subscribed(&ra).await;
    ta.delete(&5).await;
    until(&rb, "B got the delete", |s| {
        s.invalidations_received > received
    })
    .await;
    assert!(!l1_holds(&tb, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predicate_deletion_empties_the_other_instances_l1() {
    let server = RedisServer::start();
    let (ta, ra) = instance(&server, "pred");
    let (tb, rb) = instance(&server, "pred");
    subscribed(&ra).await;
    subscribed(&rb).await;
    for k in 0..4 {
        tb.put(k, Entry::fresh_for((k, 0), Duration::from_secs(60)))
            .await;
    }
    assert_eq!(Store::<u64, Answer>::len(tb.l1()), 4);
    let flushes = rb.snapshot().l1_flushes;
    let pred = |k: &u64, _: &Entry<Answer>| k.is_multiple_of(2);
    ta.delete_where(&pred).await;
    until(&rb, "B emptied", |s| s.l1_flushes > flushes).await;
    assert_eq!(Store::<u64, Answer>::len(tb.l1()), 0);
}

/// Dropping the last clone of a subscribed store ends its subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_ends_with_the_store() {
    let server = RedisServer::start();
    let (t, r) = instance(&server, "drop");
    subscribed(&r).await;
    let mut conn = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let subscribers = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("drop:v1:#invalidations")
                .query_async(&mut conn)
                .await
                .unwrap();
            counts[0].1
        }
    };
    assert_eq!(subscribers(&mut conn).await, 1);
    let t2 = t.clone();
    drop(t);
    assert_eq!(subscribers(&mut conn).await, 1, "a clone keeps it");
    drop(t2);
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    while subscribers(&mut conn).await != 0 {
        assert!(Instant::now() < deadline, "still subscribed");
        tokio::time::sleep(POLL).await;
    }
}

/// A quiet subscription is checked (`PING`) and kept: L1 is not emptied
/// while nothing happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_subscription_is_kept_and_l1_with_it() {
    /// More than two health checks (one a second).
    const QUIET: Duration = Duration::from_millis(2_500);
    let server = RedisServer::start();
    let (t, r) = instance(&server, "quiet");
    subscribed(&r).await;
    t.put(1, Entry::fresh_for((1, 0), Duration::from_secs(60)))
        .await;
    tokio::time::sleep(QUIET).await;
    let snap = r.snapshot();
    assert_eq!((snap.invalidation_reconnects, snap.l1_flushes), (0, 1));
    assert!(l1_holds(&t, 1));
}

/// A tag invalidated on one instance drops, in Redis and in every L1,
/// the keys every instance wrote with it, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_invalidated_on_one_instance_drops_what_every_instance_tagged() {
    let server = RedisServer::start();
    let (ta, ra) = instance(&server, "tags");
    let (tb, rb) = instance(&server, "tags");
    subscribed(&ra).await;
    subscribed(&rb).await;
    let backend = Backend::default();
    let (cache_a, cache_b) = (cache_on(ta.clone()), cache_on(tb.clone()));
    let layer = |c: &Cache<u64, Answer, Instance>| {
        CacheLayer::new(c.clone(), |k: &u64| Some(*k))
            .policy(|a: &Answer| {
                Verdict::cache().tag(if a.0.is_multiple_of(2) { "even" } else { "odd" })
            })
            .layer(backend.clone())
    };
    let (svc_a, svc_b) = (layer(&cache_a), layer(&cache_b));
    // B loads 0..4, A 4..8; each reads the other's through Redis into
    // its L1.
    for k in 0..4 {
        assert_eq!(svc_b.clone().oneshot(k).await.unwrap(), (k, 0));
        assert_eq!(svc_a.clone().oneshot(k + 4).await.unwrap(), (k + 4, 0));
    }
    // Each heard of the other's four writes (so no late message drops
    // what it reads next).
    until(&ra, "A heard B's writes", |s| s.invalidations_received == 4).await;
    until(&rb, "B heard A's writes", |s| s.invalidations_received == 4).await;
    for k in 0..4 {
        assert_eq!(svc_a.clone().oneshot(k).await.unwrap(), (k, 0));
        assert_eq!(svc_b.clone().oneshot(k + 4).await.unwrap(), (k + 4, 0));
    }
    assert_eq!(backend.started(), 8);
    assert!((0..8).all(|k| l1_holds(&ta, k) && l1_holds(&tb, k)));

    // A invalidates "even": B's evens go too (A never tagged 0 and 2),
    // from Redis and from both L1s, within one delivery.
    let (a0, b0) = (ra.snapshot(), rb.snapshot());
    cache_a.invalidate_tag("even").await;
    until(&ra, "A got the deletes", |s| {
        s.invalidations_received >= a0.invalidations_received + 2
    })
    .await;
    until(&rb, "B got the deletes", |s| {
        s.invalidations_received >= b0.invalidations_received + 4
    })
    .await;
    for k in 0..8u64 {
        let even = k.is_multiple_of(2);
        assert_eq!(l1_holds(&ta, k), !even, "A's L1, key {k}");
        assert_eq!(l1_holds(&tb, k), !even, "B's L1, key {k}");
        let in_redis: Option<Entry<Answer>> = ra.get(&k).await;
        assert_eq!(in_redis.is_some(), !even, "Redis, key {k}");
    }
    // The tag's set expires with its entries; the invalidated one is gone.
    let conn = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let pttl = |set: &'static str| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("PTTL")
                .arg(set)
                .query_async::<i64>(&mut conn)
                .await
                .unwrap()
        }
    };
    let odd = pttl("tags:v1:#tag:odd").await;
    assert!(odd > 50_000 && odd <= 60_000, "{odd}");
    assert_eq!(pttl("tags:v1:#tag:even").await, -2, "deleted");
    backend.set_version(1);
    assert_eq!(
        svc_b.clone().oneshot(0).await.unwrap(),
        (0, 1),
        "loaded afresh"
    );
    assert_eq!(svc_a.clone().oneshot(1).await.unwrap(), (1, 0), "odd kept");
}

/// A steady load through a subscribed `Tiered` store while Redis is
/// killed: no request fails, none waits much past the store's timeout;
/// once Redis is back, L2 is read and written again and the subscription
/// is made again (emptying L1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_behind_a_subscribed_tiered_store() {
    /// Between two requests of a worker, so that the load outlasts L1's
    /// entries (TTL below) and keeps reaching L2 during the outage.
    const PACE: Duration = Duration::from_millis(2);
    /// The listener's reconnect backoff is at most 5 s.
    const RECOVERY_DEADLINE: Duration = Duration::from_secs(20);
    let timeout = Duration::from_millis(50);

    let mut server = RedisServer::start();
    let r = RedisStore::builder(server.client(), "killed")
        .timeout(timeout)
        .breaker(outage_breaker("killed-tiered"))
        .build()
        .unwrap();
    let t = tiered::<Answer>(&r);
    subscribed(&r).await;
    let backend = Backend::default();
    let cache = Cache::builder(t.clone())
        .ttl(Duration::from_millis(20))
        .ttl_jitter(0.0)
        .xfetch_beta(None)
        .build()
        .unwrap();
    let svc = CacheLayer::new(cache, |k: &u64| Some(*k)).layer(backend.clone());

    let Outage { before, during } =
        kill_under_load(&mut server, &r, timeout, svc.clone(), PACE).await;
    assert!(before.writes > 0, "Redis was used: {before:?}");

    server.restart();
    let key = until_used_again(&r, &svc, RECOVERY_DEADLINE, POLL, |now| {
        now.writes > during.writes && now.invalidation_reconnects > during.invalidation_reconnects
    })
    .await;
    // A key only Redis has (L1 emptied by the resubscription) is read
    // from it.
    let hits = r.snapshot().hits;
    Store::<u64, Answer>::delete(t.l1(), &key).await;
    svc.clone().oneshot(key).await.unwrap();
    assert!(r.snapshot().hits > hits, "read from Redis again");
}
