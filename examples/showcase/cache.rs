//! The cache phase: a slow backend behind a hot key set, the same requests
//! with and without `buttress::cache`, then a stampede at expiry.
//!
//! Self-contained: `main` calls [`run`] after the breaker scenario and
//! prints what it returns.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use buttress::BoxError;
use buttress::ServiceBuilderExt;
use buttress::cache::store::QuickCacheStore;
use buttress::cache::{Cache, CacheLayer};
use buttress::core::rng::FastRng;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// How long the backend takes per call.
const LATENCY: Duration = Duration::from_millis(20);
/// Requests per run, sent by `WORKERS` concurrent clients.
const REQUESTS: u64 = 4_000;
const WORKERS: u64 = 64;
/// Distinct keys; requests follow Zipf(1.0) over them, so a few are hot.
const KEYS: usize = 5_000;

type Svc = BoxCloneService<u64, Arc<u64>, BoxError>;

/// A slow backend that counts its calls.
fn backend(calls: Arc<AtomicU64>) -> Svc {
    BoxCloneService::new(
        service_fn(move |id: u64| {
            calls.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(LATENCY).await;
                Ok::<_, BoxError>(Arc::new(id))
            }
        })
        .map_err(Into::into),
    )
}

/// Zipf(s) keys by inverse CDF, from a seeded generator.
fn zipf_keys(n: usize, s: f64, count: u64, seed: u64) -> Vec<u64> {
    let mut cdf = Vec::with_capacity(n);
    let mut sum = 0.0;
    for i in 1..=n {
        sum += 1.0 / (i as f64).powf(s);
        cdf.push(sum);
    }
    let rng = FastRng::seeded(seed);
    (0..count)
        .map(|_| {
            let u = rng.next_f64() * sum;
            cdf.partition_point(|&p| p < u) as u64
        })
        .collect()
}

struct RunResult {
    latencies: Vec<Duration>,
    backend_calls: u64,
    elapsed: Duration,
}

/// Sends `keys` through `svc` from `WORKERS` clients, closed loop.
async fn drive(svc: Svc, keys: Arc<Vec<u64>>, calls: Arc<AtomicU64>) -> RunResult {
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..WORKERS {
        let (svc, keys, next) = (svc.clone(), Arc::clone(&keys), Arc::clone(&next));
        workers.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&key) = keys.get(i as usize) else {
                    break;
                };
                let sent = Instant::now();
                let answer = svc.clone().oneshot(key).await;
                latencies.push(sent.elapsed());
                assert_eq!(answer.ok().as_deref(), Some(&key), "a wrong answer");
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    for done in workers.join_all().await {
        latencies.extend(done);
    }
    latencies.sort_unstable();
    RunResult {
        latencies,
        backend_calls: calls.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

/// Runs the phase and returns its report.
pub(crate) async fn run() -> Result<String, BoxError> {
    let keys = Arc::new(zipf_keys(KEYS, 1.0, REQUESTS, 0x5eed));
    let mut out = String::new();
    writeln!(
        out,
        "Cache phase: a backend answering in {} ms, {REQUESTS} requests from {WORKERS} clients over {KEYS} keys (Zipf 1.0)\n",
        LATENCY.as_millis()
    )?;

    // Without the cache.
    let calls = Arc::new(AtomicU64::new(0));
    let plain = drive(backend(Arc::clone(&calls)), Arc::clone(&keys), calls).await;

    // With it.
    let calls = Arc::new(AtomicU64::new(0));
    let store = QuickCacheStore::builder(16 << 20)
        .estimated_entries(KEYS)
        .build()?;
    let cache = Cache::builder(store)
        .name("showcase")
        .ttl(Duration::from_secs(60))
        .build()?;
    let cached_svc: Svc = BoxCloneService::new(
        ServiceBuilder::new()
            .cache(CacheLayer::new(cache.clone(), |id: &u64| Some(*id)))
            .service(backend(Arc::clone(&calls))),
    );
    let cached = drive(cached_svc, Arc::clone(&keys), calls).await;
    let stats = cache.snapshot();

    writeln!(
        out,
        "| | backend calls | hit ratio | p50 | p99 | wall time |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|")?;
    for (name, r, ratio) in [
        ("without cache", &plain, "—".to_string()),
        (
            "with cache",
            &cached,
            format!("{:.1} %", stats.hit_ratio() * 100.0),
        ),
    ] {
        writeln!(
            out,
            "| {name} | {} | {ratio} | {} | {} | {} |",
            r.backend_calls,
            ms(percentile(&r.latencies, 0.50)),
            ms(percentile(&r.latencies, 0.99)),
            ms(r.elapsed),
        )?;
    }
    let saved = plain.backend_calls.saturating_sub(cached.backend_calls);
    writeln!(
        out,
        "\nThe cache saved {saved} of {} backend calls ({:.1} %); {} misses waited on another caller's load instead of calling the backend.",
        plain.backend_calls,
        saved as f64 * 100.0 / plain.backend_calls.max(1) as f64,
        stats.coalesced_waiters,
    )?;

    // A stampede at expiry: one hot key expires while 1,000 callers want it.
    let calls = Arc::new(AtomicU64::new(0));
    let store = QuickCacheStore::builder(1 << 20)
        .estimated_entries(16)
        .build()?;
    let cache = Cache::builder(store)
        .name("stampede")
        .ttl(Duration::from_millis(200))
        .ttl_jitter(0.0)
        .xfetch_beta(None)
        .build()?;
    let mut svc = ServiceBuilder::new()
        .cache(CacheLayer::new(cache.clone(), |id: &u64| Some(*id)))
        .service(backend(Arc::clone(&calls)));
    svc.ready().await?.call(1).await?;
    tokio::time::sleep(Duration::from_millis(250)).await; // expired
    let before = calls.load(Ordering::Relaxed);
    let mut herd = JoinSet::new();
    for _ in 0..1_000 {
        herd.spawn(svc.clone().oneshot(1));
    }
    let answered = herd
        .join_all()
        .await
        .into_iter()
        .filter(|r| r.is_ok())
        .count();
    writeln!(
        out,
        "Stampede at expiry: 1,000 concurrent requests for the expired hot key, {answered} answered, {} backend call(s).",
        calls.load(Ordering::Relaxed) - before
    )?;
    Ok(out)
}
