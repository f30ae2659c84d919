//! The read-through cache: hit cost through the layer on each store, next
//! to the raw stores' `get` and tower-resilience 0.13's cache layer; the
//! miss path; 1,000 coalesced waiters; two threads sharing one cache; and
//! (printed before the timings) the hit ratio of each store on a Zipf
//! workload. See `docs/benchmarks.md` and `docs/cache.md` for figures.
//!
//! Run with
//! `cargo bench -p buttress-benches --bench cache -- --warm-up-time 1 --measurement-time 3`
//! (never `--workspace`: the tests' tokio `test-util` feature would route
//! every `tokio::time::Instant::now()` through the mock clock). Set
//! `BUTTRESS_SKIP_ZIPF=1` to skip the hit-ratio run (about a minute).
//!
//! Bench ids, all in the group `cache`:
//!
//! - `hit/<subject>`: ns per hit on one thread, cycling over 10,000 cached
//!   keys (`raw-quick_cache` and `raw-moka` are the stores' own `get` on
//!   the same keys and values: the floor a layer over them can reach);
//! - `miss/<subject>`: a request for a key never seen before, against a
//!   backend that answers at once (so the figure is the layer's own miss
//!   overhead: lookup, coalescing bookkeeping, write);
//! - `coalesced-1000/buttress-quick_cache`: 1,000 concurrent requests for
//!   one cold key whose backend yields once; time per batch of 1,000
//!   (each batch is checked to make exactly one backend call);
//! - `threads-1/<subject>` and `threads-2/<subject>`: one or two threads
//!   each driving its own clone of one service over the same cached keys,
//!   timed as wall time / total calls (so `threads-1 / threads-2` is the
//!   scaling ratio, 2.0 perfect).

mod cache_subjects;

use std::future::Future;
use std::hint::black_box;
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use buttress_cache::store::{MokaStore, QuickCacheStore, Store};
use buttress_cache::{Cache, CacheLayer};
use buttress_core::rng::FastRng;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tower::{Layer, Service, ServiceExt, service_fn};

use cache_subjects::{KEYS, Value, backend, moka_layer, quick_cache_layer, raw_moka};

/// Polls `future` to completion with a no-op waker, yielding the thread
/// between polls if it is ever pending.
#[inline]
fn poll_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::yield_now();
    }
}

/// One request, the same way for every subject: `ready()`, `call`, poll
/// the response future to completion.
#[inline]
fn drive<S: Service<u64>>(svc: &mut S, key: u64) -> Result<S::Response, S::Error> {
    let svc = poll_now(ServiceExt::ready(svc))?;
    poll_now(svc.call(key))
}

fn tower_resilience_layer() -> impl Service<u64, Response = Value> + Clone + Send + 'static {
    tower_resilience_cache::CacheLayer::builder()
        .max_size(KEYS as usize * 2)
        .ttl(Duration::from_secs(3600))
        .key_extractor(|k: &u64| *k)
        .build()
        .expect("valid tower-resilience cache")
        .layer(backend())
}

/// Loads every key once so that the timed calls are hits.
fn filled<S: Service<u64>>(mut svc: S) -> S {
    for k in 0..KEYS {
        let _ = drive(&mut svc, k);
    }
    svc
}

/// ns per hit, cycling over the cached keys.
fn hits<S: Service<u64>>(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, svc: S) {
    let mut svc = filled(svc);
    let mut k = 0u64;
    group.bench_function(id, |b| {
        b.iter(|| {
            k = (k + 1) % KEYS;
            let r = drive(&mut svc, k);
            black_box(&r);
        });
    });
}

/// ns per miss: a key never seen before every call.
fn misses<S: Service<u64>>(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, mut svc: S) {
    let mut next = 1_000_000u64;
    group.bench_function(id, |b| {
        b.iter(|| {
            next += 1;
            let r = drive(&mut svc, next);
            black_box(&r);
        });
    });
}

