//! A closed-state call allocates nothing: counted with a global allocator.
//!
//! It runs without the libtest harness (`harness = false`), in the main
//! thread, so that no other thread (the harness's own included) allocates
//! while it counts.

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
    // With publication off before the first breaker is built, the
    // background publisher thread never starts: nothing but this thread
    // allocates while it counts, so the counts are exact.
    buttress_core::telemetry::set_publish_interval(Duration::ZERO);
    closed_calls_allocate_nothing();
    println!("alloc: 1 passed, 0 failed");
}

/// The allocations and reallocations `run` makes, counted once.
fn allocations(run: impl FnOnce()) -> (usize, usize) {
    let region = Region::new(GLOBAL);
    run();
    let change = region.change();
    (change.allocations, change.reallocations)
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
        let made = allocations(|| {
            for i in 0..10_000 {
                assert_eq!(drive(&mut svc, i).unwrap(), i);
            }
        });
        assert_eq!(made, (0, 0), "{name}: closed calls allocated");
        // The count window holds its last 100 calls; the hour-long time
        // window every call so far.
        let in_window = window_calls.unwrap_or(1 + 10_000);
        assert_eq!(breaker.snapshot().calls, in_window, "{name}");

        // A failure recorded on the closed path costs only the boxing of the
        // backend's error into a BoxError.
        let mut failing = CircuitBreakerLayer::new(breaker.clone()).layer(service_fn(|_: u32| {
            std::future::ready(Err::<u32, _>(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )))
        }));
        let _ = drive(&mut failing, 0);
        let made = allocations(|| {
            for i in 0..10 {
                drive(&mut failing, i).unwrap_err();
            }
        });
        assert_eq!(made, (10, 0), "{name}: one box per failure");
    }
}
