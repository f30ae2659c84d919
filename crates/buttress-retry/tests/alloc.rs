//! A request that succeeds first time allocates nothing: counted with a
//! global allocator.
//!
//! This file holds one test so that no other test's allocations run on
//! another thread while it counts.

use std::alloc::System;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use buttress_retry::{HedgeDelay, HedgeLayer, HedgePolicy, RetryLayer, RetryPolicy};
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

#[test]
fn first_time_successes_allocate_nothing() {
    let backend = service_fn(|n: u32| std::future::ready(Ok::<_, std::io::Error>(n)));
    let policy = RetryPolicy::builder().build().unwrap();
    let mut svc = RetryLayer::new(policy.clone()).layer(backend);
    drive(&mut svc, 0).unwrap();
    let region = Region::new(GLOBAL);
    for i in 0..10_000 {
        assert_eq!(drive(&mut svc, i).unwrap(), i);
    }
    let change = region.change();
    assert_eq!((change.allocations, change.reallocations), (0, 0), "retry");
    // Every request deposited into the budget: 20 % of 10 001 plus the reserve.
    assert_eq!(policy.budget().unwrap().available(), 2000 + 100);

    // Hedging, primary answering on its first poll: no timer, no box.
    let hedge = HedgePolicy::builder()
        .delay(HedgeDelay::Fixed(std::time::Duration::from_millis(5)))
        .build()
        .unwrap();
    let mut svc = HedgeLayer::new(hedge).layer(backend);
    drive(&mut svc, 0).unwrap();
    let region = Region::new(GLOBAL);
    for i in 0..10_000 {
        assert_eq!(drive(&mut svc, i).unwrap(), i);
    }
    let change = region.change();
    assert_eq!((change.allocations, change.reallocations), (0, 0), "hedge");
}
