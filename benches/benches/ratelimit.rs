//! The per-key rate limit: the in-process decision against `governor`'s
//! keyed limiter on the same keys, and the layer against tower's
//! `RateLimit` (unkeyed, one quota for the service) and the no-op floor.
//!
//! Build with `cargo bench -p buttress-benches --bench ratelimit --no-run`;
//! run alone (never `--workspace`: the tests' tokio `test-util` feature
//! would route every clock read through the mock clock).
//!
//! Bench ids, all in the group `ratelimit`:
//!
//! - `decide/buttress` and `decide/governor`: one admitted decision on a
//!   key taken in turn from 10,000 keys (quotas too large to bind);
//! - `decide-limited/buttress` and `decide-limited/governor`: one key over
//!   its quota, every decision a rejection;
//! - `layer/floor`, `layer/buttress-keyed`, `layer/buttress-one-key`,
//!   `layer/tower`: `call` + poll of a ready no-op service wrapped in each
//!   (inside a current-thread runtime's context, polled once with a no-op
//!   waker).

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use buttress_ratelimit::{Quota, RateLimitLayer, RateLimiter};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::{Layer, Service, service_fn};

const KEYS: u64 = 10_000;

fn poll_once<F: Future>(f: F) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// `poll_ready` (ready at once for every subject here), then `call` and
/// one poll of its future.
fn drive<S: Service<u64>>(svc: &mut S, req: u64) {
    let _ = poll_once(std::future::poll_fn(|cx| svc.poll_ready(cx)));
    black_box(poll_once(svc.call(req)));
}

fn noop() -> impl Service<u64, Response = u64, Error = Infallible> + Clone {
    service_fn(|r: u64| async move { Ok::<_, Infallible>(r) })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let _ctx = rt.enter();
    let mut g = c.benchmark_group("ratelimit");

    let big = Quota::per_second(1_000_000_000).expect("valid");
    let ours = RateLimiter::<u64>::builder(big)
        .max_keys(2 * KEYS as usize)
        .build()
        .expect("valid");
    let theirs = governor::RateLimiter::keyed(governor::Quota::per_second(
        NonZeroU32::new(1_000_000_000).expect("non-zero"),
    ));
    let mut k = 0u64;
    g.bench_function("decide/buttress", |b| {
        b.iter(|| {
            k = (k + 1) % KEYS;
            black_box(ours.check_local(&k).is_allowed())
        });
    });
    g.bench_function("decide/governor", |b| {
        b.iter(|| {
            k = (k + 1) % KEYS;
            black_box(theirs.check_key(&k).is_ok())
        });
    });

    let tiny = Quota::new(1, Duration::from_secs(3_600)).expect("valid");
    let ours_limited = RateLimiter::<u64>::builder(tiny).build().expect("valid");
    let theirs_limited = governor::RateLimiter::keyed(governor::Quota::per_hour(
        NonZeroU32::new(1).expect("non-zero"),
    ));
    let _ = ours_limited.check_local(&7);
    let _ = theirs_limited.check_key(&7);
    g.bench_function("decide-limited/buttress", |b| {
        b.iter(|| black_box(ours_limited.check_local(&7).is_allowed()));
    });
    g.bench_function("decide-limited/governor", |b| {
        b.iter(|| black_box(theirs_limited.check_key(&7).is_ok()));
    });

    let mut floor = noop();
    g.bench_function("layer/floor", |b| b.iter(|| drive(&mut floor, 1)));
    let mut keyed = RateLimitLayer::new(ours.clone(), |r: &u64| Some(*r % KEYS)).layer(noop());
    g.bench_function("layer/buttress-keyed", |b| {
        b.iter(|| {
            k += 1;
            drive(&mut keyed, k);
        });
    });
    let one = RateLimiter::<()>::builder(big).build().expect("valid");
    let mut one_key = RateLimitLayer::new(one, |_: &u64| Some(())).layer(noop());
    g.bench_function("layer/buttress-one-key", |b| {
        b.iter(|| drive(&mut one_key, 1))
    });
    let mut tower_rl =
        tower::limit::RateLimitLayer::new(u64::MAX, Duration::from_secs(1)).layer(noop());
    g.bench_function("layer/tower", |b| b.iter(|| drive(&mut tower_rl, 1)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
