//! The adaptive concurrency limit, under the limit and at it, against the
//! no-op floor, tower's `ConcurrencyLimit` (and `LoadShed` over
//! `GlobalConcurrencyLimit` for the reject path), and tower-resilience
//! 0.13's adaptive limiter and bulkhead; and two threads sharing one
//! limiter against one thread. See `docs/benchmarks.md` for the figures.
//!
//! Run with
//! `cargo bench -p buttress-benches --bench limit` (never `--workspace`:
//! the tests' tokio `test-util` feature would route every
//! `tokio::time::Instant::now()` through the mock clock).
//!
//! Bench ids, all in the group `limit`:
//!
//! - `under/<subject>`: acquire + release with room under the limit, ns per
//!   call on one thread (`buttress-vegas` with windows that close and feed
//!   Vegas: see `buttress_vegas`; `buttress-knee`: every default);
//! - `reject/<subject>`: every call shed at the limit;
//! - `ref/instant-now`: one `Instant::now()`, for scale (an admitted
//!   buttress call reads the clock twice, for its round-trip time);
//! - `threads-1/<subject>` and `threads-2/<subject>`: one or two threads each
//!   driving its own clone of one service (one shared limiter), timed as
//!   wall time / total calls.

mod harness;
mod subjects;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use buttress_limit::algorithm::{Fixed, Knee, Vegas};
use buttress_limit::{AdaptiveLimit, AdaptiveLimitLayer};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::{Layer, Service};

use harness::{contended, single};
use subjects::noop;

// ---------------------------------------------------------------- subjects

/// buttress with Vegas (reference defaults), fed a sample by every
/// window: `min_rtt(ZERO)` samples the no-op's sub-microsecond RTTs (the
/// default 100 µs floor would discard them all) and 100 ms windows
/// (Envoy's update interval) close ten times a second, so the figure
/// includes the window closes and the timed calls of a limiter that is
/// adapting. Vegas never binds here (one call in flight, under half its
/// limit of 20), so every call is admitted, as under tower's
/// `ConcurrencyLimit` of 1000. Returned once Vegas has been fed: it has
/// a window RTT and a no-load RTT.
fn buttress_vegas()
-> impl Service<(), Response = (), Error = tower::BoxError> + Clone + Send + 'static {
    let limit = AdaptiveLimit::builder(Vegas::builder().build().expect("valid"))
        .window(Duration::from_millis(100))
        .min_rtt(Duration::ZERO)
        .build()
        .expect("valid limiter");
    let mut svc = AdaptiveLimitLayer::new(limit.clone()).layer(noop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        harness::call(&mut svc);
        let fed = limit.snapshot();
        if fed.rtt.is_some() && fed.no_load_rtt.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Vegas was never fed a window: {fed:?}"
        );
    }
    svc
}

/// buttress with every setting at its default: the recommended `Knee`
/// and RTT-scaled windows, as a user who sets nothing gets it (the
/// criterion warm-up runs its first windows, so the timed calls are
/// sampled as they are in steady state).
fn buttress_knee()
-> impl Service<(), Response = (), Error = tower::BoxError> + Clone + Send + 'static {
    let limit = AdaptiveLimit::builder(Knee::builder().build().expect("valid"))
        .build()
        .expect("valid limiter");
    AdaptiveLimitLayer::new(limit).layer(noop())
}

/// buttress with a fixed limit of 1000 (tower's figure's configuration).
fn buttress_fixed()
-> impl Service<(), Response = (), Error = tower::BoxError> + Clone + Send + 'static {
    let limit = AdaptiveLimit::builder(Fixed::new(1000).expect("valid"))
        .build()
        .expect("valid limiter");
    AdaptiveLimitLayer::new(limit).layer(noop())
}

