//! The Redis tier: an L2 hit through `RedisStore` next to a raw redis-rs
//! `GET` of the same bytes, `get_many` next to sequential `GET`s and one raw
//! `MGET`, the multiplexed connection next to a bb8 pool, and a `Tiered`
//! L1 hit next to the in-process cache alone. See `docs/redis.md` and
//! `docs/benchmarks.md` for figures.
//!
//! Run with
//! `cargo bench -p buttress-benches --bench redis -- --warm-up-time 1 --measurement-time 3`
//! (never `--workspace`: the tests' tokio `test-util` feature would route
//! every `tokio::time::Instant::now()` through the mock clock). The bench
//! starts its own `redis-server` (on `PATH`; Debian/Ubuntu: `apt-get
//! install redis-server`) on a free loopback port, without persistence,
//! and kills it at the end. Every figure includes a loopback round trip,
//! so it moves with the machine and with whatever else runs on it: compare
//! rows within one group of one run.
//!
//! Groups (each subject beside its peer, so each figure is a ratio):
//!
//! - `redis-hit/{store-get,raw-get}`: one key, 64-byte values, on a
//!   current-thread runtime: `RedisStore::get` (envelope decoded, breaker,
//!   timeout, counters) against a raw `GET` of the same stored bytes on a
//!   redis-rs `ConnectionManager` of its own;
//! - `redis-get-many/{store-get_many,raw-get-x100,raw-mget}`: 100 keys per
//!   iteration: the store's `get_many`, 100 raw `GET`s one after another,
//!   and one raw `MGET` of the same keys;
//! - `redis-connection/{manager,bb8,bb8-no-check}/tasks-{1,16}`: ns per
//!   `GET` with 1 task (current-thread runtime) and 16 concurrent tasks
//!   (2-worker runtime), over one multiplexed `ConnectionManager` shared by
//!   every task, against a bb8-redis pool of 16 connections with bb8's
//!   default `test_on_check_out` (a `PING` per checkout) and without it;
//! - `tiered-hit/{tiered-quick_cache+redis,quick_cache}`: a `CacheLayer`
//!   hit over `Tiered<QuickCacheStore, RedisStore>` (subscribed to
//!   invalidations) against the same layer over `QuickCacheStore` alone,
//!   cycling over 10,000 cached keys, on a current-thread runtime.

mod cache_subjects;
#[path = "../../crates/buttress-cache/tests/redis_server/mod.rs"]
mod redis_server;

use std::hint::black_box;
use std::time::{Duration, Instant};

use bb8_redis::RedisConnectionManager;
use bb8_redis::bb8::Pool;
use buttress_cache::redis::AsyncCommands;
use buttress_cache::redis::aio::ConnectionManager;
use buttress_cache::store::{QuickCacheStore, RedisStore, Store, Tiered};
use buttress_cache::{Cache, CacheLayer, Entry};
use criterion::Criterion;
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt};

use cache_subjects::{KEYS, Value, backend, quick_cache_layer};
use redis_server::RedisServer;

/// Keys written for the `redis-hit` and `redis-get-many` groups.
const STORED: u64 = 100;
/// Bytes per value in those groups.
const VALUE_BYTES: usize = 64;
/// Concurrent tasks (and pool connections) in the many-task rows.
const TASKS: u64 = 16;

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn two_workers() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Wall time of `iters` sequential calls of `one` (passed the call's
/// index) on `rt`.
fn timed(rt: &Runtime, iters: u64, mut one: impl AsyncFnMut(u64)) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..iters {
            one(i).await;
        }
        start.elapsed()
    })
}

/// A store with the default settings but for its name.
fn store(server: &RedisServer, ns: &str) -> RedisStore {
    RedisStore::builder(server.client(), ns)
        .name(format!("bench-{ns}"))
        .build()
        .expect("valid store configuration")
}

async fn manager(server: &RedisServer) -> ConnectionManager {
    ConnectionManager::new(server.client())
        .await
        .expect("a connection to the bench's redis-server")
}

/// Writes `STORED` 64-byte values through `store` and returns each one's
/// Redis key (the envelope's address, for the raw rows).
async fn fill(store: &RedisStore) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    for k in 0..STORED {
        let value = vec![k as u8; VALUE_BYTES];
        store
            .put(k, Entry::fresh_for(value, Duration::from_secs(3600)))
            .await;
        let got: Option<Entry<Vec<u8>>> = store.get(&k).await;
        assert!(got.is_some(), "key {k} written and read back");
        keys.push(store.key_of(&k).expect("a u64 key encodes"));
    }
    keys
}

fn redis_hit(c: &mut Criterion, server: &RedisServer) {
    let rt = current_thread();
    let store = store(server, "hit");
    let (keys, mut conn) = rt.block_on(async { (fill(&store).await, manager(server).await) });
    let mut group = c.benchmark_group("redis-hit");
    group.bench_function("store-get", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, async |i| {
                let got: Option<Entry<Vec<u8>>> = store.get(&(i % STORED)).await;
                black_box(got.expect("a hit"));
            })
        });
    });
    group.bench_function("raw-get", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, async |i| {
                let key = &keys[(i % STORED) as usize];
                let got: Option<Vec<u8>> = conn.get(key).await.expect("GET answered");
                black_box(got.expect("a hit"));
            })
        });
    });
    group.finish();
}

