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
//! - `…+prometheus`: the same subjects with `metrics-exporter-prometheus`'s
//!   recorder installed, run last;
//! - `threads-1/<subject>` and `threads-2/<subject>`: one or two threads each
//!   driving its own clone of one service (so one shared breaker), timed as
//!   wall time / total calls. Criterion's figure is therefore inverse
//!   throughput, and `threads-1 / threads-2` is the scaling ratio
//!   (2-thread throughput over 1-thread throughput; 2.0 is perfect).

mod harness;
mod subjects;

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};

use harness::{contended, single};

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

    // The same breaker with metrics-exporter-prometheus's recorder
    // installed (and buttress's publisher writing to it every second): a
    // call never touches the recorder, so these should match the rows
    // above. Last, since a global recorder cannot be removed.
    harness::install_prometheus();
    single(
        &mut group,
        "closed/buttress+prometheus",
        subjects::buttress_default(),
    );
    single(
        &mut group,
        "open/buttress+prometheus",
        subjects::buttress_tripped(),
    );
    contended(
        &mut group,
        "buttress+prometheus",
        subjects::buttress_default(),
    );

    group.finish();
}

criterion_group!(benches, breaker);
criterion_main!(benches);
