//! A request that succeeds first time allocates nothing, through the retry
//! layer or either hedge (fixed or percentile delay): counted with a global
//! allocator.
//!
//! It runs without the libtest harness (`harness = false`), so that no other
//! thread (the harness's own can) allocates while it counts, and with
//! telemetry's background publisher turned off, for the same reason.

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

/// The allocations (and reallocations) `n` calls of `call` make.
fn allocations(n: u32, mut call: impl FnMut(u32)) -> usize {
    let region = Region::new(GLOBAL);
    for i in 0..n {
        call(i);
    }
    let change = region.change();
    change.allocations + change.reallocations
}

fn main() {
    // The background publisher allocates as it publishes: keep it off.
    buttress_core::telemetry::set_publish_interval(std::time::Duration::ZERO);
    first_time_successes_allocate_nothing();
    println!("alloc: ok");
}

fn first_time_successes_allocate_nothing() {
    let backend = service_fn(|n: u32| std::future::ready(Ok::<_, std::io::Error>(n)));
    let policy = RetryPolicy::builder().build().unwrap();
    let mut svc = RetryLayer::new(policy.clone()).layer(backend);
    drive(&mut svc, 0).unwrap();
    assert_eq!(
        allocations(10_000, |i| assert_eq!(drive(&mut svc, i).unwrap(), i)),
        0,
        "retry"
    );
    // Every request deposited into the budget (20 % of 10 001 plus the
    // reserve), and was counted once.
    assert_eq!(policy.budget().unwrap().available(), 2000 + 100);
    let snapshot = policy.snapshot();
    assert_eq!(
        (snapshot.succeeded_first_try, snapshot.attempts),
        (10_001, 10_001)
    );

    // Hedging, primary answering on its first poll: no timer, no box.
    let hedge = HedgePolicy::builder()
        .delay(HedgeDelay::Fixed(std::time::Duration::from_millis(5)))
        .build()
        .unwrap();
    let mut svc = HedgeLayer::new(hedge).layer(backend);
    drive(&mut svc, 0).unwrap();
    assert_eq!(
        allocations(10_000, |i| assert_eq!(drive(&mut svc, i).unwrap(), i)),
        0,
        "hedge"
    );

    percentile_hedges_allocate_nothing();

    #[cfg(feature = "http")]
    replay_body_allocations();
}

/// The default hedge (the 95th percentile of recent latencies): every
/// request records its latency, every 64th recomputes the percentile, and
/// past 10 000 latencies the histogram is halved. Over 30 000 requests,
/// after the 100 that teach it a delay, none of that allocates (the
/// primary answers on its first poll, so no hedge is sent).
fn percentile_hedges_allocate_nothing() {
    let backend = service_fn(|n: u32| std::future::ready(Ok::<_, std::io::Error>(n)));
    let hedge = HedgePolicy::builder().build().unwrap();
    let mut svc = HedgeLayer::new(hedge.clone()).layer(backend);
    for i in 0..100 {
        drive(&mut svc, i).unwrap();
    }
    assert!(
        hedge.snapshot().delay.is_some(),
        "a percentile delay is known"
    );
    assert_eq!(
        allocations(30_000, |i| assert_eq!(drive(&mut svc, i).unwrap(), i)),
        0,
        "p95 hedge"
    );
    let snapshot = hedge.snapshot();
    assert_eq!((snapshot.primary_won, snapshot.hedges), (30_100, 0));
}

/// A `ReplayBody` allocates its shared state and its chunk list, once per
/// body; a copy replays without allocating.
#[cfg(feature = "http")]
fn replay_body_allocations() {
    use buttress_retry::http::{ReplayBody, TryCloneBody};
    use http_body::Body;
    use std::pin::Pin;

    fn drain<B: Body<Data = bytes::Bytes> + Unpin>(mut b: B) -> usize {
        let mut cx = Context::from_waker(Waker::noop());
        let mut n = 0;
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut b).poll_frame(&mut cx) {
            n += frame.data_ref().map_or(0, bytes::Bytes::len);
        }
        n
    }
    let kib = bytes::Bytes::from(vec![1u8; 1024]);
    // A `Vec`-backed `Bytes` allocates its shared header on its first clone.
    drop(kib.clone());
    let allocations = allocations(100, |_| {
        let body = ReplayBody::new(http_body_util::Full::new(kib.clone()));
        let copy = body.try_clone_body().unwrap();
        assert_eq!(drain(body), 1024);
        assert_eq!(drain(copy), 1024);
    });
    assert_eq!(allocations, 200, "2 per body");
}
