//! Instruction counts of the hot paths under Callgrind (gungraun): the CI
//! regression gate. A count does not move with the machine's load, so CI
//! can compare it with the committed baseline (`ci/perf/baseline.txt`)
//! and fail past the tolerance; see "The instruction-count gate" in
//! `docs/benchmarks.md`.
//!
//! Run with (valgrind and `gungraun-runner` of the same version as the
//! `gungraun` library on `PATH`)
//! `cargo bench -p buttress-benches --bench instructions` (never
//! `--workspace`: the tests' tokio `test-util` feature would route every
//! `tokio::time::Instant::now()` through the mock clock and change the
//! counts). `ci/perf/check` runs it and compares.
//!
//! Each benchmark builds and warms its subject outside the measurement,
//! then counts [`CALLS`] calls, each driven like the criterion benches do
//! (`ready()`, `call`, the response future polled to completion with a
//! no-op waker, no runtime), so periodic work (a window closing, a stripe
//! flushing) is averaged in rather than caught or missed by one call.

// gungraun's macros generate public modules and constants without docs.
#![allow(missing_docs)]

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use buttress_breaker::{CircuitBreaker, CircuitBreakerLayer};
use buttress_cache::store::QuickCacheStore;
use buttress_cache::{Cache, CacheLayer};
use buttress_limit::algorithm::Vegas;
use buttress_limit::{AdaptiveLimit, AdaptiveLimitLayer};
use buttress_retry::{RetryLayer, RetryPolicy};
use gungraun::{library_benchmark, library_benchmark_group, main};
use tower::{Layer, Service, ServiceExt, service_fn};

/// Calls counted per benchmark.
const CALLS: u64 = 1_000;

/// Calls made before counting starts (first-use costs: thread stripes,
/// lazily built state).
const WARM_UP: u64 = 1_000;

/// Keys cached before the hit benchmark; the miss benchmark asks for keys
/// above them.
const KEYS: u64 = 10_000;

/// Polls `future` to completion with a no-op waker.
#[inline]
fn poll_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::yield_now();
    }
}

/// One request: `ready()`, `call`, the response future to completion.
#[inline]
fn drive<Req, S: Service<Req>>(svc: &mut S, req: Req) -> Result<S::Response, S::Error> {
    let svc = poll_now(ServiceExt::ready(svc))?;
    poll_now(svc.call(req))
}

/// `CALLS` requests made by `request(i)`, each result kept alive for the
/// optimizer.
#[inline]
fn run<Req, S: Service<Req>>(svc: &mut S, mut request: impl FnMut(u64) -> Req) {
    for i in 0..CALLS {
        let result = drive(svc, request(i));
        black_box(&result);
    }
}

/// The inner service of the breaker, retry and limit subjects.
fn noop()
-> impl Service<(), Response = (), Error = io::Error, Future = Ready<io::Result<()>>> + Clone + 'static
{
    service_fn(|()| ready(Ok::<(), io::Error>(())))
}

/// The backend of the cache subjects: `Arc::new(key)` at once.
fn backend()
-> impl Service<u64, Response = Arc<u64>, Error = io::Error, Future = Ready<io::Result<Arc<u64>>>>
+ Clone
+ 'static {
    service_fn(|k: u64| ready(Ok::<_, io::Error>(Arc::new(k))))
}

/// Telemetry's background publisher is a second thread woken by the wall
/// clock: stopped, so it cannot add its instructions to a count.
fn quiet() {
    buttress_core::telemetry::set_publish_interval(Duration::ZERO);
}

// ------------------------------------------------------------- subjects

/// A warmed subject: counting it runs [`CALLS`] calls. Boxed because a
/// benchmark's argument needs a nameable type; the one dynamic call is
/// per run, not per call. Each benchmark returns its subject, so that
/// dropping it (freeing a filled cache) is not counted.
type Subject = Box<dyn FnMut()>;

/// `svc`, warmed, as a subject making unit requests.
fn unit_subject<S: Service<()> + 'static>(mut svc: S) -> Subject {
    for _ in 0..WARM_UP {
        let _ = drive(&mut svc, ());
    }
    Box::new(move || run(&mut svc, |_| ()))
}

fn breaker_closed() -> Subject {
    quiet();
    let breaker = CircuitBreaker::builder()
        .build()
        .expect("valid breaker configuration");
    unit_subject(CircuitBreakerLayer::new(breaker).layer(noop()))
}

fn retry_success() -> Subject {
    quiet();
    let policy = RetryPolicy::builder().build().expect("valid retry policy");
    unit_subject(RetryLayer::new(policy).layer(noop()))
}

fn limit_admit() -> Subject {
    quiet();
    let vegas = Vegas::builder().build().expect("valid Vegas configuration");
    let limit = AdaptiveLimit::builder(vegas)
        .build()
        .expect("valid limit configuration");
    unit_subject(AdaptiveLimitLayer::new(limit).layer(noop()))
}

/// A cache on the default store holding `KEYS` keys, as a subject asking
/// for `key(i)` on call `i`.
fn cache(key: fn(u64) -> u64) -> Subject {
    quiet();
    let store = QuickCacheStore::builder(64 << 20)
        .estimated_entries(2 * KEYS as usize)
        .build()
        .expect("valid store configuration");
    let cache = Cache::builder(store)
        .build()
        .expect("valid cache configuration");
    let mut svc = CacheLayer::new(cache, |k: &u64| Some(*k)).layer(backend());
    for k in 0..KEYS {
        let _ = drive(&mut svc, k);
    }
    Box::new(move || run(&mut svc, key))
}

// ----------------------------------------------------------- benchmarks
//
// (Plain comments: `#[library_benchmark]` takes no doc attributes.)

// A closed breaker (count window, every default) passing calls through.
#[library_benchmark]
#[bench::default(breaker_closed())]
fn breaker_closed_call(mut subject: Subject) -> Subject {
    subject();
    subject
}

// A retry policy (every default, budget included) whose calls succeed
// first time.
#[library_benchmark]
#[bench::default(retry_success())]
fn retry_success_call(mut subject: Subject) -> Subject {
    subject();
    subject
}

// The adaptive limit (Vegas, every default) admitting calls under it.
#[library_benchmark]
#[bench::default(limit_admit())]
fn limit_admit_call(mut subject: Subject) -> Subject {
    subject();
    subject
}

// Hits on the default store, spread over the cached keys.
#[library_benchmark]
#[bench::default(cache(|i| i * 7 % KEYS))]
fn cache_hit(mut subject: Subject) -> Subject {
    subject();
    subject
}

// Misses on the default store: keys never seen, loaded from a backend
// that answers at once, then stored.
#[library_benchmark]
#[bench::default(cache(|i| KEYS + i))]
fn cache_miss(mut subject: Subject) -> Subject {
    subject();
    subject
}

library_benchmark_group!(
    name = hot_paths;
    benchmarks = breaker_closed_call, retry_success_call, limit_admit_call, cache_hit, cache_miss
);

main!(library_benchmark_groups = hot_paths);
