//! Heap allocations per call for every subject of the `breaker` bench,
//! counted under a counting global allocator (a separate target, so the
//! counting cannot skew the bench's timings).
//!
//! `cargo test -p buttress-benches --test allocs` prints the table used in
//! `docs/benchmarks.md` and checks buttress's own figures: a closed call
//! allocates nothing, a rejected one allocates only its boxed `CircuitOpen`.
//! It runs without the libtest harness, and with buttress's background
//! publication off before the first layer is built (so its thread never
//! starts), so that no other thread allocates while it counts: each count
//! is exact, taken once.

#[path = "../benches/subjects/mod.rs"]
mod subjects;

use std::alloc::System;
use std::hint::black_box;
use std::time::Duration;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::Service;

use subjects::drive;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CALLS: u32 = 10_000;

/// Allocations and allocated bytes per call, after a warm-up, counted once.
fn per_call<S: Service<()>>(name: &str, mut svc: S) -> f64 {
    for _ in 0..1_000 {
        let _ = black_box(drive(&mut svc));
    }
    let region = Region::new(GLOBAL);
    for _ in 0..CALLS {
        let _ = black_box(drive(&mut svc));
    }
    let change = region.change();
    let (allocs, bytes) = (
        change.allocations + change.reallocations,
        change.bytes_allocated,
    );
    let allocs = f64::from(u32::try_from(allocs).unwrap_or(u32::MAX)) / f64::from(CALLS);
    let bytes = f64::from(u32::try_from(bytes).unwrap_or(u32::MAX)) / f64::from(CALLS);
    println!("| {name} | {allocs:.2} | {bytes:.0} |");
    allocs
}

fn main() {
    buttress_core::telemetry::set_publish_interval(Duration::ZERO);
    println!("| subject | heap allocs per call | bytes per call |");
    println!("|---|---:|---:|");
    let floor = per_call("closed/floor", subjects::noop());
    let closed = [
        per_call("closed/buttress", subjects::buttress_default()),
        per_call(
            "closed/buttress-time-window",
            subjects::buttress_time_window(),
        ),
        per_call(
            "closed/buttress-slow-calls",
            subjects::buttress_slow_calls(),
        ),
    ];
    per_call("closed/tower-resilience", subjects::tower_resilience());
    per_call("closed/failsafe-sync", subjects::failsafe_sync());
    per_call("closed/failsafe-futures", subjects::failsafe_futures());
    let open = [
        per_call("open/buttress", subjects::buttress_tripped()),
        per_call("open/buttress-forced", subjects::buttress_forced_open()),
    ];
    per_call(
        "open/tower-resilience",
        subjects::tower_resilience_tripped(),
    );

    assert!(floor == 0.0, "the floor allocates");
    assert!(
        closed.iter().all(|&a| a == 0.0),
        "a closed buttress call allocates: {closed:?}"
    );
    assert!(
        open.iter().all(|&a| a == 1.0),
        "a rejected buttress call should allocate only its boxed CircuitOpen: {open:?}"
    );
}
