//! Every layer's common path as a user's service pays it: driven by a
//! tokio current-thread runtime (`ready().await`, then `call(..).await`),
//! not by a no-op waker, each next to the peer it replaces. Timers are
//! really built here, runtime-handle lookups really happen, and futures
//! are as large as they are. See `docs/benchmarks.md`.
//!
//! Run with
//! `cargo bench -p buttress-benches --bench runtime` (never `--workspace`:
//! the tests' tokio `test-util` feature would route every
//! `tokio::time::Instant::now()` through the mock clock).
//!
//! Two drivers, one group each:
//!
//! - `runtime`: one persistent service, `svc.ready().await?.call(req).await`
//!   in a loop inside one `block_on` (a client holding its service);
//! - `runtime-clone`: a clone of the service per request, driven with
//!   `oneshot`, as axum's router does for every request.
//!
//! Bench ids in each group:
//!
//! - `ref/floor`, `ref/instant-now`: the no-op backend alone, and one
//!   `Instant::now()` inside the same loop, for scale;
//! - `retry/<subject>`: buttress's retry with a 1 s deadline (and without
//!   one) next to tower's `Timeout` of 1 s and tower's `Retry`;
//! - `retry-pending/<subject>`: the same with a backend that is pending
//!   once (it wakes itself), so every deadline timer is armed;
//! - `limit/<subject>`: an admitted call under buttress's default limiter
//!   (`Knee`, every default), under Vegas, and under tower's
//!   `ConcurrencyLimit`;
//! - `breaker/<subject>`: a closed call, buttress's default (count window)
//!   and tower-resilience 0.13's;
//! - `cache/<subject>`: a hit on 10,000 cached keys through the layer on
//!   each store, and the store's own `get` (`raw-…`) in the same loop.

mod cache_subjects;
mod subjects;

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use buttress_limit::AdaptiveLimit;
use buttress_limit::AdaptiveLimitLayer;
use buttress_limit::algorithm::{Knee, Vegas};
use buttress_retry::{RetryLayer, RetryPolicy};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt, service_fn};

use cache_subjects::{KEYS, Value};
use subjects::noop;

/// How a request is driven through the service under test.
#[derive(Clone, Copy)]
enum Driver {
    /// One service, `ready().await` then `call().await`.
    Persistent,
    /// A clone per request, `oneshot`.
    Clone,
}

impl Driver {
    fn group(self) -> &'static str {
        match self {
            Self::Persistent => "runtime",
            Self::Clone => "runtime-clone",
        }
    }
}

/// The runtime every row runs on: current-thread, with its timer.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
}

/// Times `iters` requests through `svc`, request `i` being `req(i)`, inside
/// one `block_on`.
fn run<S, Req>(
    rt: &Runtime,
    driver: Driver,
    svc: &mut S,
    req: &impl Fn(u64) -> Req,
    iters: u64,
) -> Duration
where
    S: Service<Req> + Clone,
{
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..iters {
            let result = match driver {
                Driver::Persistent => match svc.ready().await {
                    Ok(ready) => ready.call(req(i)).await,
                    Err(e) => Err(e),
                },
                Driver::Clone => svc.clone().oneshot(req(i)).await,
            };
            black_box(&result);
        }
        start.elapsed()
    })
}

/// One row: `svc` driven by `driver`, after 1,000 untimed requests.
fn row<S, Req>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    driver: Driver,
    id: &str,
    mut svc: S,
    req: impl Fn(u64) -> Req,
) where
    S: Service<Req> + Clone,
{
    run(rt, driver, &mut svc, &req, 1_000);
    group.bench_function(id, |b| {
        b.iter_custom(|iters| run(rt, driver, &mut svc, &req, iters));
    });
}

/// A future that is pending once (waking itself at once), then ready.
struct PendingOnce {
    polled: bool,
}

