//! The thread and loop drivers shared by the `breaker` and `limit` benches:
//! one call with its result kept alive, one thread per `single` row, and
//! `threads-1/…` / `threads-2/…` rows with each thread driving its own clone
//! of one service.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use tower::Service;

use crate::subjects::drive;

/// One call whose result the optimizer must assume is read. The result is
/// passed to `black_box` by reference: passing it by value makes the
/// compiler store a 16-byte `Result<(), BoxError>` as two 8-byte halves and
/// read it back as one 16-byte load, a store-forwarding stall (about 6 ns
/// here) that a caller matching on the returned value never pays.
#[inline]
pub(crate) fn call<S: Service<()>>(svc: &mut S) {
    let result = drive(svc);
    black_box(&result);
}

/// One thread, one service: ns per call.
pub(crate) fn single<S: Service<()>>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    mut svc: S,
) {
    group.bench_function(id, |b| b.iter(|| call(&mut svc)));
}

/// `threads` threads, each driving its own clone of `svc` for `iters`
/// calls; returns wall time divided by `threads`, so that criterion's
/// per-iteration figure is wall time per call over all threads.
pub(crate) fn spread<S>(svc: &S, threads: u32, iters: u64) -> Duration
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
pub(crate) fn contended<S>(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, svc: S)
where
    S: Service<()> + Clone + Send + 'static,
{
    for threads in [1, 2] {
        group.bench_function(format!("threads-{threads}/{id}"), |b| {
            b.iter_custom(|iters| spread(&svc, threads, iters));
        });
    }
}

/// Installs `metrics-exporter-prometheus`'s recorder as the global recorder
/// (once per process) and returns its handle, for the `…+prometheus` rows:
/// the same subjects with the recorder a production service runs with.
/// Rows after the first call run with it installed (a global recorder
/// cannot be removed), so each bench adds these rows last.
#[allow(dead_code)] // not every bench that includes the harness has recorder rows
pub(crate) fn install_prometheus() -> metrics_exporter_prometheus::PrometheusHandle {
    use std::sync::OnceLock;
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("no other global recorder in a bench binary")
        })
        .clone()
}
