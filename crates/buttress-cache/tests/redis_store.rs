//! `RedisStore` against a real `redis-server` the tests start themselves
//! (see `redis_server`): round trips through the layer, batches, `PX`,
//! isolation, values that must never be served, the size cap, clock skew
//! between instances, and Redis killed under load.
//!
//! Real time throughout (a real server cannot follow tokio's paused
//! clock); the only real waits are for a process to start and for the
//! store to reconnect, each bounded by a named constant.

#![cfg(feature = "redis")]

mod common;
mod redis_server;

use std::time::Duration;

use buttress_cache::redis::{self, AsyncCommands};
use buttress_cache::store::{Codec, QuickCacheStore, RedisStore, Store, Tiered};
use buttress_cache::{Cache, CacheLayer, Entry};
use buttress_core::time::Instant;
use common::{Answer, Backend};
use redis_server::{
    Outage, RedisServer, cache_on, kill_under_load, outage_breaker, until_used_again,
};
use tower::{Layer, ServiceExt};

/// Slack for reading back a time across a real round trip (the test's own
/// scheduling on a busy machine included).
const TIME_SLACK: Duration = Duration::from_millis(500);
/// How long the store may take to use Redis again after a restart: its
/// breaker's next probe and the connection manager's reconnect.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(15);
/// Between two tries while waiting for that recovery (a real wait: a real
/// server and a real reconnect).
const RECOVERY_POLL: Duration = Duration::from_millis(20);