fn redis_get_many(c: &mut Criterion, server: &RedisServer) {
    let rt = current_thread();
    let store = store(server, "many");
    let (keys, mut conn) = rt.block_on(async { (fill(&store).await, manager(server).await) });
    let ids: Vec<u64> = (0..STORED).collect();
    let mut group = c.benchmark_group("redis-get-many");
    group.bench_function("store-get_many", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, async |_| {
                let got: Vec<Option<Entry<Vec<u8>>>> = store.get_many(&ids).await;
                assert!(got.iter().all(Option::is_some));
                black_box(got);
            })
        });
    });
    group.bench_function("raw-get-x100", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, async |_| {
                for key in &keys {
                    let got: Option<Vec<u8>> = conn.get(key).await.expect("GET answered");
                    black_box(got.expect("a hit"));
                }
            })
        });
    });
    group.bench_function("raw-mget", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, async |_| {
                let got: Vec<Option<Vec<u8>>> = conn.mget(&keys).await.expect("MGET answered");
                assert!(got.iter().all(Option::is_some));
                black_box(got);
            })
        });
    });
    group.finish();
}

/// `tasks` tasks each sending `per_task` `GET`s of `key` through `get`;
/// returns the wall time.
async fn concurrent<F, Fut>(tasks: u64, per_task: u64, get: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Option<Vec<u8>>> + Send,
{
    let start = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let get = get.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    black_box(get().await.expect("a hit"));
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("a bench task panicked");
    }
    start.elapsed()
}

fn redis_connection(c: &mut Criterion, server: &RedisServer) {
    const KEY: &str = "bench:connection";
    let mut group = c.benchmark_group("redis-connection");
    for tasks in [1, TASKS] {
        let rt = if tasks == 1 {
            current_thread()
        } else {
            two_workers()
        };
        let (conn, pool, unchecked) = rt.block_on(async {
            let mut conn = manager(server).await;
            let () = conn
                .set(KEY, vec![7u8; VALUE_BYTES])
                .await
                .expect("SET answered");
            let pool = |check: bool| {
                Pool::builder()
                    .max_size(TASKS as u32)
                    .test_on_check_out(check)
                    .build(RedisConnectionManager::new(server.url()).expect("a valid URL"))
            };
            let checked = pool(true).await.expect("a bb8 pool");
            let unchecked = pool(false).await.expect("a bb8 pool");
            (conn, checked, unchecked)
        });
        // Each row: `iters` GETs spread over the tasks, so the figure is
        // wall time per GET (the inverse of throughput).
        let per_task = |iters: u64| iters.div_ceil(tasks);
        let scale = |elapsed: Duration, iters: u64| {
            elapsed.mul_f64(iters as f64 / (per_task(iters) * tasks) as f64)
        };
        group.bench_function(format!("manager/tasks-{tasks}"), |b| {
            b.iter_custom(|iters| {
                let conn = conn.clone();
                let elapsed = rt.block_on(concurrent(tasks, per_task(iters), move || {
                    let mut conn = conn.clone();
                    async move { conn.get(KEY).await.expect("GET answered") }
                }));
                scale(elapsed, iters)
            });
        });
        for (id, pool) in [("bb8", &pool), ("bb8-no-check", &unchecked)] {
            group.bench_function(format!("{id}/tasks-{tasks}"), |b| {
                b.iter_custom(|iters| {
                    let pool = pool.clone();
                    let elapsed = rt.block_on(concurrent(tasks, per_task(iters), move || {
                        let pool = pool.clone();
                        async move {
                            let mut conn = pool.get().await.expect("a pooled connection");
                            conn.get(KEY).await.expect("GET answered")
                        }
                    }));
                    scale(elapsed, iters)
                });
            });
        }
    }
    group.finish();
}

/// One request through `svc`, awaited on the runtime (a hit answers at
/// once, so this costs what a hit costs under a real runtime).
async fn call<S: Service<u64>>(svc: &mut S, key: u64) -> Result<S::Response, S::Error> {
    svc.ready().await?.call(key).await
}

fn tiered_hit(c: &mut Criterion, server: &RedisServer) {
    let rt = current_thread();
    let mut tiered = rt.block_on(async {
        let l1 = QuickCacheStore::builder(64 << 20)
            .estimated_entries(KEYS as usize)
            .build()
            .expect("valid store configuration");
        let store = Tiered::new(l1, store(server, "tiered")).subscribe_invalidations();
        let cache = Cache::builder(store)
            .ttl(Duration::from_secs(3600))
            .build()
            .expect("valid cache configuration");
        CacheLayer::new(cache, |k: &u64| Some(*k)).layer(backend())
    });
    let mut quick = quick_cache_layer();
    rt.block_on(async {
        for k in 0..KEYS {
            let _: Value = call(&mut tiered, k).await.expect("a load");
            let _: Value = call(&mut quick, k).await.expect("a load");
        }
    });
    let mut group = c.benchmark_group("tiered-hit");
    let mut k = 0u64;
    group.bench_function("tiered-quick_cache+redis", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, async |_| {
                k = (k + 1) % KEYS;
                black_box(call(&mut tiered, k).await.expect("a hit"));
            })
        });
    });
    group.bench_function("quick_cache", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, async |_| {
                k = (k + 1) % KEYS;
                black_box(call(&mut quick, k).await.expect("a hit"));
            })
        });
    });
    group.finish();
    drop(tiered);
}

fn main() {
    let server = RedisServer::start();
    let mut c = Criterion::default().configure_from_args();
    redis_hit(&mut c, &server);
    redis_get_many(&mut c, &server);
    redis_connection(&mut c, &server);
    tiered_hit(&mut c, &server);
    c.final_summary();
    // `server` is killed when dropped, here.
}
