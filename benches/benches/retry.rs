//! The retry layer's success path (nothing retried), hedging's
//! primary-wins path, and the replayable body, each against the no-op
//! floor and the peers doing the same work: tower's `Retry` and `Hedge`,
//! tower-resilience 0.13's retry and hedge. See `docs/benchmarks.md`.
//!
//! Run with
//! `cargo bench -p buttress-benches --bench retry` (never `--workspace`:
//! the tests' tokio `test-util` feature would route every
//! `tokio::time::Instant::now()` through the mock clock).
//!
//! Bench ids, all in the group `retry`:
//!
//! - `no-retry/<subject>`: a request that succeeds first time, ns per call
//!   (tower's `Retry` with a never-retry zero-sized policy, and with its
//!   own `TpsBudget`, the like-for-like peer of buttress's budgeted policy);
//! - `hedge/<subject>`: a hedging layer whose first attempt answers on its
//!   second poll (the backend is pending once, waking itself), so every
//!   hedge arms its timer and none fires: ns per call, driven inside a tokio
//!   runtime context (the timers need one) that is never run, every subject
//!   (the floor included) on the same backend and driver;
//! - `body-1k/<subject>`: polling a 1 KiB `Full<Bytes>` body to its end,
//!   bare, wrapped in a `ReplayBody`, and wrapped plus one replayed copy.

mod subjects;

use std::fmt;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use buttress_retry::http::{ReplayBody, TryCloneBody};
use buttress_retry::{HedgeDelay, HedgeLayer, HedgePolicy, RetryLayer, RetryPolicy};
use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use http_body::Body;
use http_body_util::Full;
use tower::{Layer, Service, service_fn};

use subjects::{drive, noop};

#[inline]
fn call<S: Service<()>>(svc: &mut S) {
    let result = drive(svc);
    black_box(&result);
}

fn single<S: Service<()>>(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, mut svc: S) {
    // Warm up outside the timing: hedging learns its delay from 100 samples.
    for _ in 0..1_000 {
        call(&mut svc);
    }
    group.bench_function(id, |b| b.iter(|| call(&mut svc)));
}

/// tower's retry with a policy that never retries (it still keeps a copy of
/// the request, as any retry policy must).
#[derive(Clone, Copy)]
struct NeverRetry;

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for NeverRetry {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Req, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// tower's retry with its own `TpsBudget` (Finagle's defaults), the way
/// tower's budget docs use it: deposit on success, withdraw before a retry.
#[derive(Clone)]
struct TowerBudgeted {
    budget: std::sync::Arc<tower::retry::budget::TpsBudget>,
}

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for TowerBudgeted {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        use tower::retry::budget::Budget;
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(_) => self.budget.withdraw().then(|| ready(())),
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// tower's hedge policy: every request may be hedged.
#[derive(Clone, Copy)]
struct HedgeAll;

impl tower::hedge::Policy<()> for HedgeAll {
    fn clone_request(&self, _: &()) -> Option<()> {
        Some(())
    }

    fn can_retry(&self, _: &()) -> bool {
        true
    }
}

/// tower-resilience's hedge needs a `Clone` error.
#[derive(Clone, Debug)]
struct CloneError;

impl fmt::Display for CloneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("failed")
    }
}

impl std::error::Error for CloneError {}

/// A future that is pending on its first poll (waking its task at once)
/// and ready with `value` on the second: a backend that takes a little
/// while, so a hedge arms its timer before the answer comes.
struct PendingOnce<T> {
    value: Option<T>,
    polled: bool,
}

impl<T: Unpin> std::future::Future for PendingOnce<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if !self.polled {
            self.polled = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(self.value.take().expect("polled after completion"))
    }
}

/// The hedge subjects' backend: answers `Ok(())` on the second poll.
fn pending_once()
-> impl Service<(), Response = (), Error = CloneError, Future = PendingOnce<Result<(), CloneError>>>
+ Clone
+ Send
+ Sync
+ 'static {
    service_fn(|()| PendingOnce {
        value: Some(Ok::<(), CloneError>(())),
        polled: false,
    })
}

/// One hedged request: `ready()`, `call`, then the response future polled
/// until it is ready (twice, with [`pending_once`]), with a no-op waker and
/// no yield between polls.
#[inline]
fn call_hedged<S: Service<()>>(svc: &mut S) {
    let mut cx = Context::from_waker(Waker::noop());
    let result = loop {
        match svc.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => break Err(e),
            Poll::Pending => continue,
        }
        let mut future = std::pin::pin!(svc.call(()));
        break loop {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                break out;
            }
        };
    };
    black_box(&result);
}

