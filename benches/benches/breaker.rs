//! The circuit breaker, closed and open, against the no-op floor,
//! tower-resilience 0.13 and failsafe 1.3; and two threads sharing one
//! breaker against one thread. See `docs/benchmarks.md` for the figures.
//!
//! Run with
//! `cargo bench -p buttress-benches --bench breaker` (never `--workspace`:
//! the tests' tokio `test-util` feature would route every
//! `tokio::time::Instant::now()` through the mock clock).
//!
//! Bench ids, all in the group `breaker`:
//!
//! - `closed/<subject>` and `open/<subject>`: ns per call on one thread;
//! - `ref/instant-now`: one `Instant::now()`, for scale;
//! - `threads-1/<subject>` and `threads-2/<subject>`: one or two threads each
//!   driving its own clone of one service (so one shared breaker), timed as
//!   wall time / total calls. Criterion's figure is therefore inverse
//!   throughput, and `threads-1 / threads-2` is the scaling ratio
//!   (2-thread throughput over 1-thread throughput; 2.0 is perfect).

mod subjects;

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use tower::Service;

use subjects::drive;

/// One call whose result the optimizer must assume is read. The result is
/// passed to `black_box` by reference: passing it by value makes the
/// compiler store a 16-byte `Result<(), BoxError>` as two 8-byte halves and
/// read it back as one 16-byte load, a store-forwarding stall (about 6 ns
/// here) that a caller matching on the returned value never pays.
#[inline]
fn call<S: Service<()>>(svc: &mut S) {
    let result = drive(svc);
    black_box(&result);
}

/// One thread, one service: ns per call.
fn single<S: Service<()>>(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, mut svc: S) {
    group.bench_function(id, |b| b.iter(|| call(&mut svc)));
}

/// `threads` threads, each driving its own clone of `svc` for `iters`
/// calls; returns wall time divided by `threads`, so that criterion's
/// per-iteration figure is wall time per call over all threads.
fn spread<S>(svc: &S, threads: u32, iters: u64) -> Duration
where
    S: Service<()> + Clone + Send + 'static,
{
    let start_line = Arc::new(Barrier::new(threads as usize + 1));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let mut svc = svc.clone();
            let start_line = Arc::clone(&start_line);
            std::thread::spawn(move || {
                // One untimed call so the clone's first-use costs (thread
                // stripe, lazy state) stay outside the measurement.
                call(&mut svc);
                start_line.wait();
                for _ in 0..iters {
                    call(&mut svc);
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

/// The same service on one thread and on two: `threads-1/<id>` and
/// `threads-2/<id>`.
fn contended<S>(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, svc: S)
where
    S: Service<()> + Clone + Send + 'static,
{
    for threads in [1, 2] {
        group.bench_function(format!("threads-{threads}/{id}"), |b| {
            b.iter_custom(|iters| spread(&svc, threads, iters));
        });
    }
}

fn breaker(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker");

    // What one clock read costs here: the time window reads the clock once
    // per call, slow-call tracking twice.
    group.bench_function("ref/instant-now", |b| b.iter(Instant::now));

    // Closed: every call passes and is recorded.
    single(&mut group, "closed/floor", subjects::noop());
    single(&mut group, "closed/buttress", subjects::buttress_default());
    single(
        &mut group,
        "closed/buttress-time-window",
        subjects::buttress_time_window(),
    );
    single(
        &mut group,
        "closed/buttress-slow-calls",
        subjects::buttress_slow_calls(),
    );
    single(
        &mut group,
        "closed/tower-resilience",
        subjects::tower_resilience(),
    );
    single(
        &mut group,
        "closed/failsafe-sync",
        subjects::failsafe_sync(),
    );
    single(
        &mut group,
        "closed/failsafe-futures",
        subjects::failsafe_futures(),
    );

    // Open: every call is rejected without touching the inner service.
    single(&mut group, "open/buttress", subjects::buttress_tripped());
    single(
        &mut group,
        "open/buttress-forced",
        subjects::buttress_forced_open(),
    );
    single(
        &mut group,
        "open/tower-resilience",
        subjects::tower_resilience_tripped(),
    );

    // One breaker shared by one thread, then by two.
    contended(&mut group, "floor", subjects::noop());
    contended(&mut group, "buttress", subjects::buttress_default());
    contended(
        &mut group,
        "buttress-time-window",
        subjects::buttress_time_window(),
    );
    contended(&mut group, "tower-resilience", subjects::tower_resilience());
    contended(&mut group, "failsafe-sync", subjects::failsafe_sync());
    contended(&mut group, "failsafe-futures", subjects::failsafe_futures());

    group.finish();
}

criterion_group!(benches, breaker);
criterion_main!(benches);