impl Future for PendingOnce {
    type Output = Result<(), std::io::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.polled {
            return Poll::Ready(Ok(()));
        }
        self.polled = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// The `retry-pending` backend: answers `Ok(())` on its second poll.
fn pending_once()
-> impl Service<(), Response = (), Error = std::io::Error, Future = PendingOnce> + Clone + Send + 'static
{
    service_fn(|()| PendingOnce { polled: false })
}

/// tower's retry with a policy that never retries.
#[derive(Clone, Copy)]
struct NeverRetry;

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for NeverRetry {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _: &mut Req, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

const DEADLINE: Duration = Duration::from_secs(1);

fn retry_with_deadline() -> RetryLayer {
    RetryLayer::new(
        RetryPolicy::builder()
            .deadline(DEADLINE)
            .build()
            .expect("valid policy"),
    )
}

fn retry_rows(group: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, driver: Driver) {
    let unit = |_| ();
    row(
        group,
        rt,
        driver,
        "retry/buttress-deadline",
        retry_with_deadline().layer(noop()),
        unit,
    );
    row(
        group,
        rt,
        driver,
        "retry/buttress",
        RetryLayer::new(RetryPolicy::builder().build().expect("valid policy")).layer(noop()),
        unit,
    );
    row(
        group,
        rt,
        driver,
        "retry/tower-timeout",
        tower::timeout::TimeoutLayer::new(DEADLINE).layer(noop()),
        unit,
    );
    row(
        group,
        rt,
        driver,
        "retry/tower-retry",
        tower::retry::RetryLayer::new(NeverRetry).layer(noop()),
        unit,
    );

    row(
        group,
        rt,
        driver,
        "retry-pending/floor",
        pending_once(),
        unit,
    );
    row(
        group,
        rt,
        driver,
        "retry-pending/buttress-deadline",
        retry_with_deadline().layer(pending_once()),
        unit,
    );
    row(
        group,
        rt,
        driver,
        "retry-pending/tower-timeout",
        tower::timeout::TimeoutLayer::new(DEADLINE).layer(pending_once()),
        unit,
    );
}

fn limit_rows(group: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, driver: Driver) {
    let knee = AdaptiveLimit::builder(Knee::builder().build().expect("valid Knee"))
        .build()
        .expect("valid limiter");
    row(
        group,
        rt,
        driver,
        "limit/buttress",
        AdaptiveLimitLayer::new(knee).layer(noop()),
        |_| (),
    );
    let vegas = AdaptiveLimit::builder(Vegas::builder().build().expect("valid Vegas"))
        .build()
        .expect("valid limiter");
    row(
        group,
        rt,
        driver,
        "limit/buttress-vegas",
        AdaptiveLimitLayer::new(vegas).layer(noop()),
        |_| (),
    );
    row(
        group,
        rt,
        driver,
        "limit/tower-concurrency-limit",
        tower::limit::ConcurrencyLimitLayer::new(1000).layer(noop()),
        |_| (),
    );
}

fn breaker_rows(group: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, driver: Driver) {
    row(
        group,
        rt,
        driver,
        "breaker/buttress",
        subjects::buttress_default(),
        |_| (),
    );
    row(
        group,
        rt,
        driver,
        "breaker/tower-resilience",
        subjects::tower_resilience(),
        |_| (),
    );
}

/// The raw stores' `get` as services, so they run in the same loop.
fn cache_rows(group: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, driver: Driver) {
    let key = |i: u64| i % KEYS;
    let raw_quick: Arc<quick_cache::sync::Cache<u64, Value>> =
        Arc::new(quick_cache::sync::Cache::new(KEYS as usize * 2));
    for k in 0..KEYS {
        raw_quick.insert(k, Arc::new(k));
    }
    row(
        group,
        rt,
        driver,
        "cache/raw-quick_cache",
        service_fn(move |k: u64| std::future::ready(Ok::<_, std::io::Error>(raw_quick.get(&k)))),
        key,
    );
    // The service holds moka behind an `Arc` (one reference count per
    // call, for a `'static` future), not a clone of moka's handle (several).
    for (id, expiring) in [("cache/raw-moka", false), ("cache/raw-moka-expiring", true)] {
        let raw_moka = Arc::new(cache_subjects::raw_moka(expiring));
        row(
            group,
            rt,
            driver,
            id,
            service_fn(move |k: u64| {
                let raw_moka = Arc::clone(&raw_moka);
                async move { Ok::<_, std::io::Error>(raw_moka.get(&k).await) }
            }),
            key,
        );
    }
    row(
        group,
        rt,
        driver,
        "cache/buttress-quick_cache",
        filled(rt, cache_subjects::quick_cache_layer()),
        key,
    );
    row(
        group,
        rt,
        driver,
        "cache/buttress-moka",
        filled(rt, cache_subjects::moka_layer()),
        key,
    );
}

/// Loads every key once so that the timed calls are hits.
fn filled<S: Service<u64>>(rt: &Runtime, mut svc: S) -> S {
    rt.block_on(async {
        for k in 0..KEYS {
            if let Ok(ready) = svc.ready().await {
                let _ = ready.call(k).await;
            }
        }
    });
    svc
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    for driver in [Driver::Persistent, Driver::Clone] {
        let mut group = c.benchmark_group(driver.group());
        row(&mut group, &rt, driver, "ref/floor", noop(), |_| ());
        row(
            &mut group,
            &rt,
            driver,
            "ref/instant-now",
            service_fn(|()| std::future::ready(Ok::<_, std::io::Error>(Instant::now()))),
            |_| (),
        );
        retry_rows(&mut group, &rt, driver);
        limit_rows(&mut group, &rt, driver);
        breaker_rows(&mut group, &rt, driver);
        cache_rows(&mut group, &rt, driver);
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
