//! A closed-state call allocates nothing: counted with a global allocator.
//!
//! It runs without the libtest harness (`harness = false`), in the main
//! thread, so that no other thread allocates while it counts (the harness's
//! own thread was seen to allocate during a count under load).

use std::alloc::System;
use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use buttress_breaker::{CircuitBreaker, CircuitBreakerLayer};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service, service_fn};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn drive<S: Service<u32>>(svc: &mut S, n: u32) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let mut fut = std::pin::pin!(svc.call(n));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("the no-op backend is always ready"),
    }
}

fn main() {
    // The background publisher (started by the first breaker) allocates
    // when it publishes; keep it from publishing while this thread counts.
    buttress_core::telemetry::set_publish_interval(Duration::ZERO);
    closed_calls_allocate_nothing();
    println!("alloc: 1 passed, 0 failed");
}

/// The fewest allocations and reallocations `run` made, over up to three
/// runs (stopping at `expected`), and how many runs that took.
///
/// The count is the whole process's: another thread's one-off allocation
/// (the telemetry publisher's thread starting, right after the first
/// breaker is built) can land in one run. An allocation per call shows in
/// every run.
fn fewest_allocations(expected: (usize, usize), mut run: impl FnMut()) -> ((usize, usize), u64) {
    let mut fewest = (usize::MAX, usize::MAX);
    let mut runs = 0;
    while runs < 3 && fewest != expected {
        let region = Region::new(GLOBAL);
        run();
        let change = region.change();
        fewest = fewest.min((change.allocations, change.reallocations));
        runs += 1;
    }
    (fewest, runs)
}

fn closed_calls_allocate_nothing() {
    let backend = service_fn(|n: u32| std::future::ready(Ok::<_, std::io::Error>(n)));
    let cases = [
        (
            "count window",
            CircuitBreaker::builder().build().unwrap(),
            Some(100),
        ),
        (
            "time window + slow calls",
            CircuitBreaker::builder()
                .time_window(Duration::from_secs(3600), 10)
                .slow_call_duration(Duration::from_secs(1))
                .build()
                .unwrap(),
            None,
        ),
    ];
    for (name, breaker, window_calls) in cases {
        let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(backend);
        // Warm up: the first call assigns this thread's stripe.
        drive(&mut svc, 0).unwrap();
        let (fewest, runs) = fewest_allocations((0, 0), || {
            for i in 0..10_000 {
                assert_eq!(drive(&mut svc, i).unwrap(), i);
            }
        });
        assert_eq!(fewest, (0, 0), "{name}: closed calls allocated");
        // The count window holds its last 100 calls; the hour-long time
        // window every call so far.
        let in_window = window_calls.unwrap_or(1 + runs * 10_000);
        assert_eq!(breaker.snapshot().calls(), in_window, "{name}");

        // A failure recorded on the closed path costs only the boxing of the
        // backend's error into a BoxError.
        let mut failing = CircuitBreakerLayer::new(breaker.clone()).layer(service_fn(|_: u32| {
            std::future::ready(Err::<u32, _>(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )))
        }));
        let _ = drive(&mut failing, 0);
        let (fewest, _) = fewest_allocations((10, 0), || {
            for i in 0..10 {
                drive(&mut failing, i).unwrap_err();
            }
        });
        assert_eq!(fewest, (10, 0), "{name}: one box per failure");
    }
}