fn single_hedged<S: Service<()>>(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, mut svc: S) {
    // Warm up outside the timing: the p95 hedge learns its delay from 100
    // samples.
    for _ in 0..1_000 {
        call_hedged(&mut svc);
    }
    group.bench_function(id, |b| b.iter(|| call_hedged(&mut svc)));
}

fn no_retry(group: &mut BenchmarkGroup<'_, WallTime>) {
    single(group, "no-retry/floor", noop());
    single(
        group,
        "no-retry/buttress",
        RetryLayer::new(RetryPolicy::builder().build().expect("valid policy")).layer(noop()),
    );
    single(
        group,
        "no-retry/buttress-no-budget",
        RetryLayer::new(
            RetryPolicy::builder()
                .without_budget()
                .build()
                .expect("valid policy"),
        )
        .layer(noop()),
    );
    single(
        group,
        "no-retry/tower",
        tower::retry::RetryLayer::new(NeverRetry).layer(noop()),
    );
    single(
        group,
        "no-retry/tower-tps-budget",
        tower::retry::RetryLayer::new(TowerBudgeted {
            budget: std::sync::Arc::new(tower::retry::budget::TpsBudget::default()),
        })
        .layer(noop()),
    );
    single(
        group,
        "no-retry/tower-resilience",
        tower_resilience_retry::RetryLayer::<(), (), std::io::Error>::builder()
            .max_attempts(3)
            .exponential_backoff(Duration::from_millis(25))
            .build()
            .layer(noop()),
    );
}

fn hedge(group: &mut BenchmarkGroup<'_, WallTime>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let _context = rt.enter();
    single_hedged(group, "hedge/floor", pending_once());
    single_hedged(
        group,
        "hedge/buttress-p95",
        HedgeLayer::new(HedgePolicy::builder().build().expect("valid policy"))
            .layer(pending_once()),
    );
    single_hedged(
        group,
        "hedge/buttress-fixed",
        HedgeLayer::new(
            HedgePolicy::builder()
                .delay(HedgeDelay::Fixed(Duration::from_millis(10)))
                .build()
                .expect("valid policy"),
        )
        .layer(pending_once()),
    );
    // tower's: p95 over 100 data points, 10 s rotation.
    single_hedged(
        group,
        "hedge/tower",
        tower::hedge::Hedge::new(pending_once(), HedgeAll, 100, 0.95, Duration::from_secs(10)),
    );
    single_hedged(
        group,
        "hedge/tower-resilience",
        tower_resilience_hedge::HedgeLayer::builder()
            .delay(Duration::from_millis(10))
            .max_hedged_attempts(2)
            .build()
            .layer(pending_once()),
    );
}

/// Polls a body to its end with a no-op waker; returns the bytes seen.
#[inline]
fn drain<B: Body + Unpin>(mut body: B) -> usize
where
    B::Data: bytes::Buf,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut n = 0;
    while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
        if let Ok(frame) = frame
            && let Some(d) = frame.data_ref()
        {
            n += bytes::Buf::remaining(d);
        }
    }
    n
}

fn body(group: &mut BenchmarkGroup<'_, WallTime>) {
    let kib = Bytes::from(vec![7u8; 1024]);
    group.bench_function("body-1k/floor", |b| {
        b.iter(|| black_box(drain(Full::new(black_box(kib.clone())))))
    });
    group.bench_function("body-1k/replay-body", |b| {
        b.iter(|| black_box(drain(ReplayBody::new(Full::new(black_box(kib.clone()))))))
    });
    group.bench_function("body-1k/replay-body-and-copy", |b| {
        b.iter(|| {
            let body = ReplayBody::new(Full::new(black_box(kib.clone())));
            let copy = body.try_clone_body();
            let first = drain(body);
            black_box(first + copy.map_or(0, drain))
        })
    });
}

/// The success path with metrics-exporter-prometheus's recorder installed
/// (last: a global recorder cannot be removed).
fn with_prometheus(group: &mut BenchmarkGroup<'_, WallTime>) {
    let _recorder = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder();
    single(
        group,
        "no-retry/buttress+prometheus",
        RetryLayer::new(RetryPolicy::builder().build().expect("valid policy")).layer(noop()),
    );
}

fn retry(c: &mut Criterion) {
    let mut group = c.benchmark_group("retry");
    no_retry(&mut group);
    hedge(&mut group);
    body(&mut group);
    with_prometheus(&mut group);
    group.finish();
}

criterion_group!(benches, retry);
criterion_main!(benches);
