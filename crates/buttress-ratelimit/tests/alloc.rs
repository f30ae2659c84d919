//! An in-process decision through the layer allocates nothing once its key
//! is tracked and the request is admitted (a rejection boxes its error;
//! the response fields, when on, format their values):
//! counted with a global allocator, without the libtest harness, on the
//! main thread only.

use std::alloc::System;
use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use buttress_ratelimit::{Quota, RateLimitLayer, RateLimiter};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service, service_fn};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn drive<S: Service<u64>>(svc: &mut S, n: u64) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let mut fut = std::pin::pin!(svc.call(n));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(r) => r.is_ok(),
        Poll::Pending => panic!("the no-op backend is always ready"),
    }
}

fn main() {
    // No background publisher thread: only this thread allocates.
    buttress_core::telemetry::set_publish_interval(Duration::ZERO);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _ctx = rt.enter();
    let backend = service_fn(|n: u64| std::future::ready(Ok::<_, std::io::Error>(n)));
    let limiter = RateLimiter::<u64>::builder(
        Quota::new(100, Duration::from_secs(3_600))
            .unwrap()
            .with_burst(10)
            .unwrap(),
    )
    .build()
    .unwrap();
    let mut svc = RateLimitLayer::new(limiter, |n: &u64| Some(*n % 10)).layer(backend);
    // Track the keys (a new key's first entry in the map may allocate).
    for n in 0..10 {
        assert!(drive(&mut svc, n));
    }
    let region = Region::new(GLOBAL);
    let mut admitted = 0;
    for n in 0..90 {
        admitted += usize::from(drive(&mut svc, n));
    }
    let change = region.change();
    assert_eq!(admitted, 90);
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "admitted: {change:?}"
    );
    // Rejections box their error: one allocation each (the shared
    // rejection travels as a BoxError).
    for n in 0..10 {
        assert!(!drive(&mut svc, n), "key {n} is spent");
    }
    let region = Region::new(GLOBAL);
    for n in 0..10 {
        assert!(!drive(&mut svc, n));
    }
    let change = region.change();
    assert_eq!(
        change.allocations, 10,
        "one boxed rejection each: {change:?}"
    );
    println!("alloc: 1 passed, 0 failed");
}
