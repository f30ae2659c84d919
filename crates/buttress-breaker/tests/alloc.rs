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
    closed_calls_allocate_nothing();
    println!("alloc: 1 passed, 0 failed");
}

fn closed_calls_allocate_nothing() {
    let backend = service_fn(|n: u32| std::future::ready(Ok::<_, std::io::Error>(n)));
    let cases = [
        (
            "count window",
            CircuitBreaker::builder().build().unwrap(),
            100,
        ),
        (
            "time window + slow calls",
            CircuitBreaker::builder()
                .time_window(Duration::from_secs(3600), 10)
                .slow_call_duration(Duration::from_secs(1))
                .build()
                .unwrap(),
            10_001,
        ),
    ];
    for (name, breaker, window_calls) in cases {
        let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(backend);
        // Warm up: the first call assigns this thread's stripe.
        drive(&mut svc, 0).unwrap();
        let region = Region::new(GLOBAL);
        for i in 0..10_000 {
            assert_eq!(drive(&mut svc, i).unwrap(), i);
        }
        let change = region.change();
        assert_eq!(
            (change.allocations, change.reallocations),
            (0, 0),
            "{name}: closed calls allocated"
        );
        assert_eq!(breaker.snapshot().calls(), window_calls, "{name}");

        // A failure recorded on the closed path costs only the boxing of the
        // backend's error into a BoxError.
        let mut failing = CircuitBreakerLayer::new(breaker.clone()).layer(service_fn(|_: u32| {
            std::future::ready(Err::<u32, _>(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )))
        }));
        let _ = drive(&mut failing, 0);
        let region = Region::new(GLOBAL);
        for i in 0..10 {
            drive(&mut failing, i).unwrap_err();
        }
        assert_eq!(
            region.change().allocations,
            10,
            "{name}: one box per failure"
        );
    }
}
