//! Attacker-chosen keys: a million distinct keys through a keyed breaker
//! layer, with a metrics recorder installed, leave its memory and its
//! metric series bounded.
//!
//! Memory is counted with a global allocator: the bytes live once the set
//! has turned over its keys many times (the warm-up) against the bytes
//! live at the end. A set that kept anything per key ever seen (a breaker,
//! a member entry, a metric series, a key's text) would grow with the keys.
#![cfg(feature = "keyed")]

use std::alloc::System;
use std::convert::Infallible;
use std::future::{Future, ready};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use buttress_breaker::{CircuitBreaker, KeyedCircuitBreaker, KeyedCircuitBreakerLayer};
use metrics_util::debugging::DebuggingRecorder;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tower::{Layer, Service, service_fn};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The tests count the whole process's allocations: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The most breakers the set may hold.
const CAP: usize = 1_000;
/// Keys sent before the baseline is taken: the set has filled and turned
/// over twenty times, so its map, its member list and the recorder have
/// reached their working sizes.
const WARM_UP: usize = 20 * CAP;

/// Bytes allocated and not freed (`bytes_allocated` includes what
/// reallocations added, `bytes_deallocated` what they took away).
fn live_bytes() -> i128 {
    let s = GLOBAL.stats();
    s.bytes_allocated as i128 - s.bytes_deallocated as i128
}

fn drive<S: Service<String>>(svc: &mut S, req: String) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let mut fut = std::pin::pin!(svc.call(req));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("the backend is always ready"),
    }
}

/// How far the live bytes may move between the warm-up and the end: less
/// than one byte per key sent after the warm-up, so a set that kept even a
/// byte per key would fail.
const SLACK: i128 = 64 * 1024;

/// Sends `keys` requests, each with a key never seen before, and checks
/// the set's size, its memory and its metric series.
fn attack(keys: usize) {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    // No background publisher thread allocating while this one counts.
    buttress_core::telemetry::set_publish_interval(Duration::ZERO);
    let name = format!("attacked-{keys}");
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let breakers = KeyedCircuitBreaker::<String>::builder(
            CircuitBreaker::builder().name(name.as_str()),
            CAP,
        )
        .build()
        .unwrap();
        // The key is the request itself: whatever the attacker sends.
        let mut svc =
            KeyedCircuitBreakerLayer::new(breakers.clone(), |req: &String| Some(req.clone()))
                .layer(service_fn(|_: String| ready(Ok::<_, Infallible>(()))));

        let mut baseline = 0;
        for i in 0..keys {
            if i == WARM_UP {
                buttress_core::telemetry::flush();
                baseline = live_bytes();
                let held = breakers.snapshot().keys;
                assert!(held <= CAP, "{held} breakers after {i} keys");
            }
            drive(&mut svc, format!("attacker-{i}")).unwrap();
        }
        buttress_core::telemetry::flush();
        let grown = live_bytes() - baseline;

        let s = breakers.snapshot();
        assert!(s.keys <= CAP, "{s:?}");
        assert!(s.keys >= CAP - CAP / 32, "the cap is used: {s:?}");
        assert_eq!(s.cap_evictions + s.keys as u64, keys as u64, "{s:?}");
        println!(
            "{keys} keys: {baseline} bytes live after {WARM_UP}, {grown:+} bytes since ({} per held key)",
            baseline / CAP as i128
        );
        assert!(
            SLACK < (keys - WARM_UP) as i128,
            "a byte per key would show"
        );
        assert!(
            grown.abs() < SLACK,
            "{grown:+} bytes after {} more keys (allowed ±{SLACK})",
            keys - WARM_UP
        );
    });

    // Every series is the set's own dozen, labelled with its name: no
    // series per key.
    let series = snapshotter.snapshot().into_vec();
    let names: Vec<_> = series
        .iter()
        .map(|(k, ..)| {
            let key = k.key();
            let label = key
                .labels()
                .find(|l| l.key() == "name")
                .map(|l| l.value().to_owned());
            (key.name().to_owned(), label)
        })
        .collect();
    assert_eq!(series.len(), 12, "{names:?}");
    assert!(
        names
            .iter()
            .all(|(_, label)| label.as_deref() == Some(&*name)),
        "{names:?}"
    );
}

#[test]
fn a_hundred_thousand_attacker_keys_leave_memory_and_series_bounded() {
    attack(100_000);
}

// A million keys take a while in a debug build: run with `--release`, or
// with `--include-ignored`.
#[test]
#[cfg_attr(debug_assertions, ignore = "slow in debug builds; runs in release")]
fn a_million_attacker_keys_leave_memory_and_series_bounded() {
    attack(1_000_000);
}
