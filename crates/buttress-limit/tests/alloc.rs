//! An admitted call allocates nothing, a shed one only its boxed rejection
//! (an `Overloaded` or `Throttled` naming the layer: two words), for the
//! limit and for the throttle. Counted exactly with a global allocator,
//! without the libtest harness (`harness = false`) and with the telemetry
//! publisher's background thread never started, so no other thread
//! allocates while it counts.

use std::alloc::System;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use std::time::Duration;

use buttress_core::classify::Classification;
use buttress_limit::algorithm::{Fixed, Vegas};
use buttress_limit::throttle::{AdaptiveThrottle, AdaptiveThrottleLayer, Throttled};
use buttress_limit::{AdaptiveLimit, AdaptiveLimitLayer, Overloaded};
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

/// Runs `round` once and checks that it allocated exactly what it returns:
/// that many blocks of `block` bytes, and no reallocation. The publisher's
/// background thread never starts (publication is off before any layer is
/// built), and every first-use cost (this thread's stripe, lazily built
/// state) is paid by a call before the round, so any allocation on the
/// call path shows.
fn assert_allocations(what: &str, block: usize, round: impl FnOnce() -> usize) {
    let region = Region::new(GLOBAL);
    let expected = round();
    let change = region.change();
    assert_eq!(
        (
            change.allocations,
            change.bytes_allocated,
            change.reallocations
        ),
        (expected, expected * block, 0),
        "{what}: (allocations, bytes, reallocations)"
    );
}

fn main() {
    buttress_core::telemetry::set_publish_interval(Duration::ZERO);
    admitted_calls_allocate_nothing_and_shed_ones_only_their_error();
    throttled_calls_allocate_only_their_error();
    println!("alloc: 2 passed, 0 failed");
}

fn admitted_calls_allocate_nothing_and_shed_ones_only_their_error() {
    let backend = service_fn(|n: u32| std::future::ready(Ok::<_, std::io::Error>(n)));
    let limit = AdaptiveLimit::builder(Vegas::builder().build().unwrap())
        .build()
        .unwrap();
    let mut svc = AdaptiveLimitLayer::new(limit.clone()).layer(backend);
    drive(&mut svc, 0).unwrap(); // assigns this thread's stripe
    assert_allocations("admitted limit calls", 0, || {
        for i in 0..10_000 {
            assert_eq!(drive(&mut svc, i).unwrap(), i);
        }
        0
    });
    assert_eq!(limit.in_flight(), 0);

    let full = AdaptiveLimit::builder(Fixed::new(1).unwrap())
        .build()
        .unwrap();
    let _held = full.try_acquire().unwrap();
    let mut shed = AdaptiveLimitLayer::new(full.clone()).layer(backend);
    drive(&mut shed, 0).unwrap_err(); // assigns this thread's counter stripe
    // Each shed call boxes its Overloaded (two words), and allocates
    // nothing else.
    assert_allocations("shed limit calls", size_of::<Overloaded>(), || {
        for i in 0..1_000 {
            let err = drive(&mut shed, i).unwrap_err();
            assert_eq!(
                err.downcast_ref::<Overloaded>().unwrap().name(),
                full.name()
            );
        }
        1_000
    });
    assert_eq!(full.snapshot().rejected, 1_001);
}

fn throttled_calls_allocate_only_their_error() {
    let backend = service_fn(|n: u32| std::future::ready(Ok::<_, std::io::Error>(n)));
    let throttle = AdaptiveThrottle::builder().seed(7).build().unwrap();
    let mut svc = AdaptiveThrottleLayer::new(throttle.clone()).layer(backend);
    drive(&mut svc, 0).unwrap();
    assert_allocations("sent throttle calls", 0, || {
        for i in 0..10_000 {
            assert_eq!(drive(&mut svc, i).unwrap(), i);
        }
        0
    });

    // A backend whose every answer the classifier refuses: nothing is
    // accepted, so almost every call is shed. A sent call allocates
    // nothing, a shed one its boxed Throttled.
    let refusing = AdaptiveThrottle::builder().seed(7).build().unwrap();
    let refused = |_: &Result<u32, std::io::Error>| Classification::failure();
    let mut svc = AdaptiveThrottleLayer::new(refusing.clone())
        .classifier(refused)
        .layer(backend);
    for i in 0..1_000 {
        // The window fills with refusals: each call is answered or shed.
        match drive(&mut svc, i) {
            Ok(n) => assert_eq!(n, i),
            Err(e) => assert!(e.is::<Throttled>(), "{e}"),
        }
    }
    assert_allocations("throttled calls", size_of::<Throttled>(), || {
        let mut shed = 0;
        for i in 0..10_000 {
            if let Err(e) = drive(&mut svc, i) {
                assert_eq!(
                    e.downcast_ref::<Throttled>().unwrap().name(),
                    refusing.name()
                );
                shed += 1;
            }
        }
        shed
    });
    assert!(
        refusing.snapshot().rejected > 9_000,
        "{}",
        refusing.snapshot().rejected
    );
}