fn store(server: &RedisServer, ns: &str) -> RedisStore {
    RedisStore::builder(server.client(), ns).build().unwrap()
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn two_instances_share_entries_through_the_layer() {
    let server = RedisServer::start();
    let (a, b) = (store(&server, "shared"), store(&server, "shared"));
    let backend = Backend::default();
    let svc_a = CacheLayer::new(cache_on(a.clone()), |k: &u64| Some(*k)).layer(backend.clone());
    let svc_b = CacheLayer::new(cache_on(b.clone()), |k: &u64| Some(*k)).layer(backend.clone());

    assert_eq!(svc_a.clone().oneshot(7).await.unwrap(), (7, 0)); // miss: backend
    backend.set_version(1);
    assert_eq!(svc_a.clone().oneshot(7).await.unwrap(), (7, 0)); // hit, from Redis
    assert_eq!(svc_b.clone().oneshot(7).await.unwrap(), (7, 0)); // the other instance's hit
    assert_eq!(backend.started(), 1);
    assert_eq!(a.snapshot().writes, 1);
    assert!(
        a.snapshot().hits >= 1 && b.snapshot().hits >= 1,
        "{:?} {:?}",
        a.snapshot(),
        b.snapshot()
    );
    let mut conn = raw(&server).await;
    let exists: bool = conn.exists(b"shared:v1:7".as_slice()).await.unwrap();
    assert!(exists, "the key is `<namespace>:v1:<key as JSON>`");
    assert_eq!(a.key_of(&7u64).unwrap(), b"shared:v1:7");
}

#[tokio::test]
async fn get_many_answers_in_order_across_batches() {
    let server = RedisServer::start();
    let s = store(&server, "many");
    // More keys than one MGET carries: several MGETs, one pipeline.
    let keys: Vec<u64> = (0..600).collect();
    let present: Vec<(u64, Entry<Answer>)> = keys
        .iter()
        .filter(|k| *k % 3 != 0)
        .map(|&k| (k, Entry::fresh_for((k, k * 10), Duration::from_secs(60))))
        .collect();
    Store::<u64, Answer>::put_many(&s, present).await;
    assert_eq!(s.snapshot().writes, 400);
    let got: Vec<Option<Entry<Answer>>> = s.get_many(&keys).await;
    assert_eq!(got.len(), keys.len());
    for (k, e) in keys.iter().zip(&got) {
        if k % 3 == 0 {
            assert!(e.is_none(), "{k}");
        } else {
            assert_eq!(e.as_ref().map(Entry::value), Some(&(*k, k * 10)), "{k}");
        }
    }
    let stats = s.snapshot();
    assert_eq!((stats.hits, stats.misses), (400, 200));
}

#[tokio::test]
async fn writes_expire_at_the_last_servable_instant() {
    let server = RedisServer::start();
    let s = store(&server, "px");
    let now = Instant::now();
    let e = Entry::fresh_for((1, 1), Duration::from_secs(30));
    Store::<u64, Answer>::put(&s, 1, e.clone()).await;
    let mut conn = raw(&server).await;
    let pttl: i64 = conn.pttl(s.key_of(&1u64).unwrap()).await.unwrap();
    let want = e.stale_until().duration_since(now).as_millis() as i64;
    assert!(
        pttl <= want && pttl > want - TIME_SLACK.as_millis() as i64,
        "PTTL {pttl} ms, stale_until in {want} ms"
    );
    // The timestamps come back as written (to the millisecond).
    let back: Entry<Answer> = s.get(&1).await.unwrap();
    let off = |a: Instant, b: Instant| a.max(b).duration_since(a.min(b));
    assert!(off(back.fresh_until(), e.fresh_until()) <= Duration::from_millis(1));
    assert!(off(back.stale_until(), e.stale_until()) <= Duration::from_millis(1));
    // An entry past its last servable instant is not written at all.
    let gone = Entry::fresh_for((2, 2), Duration::ZERO);
    Store::<u64, Answer>::put(&s, 2, gone).await;
    let exists: bool = conn.exists(s.key_of(&2u64).unwrap()).await.unwrap();
    assert!(!exists);
    assert_eq!(s.snapshot().writes, 1);
}

#[tokio::test]
async fn namespaces_and_schema_versions_never_read_each_other() {
    let server = RedisServer::start();
    let v1 = store(&server, "iso");
    let v2 = RedisStore::builder(server.client(), "iso")
        .schema_version(2)
        .build()
        .unwrap();
    let other = store(&server, "iso:v1");
    let json = RedisStore::builder(server.client(), "iso")
        .codec(Codec::Json)
        .build()
        .unwrap();
    Store::<u64, Answer>::put(&v1, 5, Entry::fresh_for((5, 1), Duration::from_secs(60))).await;
    assert!(Store::<u64, Answer>::get(&v2, &5).await.is_none());
    assert!(Store::<u64, Answer>::get(&other, &5).await.is_none());
    assert_eq!(v2.key_of(&5u64).unwrap(), b"iso:v2:5");
    assert_eq!(other.key_of(&5u64).unwrap(), b"iso:v1:v1:5");
    // Same namespace and version, other codec: read all the same.
    let e: Entry<Answer> = json.get(&5).await.unwrap();
    assert_eq!(*e.value(), (5, 1));
    Store::<u64, Answer>::put(&json, 6, Entry::fresh_for((6, 1), Duration::from_secs(60))).await;
    let e: Entry<Answer> = v1.get(&6).await.unwrap();
    assert_eq!(*e.value(), (6, 1));
    assert_eq!(
        v1.snapshot().decode_failures + v2.snapshot().decode_failures,
        0
    );
}

#[tokio::test]
async fn foreign_and_altered_values_are_misses_never_served() {
    let server = RedisServer::start();
    let s = store(&server, "bad");
    let backend = Backend::default();
    backend.set_version(9);
    let svc = CacheLayer::new(cache_on(s.clone()), |k: &u64| Some(*k)).layer(backend.clone());
    let mut conn = raw(&server).await;

    // A real entry, then the same bytes with one byte of the value changed.
    Store::<u64, Answer>::put(&s, 1, Entry::fresh_for((1, 0), Duration::from_secs(60))).await;
    let mut altered: Vec<u8> = conn.get(s.key_of(&1u64).unwrap()).await.unwrap();
    *altered.last_mut().unwrap() ^= 1;
    let _: () = conn.set(s.key_of(&1u64).unwrap(), altered).await.unwrap();
    // Another program's string, an empty one, and a list (WRONGTYPE).
    let _: () = conn.set(s.key_of(&2u64).unwrap(), "hello").await.unwrap();
    let _: () = conn.set(s.key_of(&3u64).unwrap(), "").await.unwrap();
    let _: () = conn.rpush(s.key_of(&4u64).unwrap(), 1).await.unwrap();

    for k in 1..=4 {
        assert_eq!(svc.clone().oneshot(k).await.unwrap(), (k, 9), "key {k}");
    }
    assert_eq!(backend.started(), 4, "every bad value was a miss");
    // At least once per key (the layer looks again once it leads a load).
    assert!(s.snapshot().decode_failures >= 4, "{:?}", s.snapshot());
    // The loads' answers replaced them.
    for k in 1..=4 {
        assert_eq!(svc.clone().oneshot(k).await.unwrap(), (k, 9), "key {k}");
    }
    assert_eq!(backend.started(), 4);
    assert_eq!(
        s.breaker().snapshot().failures,
        0,
        "bad data is not Redis failing"
    );
}

#[tokio::test]
async fn entries_over_the_size_cap_are_not_written() {
    let server = RedisServer::start();
    let s = RedisStore::builder(server.client(), "cap")
        .max_value_bytes(100)
        .build()
        .unwrap();
    let small = Entry::fresh_for("x".repeat(10), Duration::from_secs(60));
    let big = Entry::fresh_for("x".repeat(100), Duration::from_secs(60));
    Store::<u64, String>::put(&s, 1, small).await;
    Store::<u64, String>::put(&s, 2, big).await;
    let mut conn = raw(&server).await;
    let (one, two): (bool, bool) = (
        conn.exists(s.key_of(&1u64).unwrap()).await.unwrap(),
        conn.exists(s.key_of(&2u64).unwrap()).await.unwrap(),
    );
    assert_eq!((one, two), (true, false));
    assert_eq!((s.snapshot().writes, s.snapshot().oversized), (1, 1));
    // An oversized write still replaces what Redis held: no instance goes
    // on reading the older value.
    let big = Entry::fresh_for("x".repeat(100), Duration::from_secs(60));
    Store::<u64, String>::put(&s, 1, big).await;
    let one: bool = conn.exists(s.key_of(&1u64).unwrap()).await.unwrap();
    assert!(!one, "the older value is gone");
}

/// Invalidation by predicate walks the namespace with `SCAN` in batches
/// (never `KEYS`): it deletes exactly the matching entries, and leaves
/// other namespaces and values that are not its own alone.
#[tokio::test]
async fn delete_where_scans_the_namespace_in_batches() {
    const N: u64 = 700;
    let server = RedisServer::start();
    let (s, other) = (store(&server, "scan"), store(&server, "scan2"));
    let entries: Vec<_> = (0..N)
        .map(|k| (k, Entry::fresh_for((k, 0), Duration::from_secs(60))))
        .collect();
    Store::<u64, Answer>::put_many(&s, entries.clone()).await;
    Store::<u64, Answer>::put_many(&other, entries).await;
    let mut conn = raw(&server).await;
    let foreign = s.key_of(&"not-a-number").unwrap();
    let _: () = conn.set(&foreign, "foreign").await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg(&["RESETSTAT"])
        .query_async(&mut conn)
        .await
        .unwrap();

    let pred = |k: &u64, e: &Entry<Answer>| k.is_multiple_of(3) && e.value().1 == 0;
    Store::<u64, Answer>::delete_where(&s, &pred).await;

    for k in 0..N {
        let (mine, theirs): (bool, bool) = (
            conn.exists(s.key_of(&k).unwrap()).await.unwrap(),
            conn.exists(other.key_of(&k).unwrap()).await.unwrap(),
        );
        assert_eq!(mine, !k.is_multiple_of(3), "key {k}");
        assert!(theirs, "another namespace's key {k}");
    }
    let kept: bool = conn.exists(&foreign).await.unwrap();
    assert!(
        kept,
        "a value that is not an entry of the store is left alone"
    );
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let calls = |cmd: &str| {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
            .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(calls("keys"), 0);
    assert!(calls("scan") >= 2 * N / 256, "in batches: {stats}");
}

/// Instance A writes an entry fresh for 60 s; instances whose wall clocks
/// are off by `skew` read it as fresh for `60 s − skew`: the error in
/// freshness is the skew, no more (and a skew past the TTL makes it look
/// expired, never fresher than written plus the skew).
#[tokio::test]
async fn clock_skew_moves_freshness_by_the_skew_and_no_more() {
    let server = RedisServer::start();
    let writer = store(&server, "skew");
    let ttl = Duration::from_secs(60);
    Store::<u64, Answer>::put(&writer, 1, Entry::fresh_for((1, 0), ttl)).await;
    for skew_ms in [-30_000i64, -1_000, 0, 1_000, 30_000, 90_000] {
        let reader = RedisStore::builder(server.client(), "skew")
            .wall_clock_offset_ms(skew_ms)
            .build()
            .unwrap();
        let e: Entry<Answer> = reader.get(&1).await.unwrap();
        let now = Instant::now();
        let left_ms = if e.fresh_until() >= now {
            e.fresh_until().duration_since(now).as_millis() as i64
        } else {
            -(now.duration_since(e.fresh_until()).as_millis() as i64)
        };
        let want_ms = ttl.as_millis() as i64 - skew_ms;
        assert!(
            left_ms <= want_ms && left_ms > want_ms - TIME_SLACK.as_millis() as i64,
            "skew {skew_ms} ms: fresh for {left_ms} ms, want about {want_ms} ms"
        );
        assert_eq!(e.is_fresh(now), want_ms > 0, "skew {skew_ms} ms");
    }
}

/// A steady load through the layer while Redis is killed: no request
/// fails, none waits much past the store's timeout; once Redis is back,
/// the store writes to it and reads from it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_fails_no_request_and_comes_back() {
    let timeout = Duration::from_millis(50);

    let mut server = RedisServer::start();
    let s = RedisStore::builder(server.client(), "killed")
        .timeout(timeout)
        .breaker(outage_breaker("killed-redis"))
        .build()
        .unwrap();
    let backend = Backend::default();
    let cache = Cache::builder(s.clone())
        .ttl(Duration::from_millis(200))
        .ttl_jitter(0.0)
        .xfetch_beta(None)
        .build()
        .unwrap();
    let svc = CacheLayer::new(cache, |k: &u64| Some(*k)).layer(backend.clone());

    let Outage { before, during } =
        kill_under_load(&mut server, &s, timeout, svc.clone(), Duration::ZERO).await;
    assert!(
        before.writes > 0 && before.hits > 0,
        "Redis was used: {before:?}"
    );
    assert_eq!(before.recoveries, 0, "nothing failed before the kill");

    server.restart();
    let key = until_used_again(&s, &svc, RECOVERY_DEADLINE, RECOVERY_POLL, |now| {
        now.writes > during.writes
    })
    .await;
    // The outage and the recovery show in the counts: Redis answering
    // again after the failures is counted once per outage, not once per
    // command.
    let back = s.snapshot();
    assert!(
        (1..=3).contains(&back.recoveries),
        "one recovery counted: {back:?}"
    );
    let hits = s.snapshot().hits;
    svc.clone().oneshot(key).await.unwrap();
    assert!(s.snapshot().hits > hits, "read from Redis again");
}

/// Two instances, each a `Tiered` (its own L1, one Redis): the second
/// finds the first's entry in Redis without a backend call, promotes it,
/// and then answers it from its own L1.
#[tokio::test]
async fn tiered_instances_share_l2_and_promote_into_l1() {
    let server = RedisServer::start();
    let backend = Backend::default();
    let tiered = |s: &RedisStore| {
        Tiered::new(
            QuickCacheStore::builder(1 << 20).build().unwrap(),
            s.clone(),
        )
    };
    let (ra, rb) = (store(&server, "tiers"), store(&server, "tiers"));
    let (ta, tb) = (tiered(&ra), tiered(&rb));
    let svc_a = CacheLayer::new(cache_on(ta.clone()), |k: &u64| Some(*k)).layer(backend.clone());
    let svc_b = CacheLayer::new(cache_on(tb.clone()), |k: &u64| Some(*k)).layer(backend.clone());

    assert_eq!(svc_a.clone().oneshot(3).await.unwrap(), (3, 0));
    assert_eq!(ra.snapshot().writes, 1);
    assert_eq!(Store::<u64, Answer>::len(ta.l1()), 1);
    assert_eq!(svc_b.clone().oneshot(3).await.unwrap(), (3, 0));
    assert_eq!(backend.started(), 1, "B found A's entry in Redis");
    assert_eq!(Store::<u64, Answer>::len(tb.l1()), 1, "and promoted it");
    let hits = rb.snapshot().hits;
    assert_eq!(svc_b.clone().oneshot(3).await.unwrap(), (3, 0));
    assert_eq!(rb.snapshot().hits, hits, "answered from B's L1");
    // L2's remaining freshness came along.
    let (ea, eb): (Entry<Answer>, Entry<Answer>) = (
        ta.l1().get(&3).await.unwrap(),
        tb.l1().get(&3).await.unwrap(),
    );
    let off = ea.fresh_until().max(eb.fresh_until()) - ea.fresh_until().min(eb.fresh_until());
    assert!(off <= Duration::from_millis(1), "{off:?}");
}

/// A store built before any recorder publishes every metric of
/// `REDIS_METRICS` into it, labelled with its name, with the counts of
/// its snapshot; the round-trip histogram is recorded where commands run.
#[test]
fn a_store_built_before_the_recorder_publishes_every_metric_into_it() {
    use std::collections::BTreeSet;

    use buttress_cache::REDIS_METRICS;
    use buttress_core::telemetry::flush;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut server = RedisServer::start();
    let s = RedisStore::builder(server.client(), "telemetry")
        .name("telemetry-l2")
        .max_value_bytes(200)
        .build()
        .unwrap();
    let recorder = DebuggingRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let put = |k: u64, len: usize| {
                Store::<u64, String>::put(
                    &s,
                    k,
                    Entry::fresh_for("x".repeat(len), Duration::from_secs(60)),
                )
            };
            put(1, 10).await; // written
            put(2, 500).await; // oversized: not written, its key deleted
            let _: Option<Entry<String>> = s.get(&1).await; // hit
            let _: Option<Entry<String>> = s.get(&3).await; // miss
            let mut conn = raw(&server).await;
            let _: () = conn.set(s.key_of(&4u64).unwrap(), "foreign").await.unwrap();
            let _: Option<Entry<String>> = s.get(&4).await; // decode failure
            // JSON has no map with tuple keys: the key does not encode.
            let unencodable = std::collections::BTreeMap::from([((1u8, 2u8), 3u8)]);
            let _: Option<Entry<String>> = s.get(&unencodable).await;
            s.breaker().force_open();
            let _: Option<Entry<String>> = s.get(&1).await; // rejected
            put(5, 10).await; // rejected: dropped
            s.breaker().reset();
            server.kill();
            let _: Option<Entry<String>> = s.get(&1).await; // error or timeout
        });
    });
    metrics::with_local_recorder(&recorder, flush);

    let snap = s.snapshot();
    assert_eq!((snap.writes, snap.oversized, snap.hits), (1, 1, 1));
    assert_eq!(
        (snap.misses, snap.decode_failures, snap.encode_failures),
        (1, 1, 1)
    );
    assert_eq!((snap.rejected, snap.writes_dropped), (2, 1));
    assert_eq!(snap.errors + snap.timeouts, 1);
    assert_eq!(snap.invalidations_published, 2, "the write and the delete");

    let mut seen = BTreeSet::new();
    for (key, _, _, value) in recorder.snapshotter().snapshot().into_vec() {
        let name = key.key().name().to_owned();
        if !name.starts_with("buttress_cache_redis_") {
            continue;
        }
        let labels: Vec<_> = key
            .key()
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        // Other tests' stores, alive meanwhile, publish their own series.
        if !labels
            .iter()
            .any(|(k, v)| k == "name" && v == "telemetry-l2")
        {
            continue;
        }
        assert_eq!(labels.len(), 1, "{name}: only the `name` label");
        let want = match name.as_str() {
            "buttress_cache_redis_hits_total" => Some(snap.hits),
            "buttress_cache_redis_misses_total" => Some(snap.misses),
            "buttress_cache_redis_decode_failures_total" => Some(snap.decode_failures),
            "buttress_cache_redis_encode_failures_total" => Some(snap.encode_failures),
            "buttress_cache_redis_errors_total" => Some(snap.errors),
            "buttress_cache_redis_timeouts_total" => Some(snap.timeouts),
            "buttress_cache_redis_rejected_total" => Some(snap.rejected),
            "buttress_cache_redis_recoveries_total" => Some(snap.recoveries),
            "buttress_cache_redis_writes_total" => Some(snap.writes),
            "buttress_cache_redis_writes_dropped_total" => Some(snap.writes_dropped),
            "buttress_cache_redis_oversized_total" => Some(snap.oversized),
            "buttress_cache_redis_invalidations_published_total" => {
                Some(snap.invalidations_published)
            }
            "buttress_cache_redis_invalidations_received_total" => {
                Some(snap.invalidations_received)
            }
            "buttress_cache_redis_invalidation_reconnects_total" => {
                Some(snap.invalidation_reconnects)
            }
            "buttress_cache_redis_l1_flushes_total" => Some(snap.l1_flushes),
            "buttress_cache_redis_lease_waits_total" => Some(snap.lease_waits),
            "buttress_cache_redis_lease_fills_total" => Some(snap.lease_fills),
            _ => None,
        };
        match (want, value) {
            (Some(n), DebugValue::Counter(v)) => assert_eq!(v, n, "{name}"),
            (None, DebugValue::Histogram(samples)) => {
                // The commands answered: one SET, one DEL (of the
                // oversized entry's key), three GETs.
                assert_eq!(samples.len(), 5, "{name}");
                assert!(samples.iter().all(|s| s.into_inner() < 1.0));
            }
            other => panic!("{name}: {other:?}"),
        }
        seen.insert(name);
    }
    let listed: BTreeSet<String> = REDIS_METRICS.iter().map(|m| m.name.to_owned()).collect();
    assert_eq!(
        seen, listed,
        "what the store emits is what REDIS_METRICS lists"
    );
}