/// `threads` threads each driving its own clone over the cached keys;
/// returns wall time / threads.
fn spread<S>(svc: &S, threads: u32, iters: u64) -> Duration
where
    S: Service<u64> + Clone + Send + 'static,
{
    let start_line = Arc::new(Barrier::new(threads as usize + 1));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let mut svc = svc.clone();
            let start_line = Arc::clone(&start_line);
            std::thread::spawn(move || {
                let mut k = u64::from(t) * 7_919 % KEYS;
                let _ = drive(&mut svc, k);
                start_line.wait();
                for _ in 0..iters {
                    k = (k + 1) % KEYS;
                    let r = drive(&mut svc, k);
                    black_box(&r);
                }
            })
        })
        .collect();
    start_line.wait();
    let start = Instant::now();
    for worker in workers {
        worker.join().expect("bench thread panicked");
    }
    start.elapsed() / threads
}

fn contended<S>(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, svc: S)
where
    S: Service<u64> + Clone + Send + 'static,
{
    let svc = filled(svc);
    for threads in [1, 2] {
        group.bench_function(format!("threads-{threads}/{id}"), |b| {
            b.iter_custom(|iters| spread(&svc, threads, iters));
        });
    }
}

/// A backend that yields once before answering, so concurrent misses
/// really overlap; counts its calls in `calls`.
fn yielding_backend(
    calls: Arc<AtomicU64>,
) -> impl Service<u64, Response = Value, Error = io::Error, Future: Send> + Clone + Send + 'static {
    service_fn(move |k: u64| {
        calls.fetch_add(1, Ordering::Relaxed);
        async move {
            tokio::task::yield_now().await;
            Ok::<_, io::Error>(Arc::new(k))
        }
    })
}

fn cache(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache");
    group.bench_function("ref/instant-now", |b| b.iter(tokio::time::Instant::now));

    // Raw stores, same keys and values (an `Arc` clone per hit).
    let raw_quick: quick_cache::sync::Cache<u64, Value> =
        quick_cache::sync::Cache::new(KEYS as usize * 2);
    for k in 0..KEYS {
        raw_quick.insert(k, Arc::new(k));
    }
    let mut k = 0u64;
    group.bench_function("hit/raw-quick_cache", |b| {
        b.iter(|| {
            k = (k + 1) % KEYS;
            black_box(raw_quick.get(&k))
        });
    });
    for (id, expiring) in [("hit/raw-moka", false), ("hit/raw-moka-expiring", true)] {
        let raw_moka = raw_moka(expiring);
        group.bench_function(id, |b| {
            b.iter(|| {
                k = (k + 1) % KEYS;
                black_box(poll_now(raw_moka.get(&k)))
            });
        });
    }

    hits(&mut group, "hit/buttress-quick_cache", quick_cache_layer());
    hits(&mut group, "hit/buttress-moka", moka_layer());
    hits(&mut group, "hit/tower-resilience", tower_resilience_layer());

    // Misses: a new key every call.
    misses(&mut group, "miss/buttress-quick_cache", quick_cache_layer());
    misses(&mut group, "miss/buttress-moka", moka_layer());
    misses(
        &mut group,
        "miss/tower-resilience",
        tower_resilience_layer(),
    );

    // 1,000 concurrent requests for one cold key, on a current-thread
    // runtime.
    // With its timer: every load is bounded by the load timeout.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let store = QuickCacheStore::builder(64 << 20)
        .estimated_entries(10_000)
        .build()
        .expect("valid store configuration");
    let cache = Cache::builder(store)
        .build()
        .expect("valid cache configuration");
    let calls = Arc::new(AtomicU64::new(0));
    let svc = CacheLayer::new(cache.clone(), |k: &u64| Some(*k))
        .layer(yielding_backend(Arc::clone(&calls)));
    let mut key = 0u64;
    group.bench_function("coalesced-1000/buttress-quick_cache", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                key += 1;
                let before = calls.load(Ordering::Relaxed);
                let start = Instant::now();
                let answered = rt.block_on(async {
                    let mut all: FuturesUnordered<_> =
                        (0..1_000).map(|_| svc.clone().oneshot(key)).collect();
                    let mut answered = 0;
                    while let Some(r) = all.next().await {
                        answered += usize::from(r.is_ok_and(|v| *v == key));
                        black_box(&answered);
                    }
                    answered
                });
                elapsed += start.elapsed();
                // Outside the timing: one backend call answered all 1,000.
                let made = calls.load(Ordering::Relaxed) - before;
                assert_eq!(
                    (made, answered),
                    (1, 1_000),
                    "key {key}: backend calls, right answers"
                );
            }
            elapsed
        });
    });

    contended(&mut group, "buttress-quick_cache", quick_cache_layer());
    contended(&mut group, "buttress-moka", moka_layer());
    contended(&mut group, "tower-resilience", tower_resilience_layer());

    // With metrics-exporter-prometheus's recorder installed (last: a
    // global recorder cannot be removed). A hit never touches it.
    let _recorder = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder();
    hits(
        &mut group,
        "hit/buttress-quick_cache+prometheus",
        quick_cache_layer(),
    );
    contended(
        &mut group,
        "buttress-quick_cache+prometheus",
        quick_cache_layer(),
    );

    group.finish();
}

