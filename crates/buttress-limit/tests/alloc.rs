//! An admitted call allocates nothing, a shed one only its boxed rejection
//! (an `Overloaded` or `Throttled` naming the layer: two words), for the
//! limit and for the throttle. Counted with a global allocator, without the
//! libtest harness (`harness = false`) and with the telemetry publisher's
//! background thread idle, so no other thread allocates while it counts.

use std::alloc::System;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use std::time::Duration;

use buttress_core::classify::Classification;
use buttress_limit::algorithm::{Fixed, Vegas};
use buttress_limit::throttle::{AdaptiveThrottle, ThrottleLayer, Throttled};
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

/// The telemetry publisher's thread is spawned when the first layer is
/// built, and may still be starting (a few one-time allocations of its own)
/// while the first round counts: at most this many, once.
const STARTUP_SLACK: usize = 16;

/// Runs `round` (the same calls each time) until one run allocates
/// exactly the blocks it returns, each of `block` bytes, at most five runs.
/// Fails when a run allocates less than that, when no run matches, or when
/// the runs before the matching one allocated more than [`STARTUP_SLACK`]
/// extra blocks in all: a call path that allocates even once in a round's
/// calls shows in every round.
fn assert_allocations(what: &str, block: usize, mut round: impl FnMut() -> usize) {
    let mut extra = 0;
    for _ in 0..5 {
        let region = Region::new(GLOBAL);
        let expected = round();
        let change = region.change();
        assert!(
            change.allocations >= expected,
            "{what}: {} allocations, expected {expected}",
            change.allocations
        );
        if (
            change.allocations,
            change.bytes_allocated,
            change.reallocations,
        ) == (expected, expected * block, 0)
        {
            assert!(
                extra <= STARTUP_SLACK,
                "{what}: {extra} extra allocations before"
            );
            return;
        }
        extra += change.allocations - expected;
    }
    panic!("{what}: no round allocated exactly its calls' errors ({extra} extra in all)");
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

    let full = AdaptiveLimit::builder(Fixed::new(1)).build().unwrap();
    let _held = full.try_acquire().unwrap();
    let mut shed = AdaptiveLimitLayer::new(full.clone()).layer(backend);
    drive(&mut shed, 0).unwrap_err(); // assigns this thread's counter stripe
    // Each shed call boxes its Overloaded (two words), and allocates
    // nothing else.
    let mut calls = 1;
    assert_allocations("shed limit calls", size_of::<Overloaded>(), || {
        for i in 0..1_000 {
            let err = drive(&mut shed, i).unwrap_err();
            assert_eq!(
                err.downcast_ref::<Overloaded>().unwrap().name(),
                full.name()
            );
        }
        calls += 1_000;
        1_000
    });
    assert_eq!(full.rejected(), calls);
}

fn throttled_calls_allocate_only_their_error() {
    let backend = service_fn(|n: u32| std::future::ready(Ok::<_, std::io::Error>(n)));
    let throttle = AdaptiveThrottle::builder().seed(7).build().unwrap();
    let mut svc = ThrottleLayer::new(throttle.clone()).layer(backend);
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
    let mut svc = ThrottleLayer::new(refusing.clone())
        .classifier(refused)
        .layer(backend);
    for i in 0..1_000 {
        let _ = drive(&mut svc, i); // the window fills with refusals
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
    assert!(refusing.rejected() > 9_000, "{}", refusing.rejected());
}
