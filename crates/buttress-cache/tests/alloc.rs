//! A hit allocates nothing: counted exactly, with a global allocator.
//!
//! It runs without the libtest harness (`harness = false`), so that no
//! other thread allocates while it counts, and with telemetry's background
//! publisher turned off (it would start a thread of its own) before any
//! cache is built.

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

/// The allocations (and reallocations) `f` makes.
fn allocations(f: impl FnOnce()) -> usize {
    let region = Region::new(GLOBAL);
    f();
    let change = region.change();
    change.allocations + change.reallocations
}

fn backend() -> impl Service<u64, Response = Arc<u64>, Error = io::Error, Future: Send> + Clone {
    service_fn(|k: u64| std::future::ready(Ok::<_, io::Error>(Arc::new(k))))
}

fn main() {
    buttress_core::telemetry::set_publish_interval(std::time::Duration::ZERO);
    quick_cache_hits_allocate_nothing();
    #[cfg(feature = "moka")]
    moka_hits_allocate_rarely();
    println!("alloc: ok");
}

fn quick_cache_hits_allocate_nothing() {
    let store = QuickCacheStore::builder(1 << 20)
        .estimated_entries(1_000)
        .build()
        .unwrap();
    let quick = Cache::builder(store).build().unwrap();
    let mut svc = CacheLayer::new(quick.clone(), |k: &u64| Some(*k)).layer(backend());
    for k in 0..100 {
        drive(&mut svc, k).unwrap(); // misses: load every key once
    }
    // The first hit on a thread registers the thread's counting cell: a
    // few allocations once per thread and cache, never again.
    let first = allocations(|| {
        drive(&mut svc, 0).unwrap();
    });
    assert!(first <= 3, "a thread's first hit allocated {first} times");
    let hits = allocations(|| {
        for i in 0..10_000u64 {
            assert_eq!(*drive(&mut svc, i % 100).unwrap(), i % 100);
        }
    });
    assert_eq!(hits, 0, "quick_cache hits allocated");
    assert_eq!(quick.snapshot().hits, 10_001);

    // A miss, for contrast: its future is two boxes (the load, and the
    // thin box around it), then the value and the in-flight record.
    let miss = allocations(|| {
        drive(&mut svc, 1_000).unwrap();
    });
    assert!(miss >= 2, "a miss allocated {miss} times");
}

#[cfg(feature = "moka")]
fn moka_hits_allocate_rarely() {
    use buttress_cache::store::MokaStore;
    let store = MokaStore::builder(1 << 20)
        .maintenance_interval(None)
        .build()
        .unwrap();
    let moka = Cache::builder(store).build().unwrap();
    let mut svc = CacheLayer::new(moka.clone(), |k: &u64| Some(*k)).layer(backend());
    for k in 0..=100 {
        drive(&mut svc, k % 100).unwrap(); // 100 misses, then a first hit
    }
    let hits = allocations(|| {
        for i in 0..10_000u64 {
            assert_eq!(*drive(&mut svc, i % 100).unwrap(), i % 100);
        }
    });
    // moka's read path records reads in a bounded buffer and, now and
    // then, runs maintenance inside the call: not zero, but far below one
    // allocation per hit.
    assert!(hits < 1_000, "moka hits allocated {hits} times in 10,000");
    println!("moka: {hits} allocations in 10,000 hits");
}