/// buttress at its limit: a limit of 1 whose permit is held for the run.
fn buttress_full()
-> impl Service<(), Response = (), Error = tower::BoxError> + Clone + Send + 'static {
    let limit = AdaptiveLimit::builder(Fixed::new(1).expect("valid"))
        .build()
        .expect("valid limiter");
    std::mem::forget(limit.try_acquire().expect("a first permit"));
    AdaptiveLimitLayer::new(limit).layer(noop())
}

/// tower's `ConcurrencyLimit` (1000): its permit is taken in `poll_ready`.
fn tower_limit() -> impl Service<(), Response = (), Error = io::Error> + Clone + Send + 'static {
    tower::limit::ConcurrencyLimitLayer::new(1000).layer(noop())
}

/// tower's `LoadShed` over a `GlobalConcurrencyLimit` of 1 whose permit is
/// held for the run: every call shed.
fn tower_shed_full()
-> impl Service<(), Response = (), Error = tower::BoxError> + Clone + Send + 'static {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(1));
    std::mem::forget(
        Arc::clone(&semaphore)
            .try_acquire_owned()
            .expect("a permit"),
    );
    tower::ServiceBuilder::new()
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(
            semaphore,
        ))
        .service(noop())
}

/// tower-resilience 0.13's adaptive limiter, AIMD with its defaults.
fn tower_resilience_adaptive()
-> impl Service<(), Response = (), Error = tower_resilience_adaptive::AdaptiveError<io::Error>>
+ Clone
+ Send
+ 'static {
    let aimd = tower_resilience_adaptive::Aimd::builder()
        .build()
        .expect("valid AIMD");
    tower_resilience_adaptive::AdaptiveLimiterLayer::new(aimd).layer(noop())
}

/// tower-resilience 0.13's bulkhead, 1000 concurrent calls.
fn tower_resilience_bulkhead()
-> impl Service<(), Response = (), Error = tower_resilience_bulkhead::BulkheadServiceError<io::Error>>
+ Clone
+ Send
+ 'static {
    tower_resilience_bulkhead::BulkheadLayer::builder()
        .max_concurrent_calls(1000)
        .build()
        .expect("valid bulkhead")
        .layer(noop())
}

fn limit(c: &mut Criterion) {
    let mut group = c.benchmark_group("limit");
    group.bench_function("ref/instant-now", |b| b.iter(Instant::now));

    single(&mut group, "under/floor", noop());
    single(&mut group, "under/buttress-knee", buttress_knee());
    single(&mut group, "under/buttress-vegas", buttress_vegas());
    single(&mut group, "under/buttress-fixed", buttress_fixed());
    single(&mut group, "under/tower-concurrency-limit", tower_limit());
    single(
        &mut group,
        "under/tower-resilience-adaptive",
        tower_resilience_adaptive(),
    );
    single(
        &mut group,
        "under/tower-resilience-bulkhead",
        tower_resilience_bulkhead(),
    );

    single(&mut group, "reject/buttress", buttress_full());
    single(&mut group, "reject/tower-load-shed", tower_shed_full());

    contended(&mut group, "floor", noop());
    contended(&mut group, "buttress-knee", buttress_knee());
    contended(&mut group, "buttress-vegas", buttress_vegas());
    contended(&mut group, "tower-concurrency-limit", tower_limit());
    contended(
        &mut group,
        "tower-resilience-adaptive",
        tower_resilience_adaptive(),
    );
    contended(
        &mut group,
        "tower-resilience-bulkhead",
        tower_resilience_bulkhead(),
    );

    // With metrics-exporter-prometheus's recorder installed (last: a
    // global recorder cannot be removed).
    harness::install_prometheus();
    single(
        &mut group,
        "under/buttress-vegas+prometheus",
        buttress_vegas(),
    );
    single(&mut group, "reject/buttress+prometheus", buttress_full());
    contended(&mut group, "buttress-vegas+prometheus", buttress_vegas());
    group.finish();
}

criterion_group!(benches, limit);
criterion_main!(benches);
