//! A hit allocates nothing: counted with a global allocator.
//!
//! This file holds one test so that no other test's allocations run on
//! another thread while it counts.

use std::alloc::System;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use buttress_cache::store::QuickCacheStore;
use buttress_cache::{Cache, CacheLayer};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service, service_fn};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn drive<S: Service<u64>>(svc: &mut S, key: u64) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let mut fut = std::pin::pin!(svc.call(key));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("the backend is always ready"),
    }
}

#[test]
fn hits_allocate_nothing() {
    // No background publication while allocations are counted (it runs on
    // a thread of its own and allocates; hits never publish anything).
    buttress_core::telemetry::set_publish_interval(std::time::Duration::ZERO);
    let backend = service_fn(|k: u64| std::future::ready(Ok::<_, io::Error>(Arc::new(k))));
    let quick = Cache::builder(QuickCacheStore::new(1 << 20, 1000))
        .build()
        .unwrap();
    let mut svc = CacheLayer::new(quick.clone(), |k: &u64| Some(*k)).layer(backend);
    for k in 0..100 {
        drive(&mut svc, k).unwrap(); // misses: load every key once
    }
    // The counter is global: libtest's main thread may allocate while a
    // round runs (seen under heavy load). A hit path that allocated would
    // show 10,000 or more in every round, so the fewest over five rounds
    // is what the hit path costs.
    let fewest = (0..5)
        .map(|_| {
            let region = Region::new(GLOBAL);
            for i in 0..10_000u64 {
                assert_eq!(*drive(&mut svc, i % 100).unwrap(), i % 100);
            }
            let change = region.change();
            change.allocations + change.reallocations
        })
        .min();
    assert_eq!(fewest, Some(0), "quick_cache hits allocated");
    assert_eq!(quick.stats().hits, 50_000);

    // A miss, for contrast, allocates (its boxed future, the entry).
    let region = Region::new(GLOBAL);
    drive(&mut svc, 1_000).unwrap();
    assert!(region.change().allocations > 0, "the counter counts");

    #[cfg(feature = "moka")]
    {
        use buttress_cache::store::MokaStore;
        let moka = Cache::builder(
            MokaStore::builder(1 << 20)
                .maintenance_interval(None)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
        let mut svc = CacheLayer::new(moka.clone(), |k: &u64| Some(*k)).layer(backend);
        for k in 0..100 {
            drive(&mut svc, k).unwrap();
        }
        let region = Region::new(GLOBAL);
        for i in 0..10_000u64 {
            assert_eq!(*drive(&mut svc, i % 100).unwrap(), i % 100);
        }
        let change = region.change();
        // moka's read path records reads in a bounded buffer and, now and
        // then, runs maintenance inside the call: not zero, but far below
        // one allocation per hit.
        assert!(
            change.allocations < 1_000,
            "moka hits allocated {} times in 10,000",
            change.allocations
        );
        eprintln!("moka: {} allocations in 10,000 hits", change.allocations);
    }
}