/// Zipf(s) over `n` ranks by inverse CDF.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for i in 1..=n {
            sum += 1.0 / (i as f64).powf(s);
            cdf.push(sum);
        }
        for p in &mut cdf {
            *p /= sum;
        }
        Self { cdf }
    }

    fn sample(&self, rng: &FastRng) -> u64 {
        let u = rng.next_f64();
        self.cdf.partition_point(|&p| p < u) as u64
    }
}

/// Hit ratio of a layer over `store` on `zipf`, after a warm-up.
fn zipf_ratio<St>(store: St, zipf: &Zipf, warm: u64, measured: u64, seed: u64) -> f64
where
    St: Store<u64, Value>,
{
    let cache = Cache::builder(store)
        .ttl(Duration::from_secs(3600))
        .xfetch_beta(None)
        .weigher(|_: &u64, _: &Value| 100)
        .build()
        .expect("valid cache configuration");
    let mut svc = CacheLayer::new(cache.clone(), |k: &u64| Some(*k)).layer(backend());
    let rng = FastRng::seeded(seed);
    for _ in 0..warm {
        let _ = drive(&mut svc, zipf.sample(&rng));
    }
    let before = cache.snapshot();
    for _ in 0..measured {
        let _ = drive(&mut svc, zipf.sample(&rng));
    }
    let after = cache.snapshot();
    let hits = after.hits - before.hits;
    let misses = after.misses - before.misses;
    hits as f64 / (hits + misses) as f64
}

fn zipf_hit_ratios() {
    const N: usize = 1_000_000;
    const HELD: u64 = 100_000; // 10 % of the keys, 100 bytes each
    const WARM: u64 = 1_000_000;
    const MEASURED: u64 = 2_000_000;
    println!(
        "cache/zipf: {N} keys, cache holds {HELD} (10 %), {WARM} warm-up + {MEASURED} measured requests"
    );
    println!("| s | optimum (top 10 % pinned) | quick_cache | moka |");
    println!("|---|---:|---:|---:|");
    for s in [0.9, 1.0] {
        let zipf = Zipf::new(N, s);
        let optimum = zipf.cdf[HELD as usize - 1];
        let quick_store = QuickCacheStore::builder(HELD * 100)
            .estimated_entries(HELD as usize)
            .build()
            .expect("valid store configuration");
        let quick = zipf_ratio(quick_store, &zipf, WARM, MEASURED, 11);
        let moka_store = MokaStore::builder(HELD * 100)
            .maintenance_interval(None)
            .build()
            .expect("valid moka store configuration");
        let moka = zipf_ratio(moka_store, &zipf, WARM, MEASURED, 11);
        println!(
            "| {s} | {:.1} % | {:.1} % | {:.1} % |",
            optimum * 100.0,
            quick * 100.0,
            moka * 100.0
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listing = args.iter().any(|a| a == "--list" || a == "--test");
    if !listing && std::env::var_os("BUTTRESS_SKIP_ZIPF").is_none() {
        zipf_hit_ratios();
    }
    let mut criterion = Criterion::default().configure_from_args();
    cache(&mut criterion);
    criterion.final_summary();
}
