//! Neither an admitted call nor a shed one allocates.
//! Counted with a global allocator, without the libtest harness
//! (`harness = false`), so no other thread allocates while it counts.

use std::alloc::System;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use buttress_limit::algorithm::{Fixed, Vegas};
use buttress_limit::{AdaptiveLimit, AdaptiveLimitLayer};
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
    admitted_and_shed_calls_allocate_nothing();
    println!("alloc: 1 passed, 0 failed");
}

fn admitted_and_shed_calls_allocate_nothing() {
    let backend = service_fn(|n: u32| std::future::ready(Ok::<_, std::io::Error>(n)));
    let limit = AdaptiveLimit::builder(Vegas::builder().build().unwrap())
        .build()
        .unwrap();
    let mut svc = AdaptiveLimitLayer::new(limit.clone()).layer(backend);
    drive(&mut svc, 0).unwrap(); // assigns this thread's stripe
    let region = Region::new(GLOBAL);
    for i in 0..10_000 {
        assert_eq!(drive(&mut svc, i).unwrap(), i);
    }
    let change = region.change();
    assert_eq!((change.allocations, change.reallocations), (0, 0));
    assert_eq!(limit.in_flight(), 0);

    let full = AdaptiveLimit::builder(Fixed::new(1)).build().unwrap();
    let _held = full.try_acquire().unwrap();
    let mut shed = AdaptiveLimitLayer::new(full.clone()).layer(backend);
    let region = Region::new(GLOBAL);
    for i in 0..100 {
        drive(&mut shed, i).unwrap_err();
    }
    // `Overloaded` is zero-sized: boxing it into a BoxError allocates nothing.
    assert_eq!(
        region.change().allocations,
        0,
        "a shed call allocates nothing"
    );
    assert_eq!(full.rejected(), 100);
}
